"""`llmcalc serve` against public start-up logs of vLLM and SGLang.

    python benchmarks/serve_validate.py        # rewrites docs/serve-validation.md

benchmarks/serve/logs.jsonl holds 44 start-up logs users posted (each with its link, the engine's
lines verbatim and the numbers read off them; collected in session 7). CASES below maps those
whose model has a card to llmcalc's options, and names which logged number each row checks:
- weights: "Model loading took X GiB" (the same loader accounting in every vLLM version);
- kv_from_available: the KV-cache tokens the engine derived from the available memory it printed
  (the block arithmetic alone, whatever the budget's other terms);
- available / tokens / starts: the whole budget, for the versions llmcalc models.
Targets (issue 15): weights within 3%, KV cache within 10%, the start verdict right.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmcalc import calibration  # noqa: E402
from llmcalc.resolve import load_card  # noqa: E402
from llmcalc.serving import (  # noqa: E402
    GiB,
    ServeConfig,
    _kv_groups,
    _sglang_mamba,
    _vllm_gdn_kv,
    _vllm_kv,
    gdn_layout,
    profile_peak,
    serve,
)

LOGS = ROOT / "benchmarks" / "serve" / "logs.jsonl"
MORE = ROOT / "benchmarks" / "serve" / "logs-more.jsonl"  # session 8: 49 more, 45 of them one sweep
SGLANG = ROOT / "benchmarks" / "serve" / "sglang-logs.jsonl"  # session 9: 14 SGLang logs (a helper's search)
# (log line number in logs.jsonl (0-based), card, weights dtype, ServeConfig fields, what to check)
CASES: list[tuple[int, str, str, dict[str, Any], tuple[str, ...]]] = [
    (0, "llama-3.1-8b", "bf16", {"gpu_total_bytes": int(23.58 * GiB)}, ("weights",)),
    (2, "llama-3-8b", "bf16", {"gpu_total_bytes": int(79.22 * GiB)}, ("weights",)),
    (3, "llama-3-8b", "bf16", {"gpu_total_bytes": int(79.22 * GiB), "tp": 2}, ("weights",)),
    (4, "llama-3.1-8b", "bf16", {"gpu_total_bytes": int(44.42 * GiB)}, ("weights",)),
    (5, "llama-3.1-70b", "int8-channel", {"gpu_total_bytes": int(79.19 * GiB)}, ("weights",)),
    (12, "qwen2.5-14b", "bf16", {"gpu_total_bytes": int(23.55 * GiB), "tp": 2}, ("weights",)),
    (39, "deepseek-v2-lite", "bf16", {"gpu_total_bytes": int(79.19 * GiB)}, ("weights",)),
    (42, "deepseek-v3", "awq-int4-g128", {"gpu_total_bytes": int(23.58 * GiB), "tp": 16}, ("weights",)),
    (8, "gpt-oss-120b", "mxfp4", {"gpu_total_bytes": int(79.19 * GiB), "gpu_name": "NVIDIA H100 80GB HBM3",
                                  "max_model_len": 131072, "version": "0.10"}, ("weights", "available", "starts")),
    (9, "gpt-oss-120b", "mxfp4", {"gpu_total_bytes": int(79.19 * GiB), "gpu_name": "NVIDIA H100 80GB HBM3",
                                  "version": "0.11",
                                  "memory_fraction": 0.95, "max_num_batched_tokens": 1024,
                                  "max_model_len": 131072}, ("available", "starts")),
    (27, "gpt-oss-20b", "mxfp4", {"gpu_total_bytes": int(79.19 * GiB)}, ("weights",)),
    (6, "qwen3-235b-a22b", "fp8-block", {"gpu_total_bytes": int(79.19 * GiB), "gpu_name": "NVIDIA H100 80GB HBM3",
                                         "tp": 4, "max_model_len": 40960, "version": "0.10"},
     ("kv_from_available", "available")),
    # vLLM V0 (--engine-version 0.6 / 0.7): the profile run, the KV budget, the start verdict
    (2, "llama-3-8b", "bf16", {"version": "0.6", "gpu_total_bytes": int(79.22 * GiB), "gpu_name": "NVIDIA H100 80GB HBM3",
                               "max_model_len": 8192}, ("activation", "kv_gib")),
    (3, "llama-3-8b", "bf16", {"version": "0.6", "gpu_total_bytes": int(79.22 * GiB), "gpu_name": "NVIDIA H100 80GB HBM3",
                               "max_model_len": 8192, "tp": 2}, ("activation",)),
    (13, "qwen2.5-7b", "nf4-dq", {"version": "0.7", "gpu_total_bytes": int(8.0 * GiB), "gpu_name": "NVIDIA GeForce RTX 4060",
                               "max_model_len": 4096, "memory_fraction": 0.7}, ("weights", "activation", "kv_gib", "starts")),
    (12, "deepseek-r1-distill-qwen-14b", "bf16", {"version": "0.7", "gpu_total_bytes": int(23.55 * GiB),
                                                  "gpu_name": "NVIDIA GeForce RTX 4090", "tp": 2, "memory_fraction": 0.98,
                                                  "max_model_len": 131072}, ("tokens", "starts")),
    (7, "qwen3-235b-a22b", "fp8-block", {"engine": "sglang", "gpu_total_bytes": int(79.19 * GiB), "tp": 4,
                                         "memory_fraction": 0.93, "max_model_len": 40960}, ("tokens",)),
]
# sglang-logs.jsonl: the logs that show the memory free before and after the weights and the fraction
# (benchmarks/serve/sglang-logs.md). The ~0.4.9 log on a 24 GB card takes 0.4.8-0.5.2's default
# fraction (SGLang computes it from nvidia-smi's 24,564 MiB, llmcalc from CUDA's 23.58 GiB: 0.877
# against the 0.879 the log implies).
SGLANG_CASES: list[tuple[int, str, str, dict[str, Any], tuple[str, ...]]] = [
    (0, "llama-3.1-8b", "bf16", {"engine": "sglang", "version": "0.4", "gpu_total_bytes": int(79.19 * GiB),
                                 "memory_fraction": 0.88, "max_model_len": 131072}, ("weights", "tokens")),
    (1, "qwq-32b", "bf16", {"engine": "sglang", "version": "0.4", "gpu_total_bytes": int(22.03 * GiB), "tp": 4,
                            "memory_fraction": 0.85, "max_model_len": 131072, "gpu_name": "NVIDIA L4"},
     ("weights", "tokens")),
    (2, "gemma-3-4b", "bf16", {"engine": "sglang", "version": "0.4", "gpu_total_bytes": int(139.8 * GiB),
                               "memory_fraction": 0.88}, ("weights", "tokens")),
    (3, "llama-3.1-8b", "bf16", {"engine": "sglang", "version": "0.4.8", "gpu_total_bytes": int(23.58 * GiB),
                                 "max_model_len": 131072}, ("weights", "tokens")),
]

# sglang-logs-new.jsonl (session 12, a helper's search): SGLang 0.5.10-0.5.19 logs of models with a
# card (benchmarks/serve/sglang-latest.md). Each GPU's total is the memory the log shows free before
# the weights plus the CUDA context llmcalc charges (an H100 NVL shared with other processes: 36.54
# GiB free); the B200's fraction is its default, from nvidia-smi's 183,359 MiB. The README-prose
# row (Qwen3-32B) and the forks (ktransformers) are left out, as is a B300-class log whose total is
# not known.
SGLANG_NEW = ROOT / "benchmarks" / "serve" / "sglang-logs-new.jsonl"
_CTX = calibration.CUDA_CONTEXT_BYTES / GiB
SGLANG_NEW_CASES: list[tuple[int, str, str, dict[str, Any], tuple[str, ...]]] = [
    (1, "qwen3-8b", "bf16", {"engine": "sglang", "version": "0.5.10", "gpu_total_bytes": int((177.57 + _CTX) * GiB),
                             "gpu_smi_bytes": 183359 * 2**20, "max_model_len": 40960, "block_size": 64},
     ("weights", "tokens")),
    (3, "qwen3-0.6b", "bf16", {"engine": "sglang", "version": "0.5.10", "gpu_total_bytes": int((78.47 + _CTX) * GiB),
                               "memory_fraction": 0.3, "max_model_len": 40960}, ("weights", "tokens")),
    (4, "qwen2.5-0.5b", "bf16", {"engine": "sglang", "version": "0.5.10",
                                 "gpu_total_bytes": int((36.54 + _CTX) * GiB), "memory_fraction": 0.86},
     ("weights", "tokens")),
    (5, "qwen3-30b-a3b", "fp8-block", {"engine": "sglang", "version": "0.5.10",
                                       "gpu_total_bytes": int((78.48 + _CTX) * GiB), "memory_fraction": 0.83},
     ("weights", "tokens")),
]


def _pct(est: float, meas: float) -> str:
    return f"{100 * (est - meas) / abs(meas):+.1f}%" if meas else "n/a"


def rows() -> list[list[str]]:
    logs = [json.loads(line) for line in LOGS.read_text().splitlines()]
    sglang = [json.loads(line) for line in SGLANG.read_text().splitlines()]
    sglang_new = [json.loads(line) for line in SGLANG_NEW.read_text().splitlines()]
    out = []
    for index, card_name, dtype, fields, checks, source in [(*case, logs) for case in CASES] + \
            [(*case, sglang) for case in SGLANG_CASES] + [(*case, sglang_new) for case in SGLANG_NEW_CASES]:
        log, card = source[index], load_card(card_name)
        n = dict(log.get("numbers") or {})
        if "load_weight_mem_usage_GB" in n or "load_weight_begin_avail_GB" in n or "weights_mem_usage_GB" in n:
            # SGLang's loader line
            n.setdefault("weights_GiB", n.get("load_weight_mem_usage_GB") or n.get("weights_mem_usage_GB")
                         or round(n["load_weight_begin_avail_GB"] - n["load_weight_end_avail_GB"], 2))
        config = ServeConfig(**fields)
        est = serve(card, config, dtype, "bf16")
        where = f"[{log['url'].split('github.com/')[-1] if 'github.com' in log['url'] else log['url']}]({log['url']})"
        accounting = "loader, any version" if checks == ("weights",) else est.version
        setup = f"{card_name} {dtype}, {config.engine} {accounting} (log: {log['version'][:40]}), TP {config.tp}"
        for check in checks:
            if check == "weights":
                meas = n.get("weights_GiB") or n.get("weights_GB") or n.get("weights_GB_per_rank")
                out.append([where, setup, "weights GiB", f"{est.weights_bytes / GiB:.2f}", f"{meas}",
                            _pct(est.weights_bytes / GiB, meas)])
            elif check == "available":
                meas = n.get("available_kv_cache_GiB")
                avail = est.kv_available_bytes / GiB
                out.append([where, setup, "available KV GiB", f"{avail:.2f}", f"{meas}", _pct(avail, meas)])
            elif check == "kv_from_available":
                meas = n.get("kv_cache_tokens")
                groups = _kv_groups(card, config, 2, config.pp)
                _, tokens, _, _ = _vllm_kv(card, config, groups, int(n["available_kv_cache_GiB"] * GiB), 16,
                                           config.max_model_len or card.max_position_embeddings, 8192)
                out.append([where, setup, "KV tokens from the logged available memory", f"{tokens:,}",
                            f"{meas:,}", _pct(tokens, meas)])
            elif check == "activation":
                meas = n["activation_peak_GiB"]
                out.append([where, setup, "profile run's activation GiB", f"{est.activation_peak_bytes / GiB:.2f}",
                            f"{meas}", _pct(est.activation_peak_bytes / GiB, meas)])
            elif check == "kv_gib":
                meas = n["kv_cache_GiB"]
                out.append([where, setup, "memory left for the KV cache GiB", f"{est.kv_available_bytes / GiB:.2f}",
                            f"{meas}", _pct(est.kv_available_bytes / GiB, meas)])
            elif check == "tokens":
                meas = (n.get("kv_tokens") or n.get("kv_cache_tokens") or n.get("kv_cache_max_tokens")
                        or n.get("max_total_num_tokens"))
                out.append([where, setup, "KV tokens", f"{est.kv_cache_tokens:,}", f"{meas:,}",
                            _pct(est.kv_cache_tokens, meas)])
            elif check == "starts":
                out.append([where, setup, "starts", "yes" if est.starts else "no", "yes" if log["started"] else "no",
                            "right" if est.starts == log["started"] else "wrong"])
    return out


# logs-more.jsonl: the Hub name in the log -> the card of the same architecture (the -Instruct/-it
# and quantized releases of a model share its architecture; gemma-3-*-it also carry a vision tower
# the text cards leave out, which the weights row shows).
MORE_CARDS = {
    "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b", "meta-llama/Meta-Llama-3-8B": "llama-3-8b",
    "RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w4a16": "llama-3.1-8b",
    "RedHatAI/Meta-Llama-3.1-8B-Instruct-quantized.w8a8": "llama-3.1-8b",
    "RedHatAI/Llama-3.3-70B-Instruct-fp8-dynamic": "llama-3.3-70b",
    "redhatai/Llama-3.3-70B-Instruct-quantized.w8a8": "llama-3.3-70b",
    "meta-llama/Llama-4-Scout-17B-16E-Instruct": "llama-4-scout",
    "Qwen/Qwen2.5-7B-Instruct": "qwen2.5-7b", "RedHatAI/Qwen2.5-7B-Instruct-fp8-dynamic": "qwen2.5-7b",
    "RedHatAI/Qwen2.5-7B-Instruct-quantized.w8a8": "qwen2.5-7b", "Qwen/Qwen2.5-72B-Instruct": "qwen2.5-72b",
    "Qwen/Qwen3-8B": "qwen3-8b", "Qwen/Qwen3-30B-A3B": "qwen3-30b-a3b",
    "google/gemma-2-2b-it": "gemma-2-2b", "google/gemma-2-9b-it": "gemma-2-9b", "google/gemma-3-4b-it": "gemma-3-4b",
    "google/gemma-3-12b-it": "gemma-3-12b", "google/gemma-3-27b-it": "gemma-3-27b", "microsoft/phi-4": "phi-4",
    "mistralai/Mixtral-8x7B-Instruct-v0.1": "mixtral-8x7b", "deepseek-ai/DeepSeek-V2-Lite-Chat": "deepseek-v2-lite",
    "openai/gpt-oss-20b": "gpt-oss-20b",
}


def _more_dtype(log: dict[str, Any]) -> str:
    """The weights' format from the checkpoint's name and the log's resolved quantization:
    RedHat's w4a16 (GPTQ, group 128), w8a8 (int8 per channel) and fp8-dynamic (fp8 per channel),
    vLLM's own --quantization fp8 (per-channel weights on Hopper), MXFP4, else the --dtype."""
    model, options = log["model"], log["options"]
    quant = str(options.get("quantization_resolved") or options.get("quantization") or "")
    if "w4a16" in model:
        return "w4a16"
    if "w8a8" in model:
        return "int8-channel"
    if "fp8-dynamic" in model or quant == "fp8":
        return "fp8-channel"
    if "mxfp4" in quant:
        return "mxfp4"
    return {"float16": "fp16", "float32": "fp32"}.get(str(options.get("dtype", "")), "bf16")


def more_rows() -> tuple[list[list[str]], dict[str, list[float]], list[bool]]:
    """The sweep's logs that print the whole budget: every number against llmcalc's."""
    out: list[list[str]] = []
    errors: dict[str, list[float]] = {"weights": [], "activation": [], "non_torch": [], "available": [], "tokens": []}
    verdicts: list[bool] = []
    for line in MORE.read_text().splitlines():
        log = json.loads(line)
        n, o = log["numbers"], log["options"]
        if log["model"] not in MORE_CARDS or "torch_peak_increase_GiB" not in n:
            continue
        card, dtype = load_card(MORE_CARDS[log["model"]]), _more_dtype(log)
        util = o.get("gpu_memory_utilization")
        config = ServeConfig(version="0.19", gpu_total_bytes=int(n["total_gpu_memory_GiB"] * GiB),
                             gpu_name="NVIDIA H100 80GB HBM3", tp=o.get("tensor_parallel_size") or 1, pp=o.get("pipeline_parallel_size") or 1,
                             memory_fraction=util if isinstance(util, float) else 0.9, max_model_len=o["max_model_len"],
                             kv_cache_dtype="fp8" if o.get("kv_cache_dtype_resolved") == "fp8" else "auto")
        compute = {"fp16": "fp16", "fp32": "fp32"}.get(dtype, "bf16")
        est = serve(card, config, dtype, compute)
        activation, available = est.activation_peak_bytes, est.kv_available_bytes
        if config.pp > 1:
            # the log is rank 0's, the first stage: no sampler there (the cache is the last stage's,
            # which has the least left: the tokens compare with the engine's minimum as they are)
            activation = profile_peak(card, est.max_num_batched_tokens, min(est.max_num_seqs, est.max_num_batched_tokens),
                                      2 if compute != "fp32" else 4, config.tp, est.version, last_stage=False)
            available = est.budget_bytes - est.weights_bytes - est.non_torch_bytes - activation
        pairs = [("weights", est.weights_bytes / GiB, n["weights_GiB"]),
                 ("activation", activation / GiB, n["torch_peak_increase_GiB"]),
                 ("non_torch", est.non_torch_bytes / GiB, n["non_torch_forward_increase_GiB"]),
                 ("available", available / GiB, n["available_kv_cache_GiB"]),
                 ("tokens", est.kv_cache_tokens, n["kv_cache_tokens"])]
        cells = []
        for key, e, m in pairs:
            errors[key].append(100 * (e - m) / m)
            cells.append(f"{e:,.0f} / {m:,} ({_pct(e, m)})" if key == "tokens" else f"{e:.2f} / {m:.2f} ({_pct(e, m)})")
        verdicts.append(est.starts == log["started"])
        name = log["url"].rsplit("/", 1)[-1].removesuffix(".log")
        setup = (f"{card.name} {dtype}, TP {config.tp}" + (f" PP {config.pp}" if config.pp > 1 else "")
                 + f", util {config.memory_fraction}, len {config.max_model_len:,}"
                 + (", fp8 KV" if config.kv_cache_dtype == "fp8" else ""))
        out.append([f"[{name}]({log['url']})", setup, *cells,
                    f"{'yes' if est.starts else 'no'} / {'yes' if log['started'] else 'no'}"])
    return out, errors, verdicts


def _spread(values: list[float]) -> str:
    import statistics

    mags = [abs(v) for v in values]
    return f"median |error| {statistics.median(mags):.1f}%, max {max(mags):.1f}%" if mags else "-"


OLD = ROOT / "benchmarks" / "serve" / "logs-old.jsonl"  # session 10: a helper's search for vLLM 0.4-0.8 logs
# vLLM 0.4.0-0.6.4 and V1 0.8 (session 10): (file, line, card, dtype, ServeConfig fields, checks)
OLD_CASES: list[tuple[Path, int, str, str, dict[str, Any], tuple[str, ...]]] = [
    (LOGS, 0, "llama-3.1-8b", "bf16", {"version": "0.6.4", "gpu_total_bytes": int(23.58 * GiB),
                                       "gpu_name": "NVIDIA GeForce RTX 3090", "max_model_len": 20000},
     ("peak_torch", "non_torch", "kv_size", "blocks", "starts")),
    (LOGS, 1, "llama-3.1-8b", "bf16", {"version": "0.6.4", "gpu_total_bytes": int(23.58 * GiB),
                                       "gpu_name": "NVIDIA GeForce RTX 3090", "max_model_len": 29000},
     ("peak_torch", "kv_size", "blocks", "starts")),
    # 8 L4s, ~0.5.4, options not stated (the defaults assumed); the failure came at graph capture. The
    # catalog has nvidia-smi's total for the L4 (23,034 MiB), not CUDA's, as `serve --gpu l4` uses it
    (OLD, 0, "gemma-2-9b", "bf16", {"version": "0.5", "gpu_total_bytes": 23034 * 2**20, "gpu_name": "NVIDIA L4",
                                    "tp": 8}, ("weights", "blocks")),
    # 4 A10s, V1 0.8.5 (its sampler's top-k/top-p path not known); the failure came at graph capture
    (MORE, 2, "qwen3-30b-a3b", "bf16", {"version": "0.8", "gpu_total_bytes": int(22.18 * GiB), "gpu_name": "NVIDIA A10",
                                        "tp": 4, "max_model_len": 8192}, ("weights", "tokens")),
]


def old_rows() -> list[list[str]]:
    out = []
    for path, index, card_name, dtype, fields, checks in OLD_CASES:
        log = json.loads(path.read_text().splitlines()[index])
        n, config, card = log["numbers"], ServeConfig(**fields), load_card(card_name)
        est = serve(card, config, dtype, "bf16")
        where = f"[{log['url'].split('github.com/')[-1]}]({log['url']})"
        setup = f"{card_name} {dtype}, vllm {est.version} (log: {log['version'][:40]}), TP {config.tp}"
        for check in checks:
            if check == "weights":
                meas = n.get("weights_GB") or n.get("weights_GiB_per_rank")
                out.append([where, setup, "weights GiB", f"{est.weights_bytes / GiB:.2f}", f"{meas}",
                            _pct(est.weights_bytes / GiB, meas)])
            elif check == "peak_torch":
                pred = (est.weights_bytes + est.activation_peak_bytes) / GiB
                out.append([where, setup, "peak_torch_memory GiB (weights + profile)", f"{pred:.2f}",
                            f"{n['peak_torch_memory_GiB']}", _pct(pred, n["peak_torch_memory_GiB"])])
            elif check == "non_torch":
                pred = est.non_torch_bytes / GiB
                out.append([where, setup, "non_torch_memory GiB (CUDA context inside)", f"{pred:.2f}",
                            f"{n['non_torch_memory_GiB']}", _pct(pred, n["non_torch_memory_GiB"])])
            elif check == "kv_size":
                pred = est.kv_available_bytes / GiB
                out.append([where, setup, "kv_cache_size GiB", f"{pred:.2f}", f"{n['kv_cache_size_GiB']}",
                            _pct(pred, n["kv_cache_size_GiB"])])
            elif check == "blocks":
                pred = est.kv_cache_tokens // est.kv_block_size
                out.append([where, setup, "GPU blocks", f"{pred:,}", f"{n['num_gpu_blocks']:,}",
                            _pct(pred, n["num_gpu_blocks"])])
            elif check == "tokens":
                out.append([where, setup, "KV tokens", f"{est.kv_cache_tokens:,}", f"{n['kv_cache_tokens']:,}",
                            _pct(est.kv_cache_tokens, n["kv_cache_tokens"])])
            elif check == "starts":
                out.append([where, setup, "starts", "yes" if est.starts else "no", "yes" if log["started"] else "no",
                            "right" if est.starts == log["started"] else "wrong"])
    return out


GRAPHS = ROOT / "benchmarks" / "serve" / "cudagraph-019.jsonl"  # session 12: the 0.19 sweep's CUDA-graph lines
# the sweep's checkpoints whose architecture has a card beyond MORE_CARDS (Kimi-Dev-72B is a Qwen2.5-72B)
GRAPH_CARDS = {**MORE_CARDS, "codellama/CodeLlama-7b-hf": "llama-2-7b", "Qwen/Qwen1.5-MoE-A2.7B": "qwen1.5-moe-a2.7b",
               "mistralai/Mistral-Small-3.1-24B-Instruct-2503": "mistral-small-3.1-24b",
               "RedHatAI/Mistral-Small-3.1-24B-Instruct-2503-quantized.w8a8": "mistral-small-3.1-24b",
               "moonshotai/Kimi-Dev-72B": "qwen2.5-72b"}


def graph_rows() -> tuple[list[list[str]], list[float], int]:
    """vLLM's CUDA-graph estimate (the V1 runner's formula, the same from 0.19 to 0.33, which 0.20
    and later subtract from the KV budget) against the estimate each 0.19 log prints."""
    from llmcalc.serving import cuda_graph_estimate

    out, errors, skipped = [], [], 0
    for line in GRAPHS.read_text().splitlines():
        log = json.loads(line)
        name = GRAPH_CARDS.get(log["model"])
        if not name:
            skipped += 1
            continue
        dtype = "fp32" if "dtf32" in log["log"] else "bf16"
        config = ServeConfig(version="0.19", gpu_total_bytes=int(79.19 * GiB), gpu_name="NVIDIA H100 80GB HBM3",
                             tp=log["tp"], pp=log["pp"])
        est, _ = cuda_graph_estimate(load_card(name), config, "0.19", "v1", log["max_num_seqs"],
                                     log["max_num_batched_tokens"], dtype, dtype)
        logged = log["estimate_total_GiB"]
        errors.append(100 * (est / GiB - logged) / logged)
        modes = ", ".join(f"{k} {m['first_MiB']:.0f} + {m['n_graphs'] - 1} x {m['per_graph_MiB']:.0f} MiB"
                          for k, m in log["modes"].items() if m.get("first_MiB") is not None)
        out.append([f"[{log['log'].removesuffix('.log')}]({log['url']})",
                    f"{name} {dtype}, TP {log['tp']}" + (f" PP {log['pp']}" if log["pp"] > 1 else ""), modes,
                    f"{est / GiB:.2f}", f"{logged:.2f}", _pct(est / GiB, logged), f"{log['capture_took_GiB']:.2f}"])
    return out, errors, skipped


def graph_split() -> list[str]:
    """The per-kernel constant fitted on half the 0.19 sweep's configurations (model, TP, PP, dtype;
    alternate ones) and the estimate checked on the other half, both ways round."""
    import statistics

    from llmcalc import serving

    logs = [json.loads(line) for line in GRAPHS.read_text().splitlines()]
    logs = [log for log in logs if log["model"] in GRAPH_CARDS]

    def key(log: dict[str, Any]) -> tuple:
        return log["model"], log["tp"], log["pp"], "dtf32" in log["log"]

    configs = sorted({key(log) for log in logs})
    out = []
    for half in (0, 1):
        fit = [log for log in logs if configs.index(key(log)) % 2 == half]
        test = [log for log in logs if configs.index(key(log)) % 2 != half]
        per_kernel = []
        for log in fit:
            card, dtype = load_card(GRAPH_CARDS[log["model"]]), "fp32" if "dtf32" in log["log"] else "bf16"
            nodes, _ = serving._graph_nodes(card, dtype, dtype, max(serving.capture_sizes(
                card, "0.19", log["max_num_seqs"], log["max_num_batched_tokens"])), log["tp"], log["pp"])
            layers = -(-card.num_layers // log["pp"])
            for mode, m in log["modes"].items():
                if m.get("per_graph_MiB") is not None:
                    graphs = layers + 1 if mode == "PIECEWISE" else 1
                    per_kernel.append((m["per_graph_MiB"] * 2**20 - graphs * calibration.CUDA_GRAPH_BYTES_PER_GRAPH)
                                      / nodes)
        k = int(statistics.median(per_kernel))
        errors = []
        for log in test:
            card, dtype = load_card(GRAPH_CARDS[log["model"]]), "fp32" if "dtf32" in log["log"] else "bf16"
            config = ServeConfig(version="0.19", gpu_total_bytes=int(79.19 * GiB), gpu_name="NVIDIA H100 80GB HBM3",
                                 tp=log["tp"], pp=log["pp"])
            est, _ = serving.cuda_graph_estimate(card, config, "0.19", "v1", log["max_num_seqs"],
                                                 log["max_num_batched_tokens"], dtype, dtype, per_kernel=k)
            errors.append(100 * (est / GiB - log["estimate_total_GiB"]) / log["estimate_total_GiB"])
        out.append(f"fitted on {len(fit)} logs ({k / 1024:.1f} KiB a kernel), the other {len(test)}: {_spread(errors)}, "
                   f"{sum(abs(e) <= 20 for e in errors)} within 20%")
    return out


# gdn-check.json (session 13, a helper's reading of benchmarks/serve/logs-021.jsonl against vLLM
# 0.20-0.33's source, benchmarks/serve/vllm-hybrid-gdn.md): Qwen3.6 logs on RTX 3090/5090s.
# (row, card, version, ServeConfig fields, settings the log does not show, what to check):
# "kv": tokens and concurrency from the available memory the log prints; "layout": the log prints
# tokens and concurrency but not the memory: some whole number of blocks must give both;
# "predict": the log prints the memory only (no line to check).
GDN = ROOT / "benchmarks" / "serve" / "gdn-check.json"
_FP8 = {"kv_cache_dtype": "fp8"}
GDN_CASES: list[tuple[int, str, str, dict[str, Any], str, str]] = [
    (2, "qwen3.6-27b", "0.21", _FP8 | {"tp": 2, "prefix_caching": True}, "no MTP, prefix caching", "kv"),
    (8, "qwen3.6-27b", "0.24", _FP8 | {"tp": 2, "prefix_caching": True, "num_speculative_tokens": 3},
     "fp8 KV, MTP 3, prefix caching", "kv"),
    (9, "qwen3.6-35b-a3b", "0.24", _FP8 | {"tp": 1, "prefix_caching": True}, "prefix caching", "kv"),
    (11, "qwen3.6-27b", "0.24", _FP8 | {"tp": 2, "prefix_caching": True, "num_speculative_tokens": 3}, "MTP 3", "kv"),
    (4, "qwen3.6-27b", "0.20", _FP8 | {"tp": 2, "prefix_caching": True, "num_speculative_tokens": 3}, "", "layout"),
    (5, "qwen3.6-27b", "0.22", _FP8 | {"tp": 2, "prefix_caching": True, "num_speculative_tokens": 3},
     "prefix caching", "layout"),
    (6, "qwen3.6-27b", "0.22", _FP8 | {"tp": 2, "prefix_caching": True, "num_speculative_tokens": 3},
     "prefix caching", "layout"),
    (1, "qwen3.6-27b", "0.21", _FP8 | {"tp": 4, "prefix_caching": True, "num_speculative_tokens": 3}, "", "predict"),
    (3, "qwen3.6-27b", "0.21", _FP8 | {"tp": 2, "prefix_caching": True, "num_speculative_tokens": 3},
     "MTP 3, prefix caching", "predict"),
    (10, "qwen3.6-27b", "0.24", _FP8 | {"tp": 1, "num_speculative_tokens": 3}, "MTP 3, fp8 KV", "predict"),
    (0, "qwen3.6-27b", "0.27", {"tp": 2, "num_speculative_tokens": 3}, "", "predict"),
]


def gdn_rows() -> tuple[list[list[str]], int, int]:
    """(rows, numbers checked, numbers right): tokens and concurrency as vLLM logs them."""
    logs = json.loads(GDN.read_text())
    out, checked, right = [], 0, 0
    for i, name, version, fields, inferred, check in GDN_CASES:
        log = logs[i]
        card = load_card(name)
        c = ServeConfig(gpu_total_bytes=24 * GiB, **fields)
        length = log["max_model_len"]
        kv_bytes = 1 if c.kv_cache_dtype.startswith("fp8") else 2
        layout = gdn_layout(card, c, version, length, kv_bytes, 2)
        setup = (f"{name} TP {c.tp}, {c.kv_cache_dtype} KV, MTP {c.num_speculative_tokens}, prefix caching "
                 f"{'on' if layout.prefix else 'off'}, len {length:,}, vLLM {log['version']}"
                 + (f" (not in the log, inferred: {inferred})" if inferred else ""))
        link = f"[{log['url'].split('github.com/')[-1]}]({log['url']})"
        grid = f"{layout.block} / {layout.per_request}"
        if check == "kv":
            avail = int(log["available_kv_gib_logged"] * GiB)
            _, tokens, conc, error, *_ = _vllm_gdn_kv(card, c, version, avail, length, kv_bytes, 2)
            ok_t, ok_c = tokens == log["tokens_logged"], f"{conc:.2f}" == f"{log['concurrency_logged']:.2f}"
            checked, right = checked + 2, right + ok_t + ok_c
            out.append([link, setup, grid, f"{log['available_kv_gib_logged']:.2f}",
                        f"{tokens:,} / {log['tokens_logged']:,} ({_pct(tokens, log['tokens_logged'])})",
                        f"{conc:.2f} / {log['concurrency_logged']:.2f}"])
        elif check == "layout":
            # the whole number of blocks whose concurrency x length gives the logged tokens
            blocks = [b for b in range(1, 100_000) if int(b / layout.per_request * length) == log["tokens_logged"]]
            ok = bool(blocks) and f"{blocks[0] / layout.per_request:.2f}" == f"{log['concurrency_logged']:.2f}"
            checked, right = checked + 1, right + ok
            out.append([link, setup, grid, "(not logged)",
                        f"{blocks[0]} blocks give {log['tokens_logged']:,}" if blocks else "no whole block count",
                        f"{blocks[0] / layout.per_request:.2f} / {log['concurrency_logged']:.2f}" if blocks else "-"])
        else:
            avail = int(log["available_kv_gib_logged"] * GiB)
            _, tokens, conc, error, *_ = _vllm_gdn_kv(card, c, version, avail, length, kv_bytes, 2)
            out.append([link, setup, grid, f"{log['available_kv_gib_logged']:.2f}",
                        f"{tokens:,} / (not logged)" if error is None else "does not start / (not logged)",
                        f"{conc:.2f} / (not logged)" if error is None else "-"])
    return out, checked, right


def _meets(number: str, error: str) -> bool | None:
    """Whether a checked number meets issue 15's target: weights within 3%, the KV cache (tokens,
    blocks, GiB) within 10%, the start verdict right; None for the numbers no target names."""
    if number == "starts":
        return error == "right"
    if "weights" in number:
        limit = 3.0
    elif any(k in number for k in ("KV tokens", "kv_cache_size", "GPU blocks")):
        limit = 10.0
    else:
        return None
    return abs(float(error.rstrip("%"))) <= limit


def targets(table: list[list[str]], old: list[list[str]], more: list[list[str]], more_errors: dict[str, list[float]],
            verdicts: list[bool], gdn: list[list[str]], sglang_gdn: list[float]) -> tuple[int, int]:
    """(logs whose every target number meets its target, logs with a target number)."""
    logs: dict[str, list[bool]] = {}
    for row in table + old:
        ok = _meets(row[2], row[-1])
        if ok is not None:
            logs.setdefault(row[0] + row[1].split(",")[0], []).append(ok)
    for i, row in enumerate(more):
        w, t = more_errors["weights"][i], more_errors["tokens"][i]
        logs[row[0]] = [abs(w) <= 3, abs(t) <= 10, verdicts[i]]
    for row in gdn:
        if "%)" in row[4]:  # tokens from the logged memory: llmcalc / logged (error)
            logs[row[0] + row[1]] = [abs(float(row[4].rsplit("(", 1)[1].rstrip("%)"))) <= 10]
        elif "blocks give" in row[4]:
            logs[row[0] + row[1]] = [True]
    for i, err in enumerate(sglang_gdn):
        logs[f"sglang-gdn-{i}"] = [abs(err) <= 10]
    return sum(all(v) for v in logs.values()), len(logs)


# SGLang 0.5.9-0.5.18 logs of Qwen3.5/3.6-shaped hybrids (benchmarks/serve/sglang-hybrid-gdn.md, section 9):
# (link, card, TP, version bucket, free memory before and after the weights (GiB), the fraction, the
# multimodal 100 MiB, logged tokens, logged max_mamba_cache_size or None). The pool starts from the
# logged free memory: rest = after - before x (1 - fraction) (- 100 MiB), as the engine computes it.
_OTEL = "https://github.com/farbodtavakkoli/OTel/blob/6f7791c059822d1a817982cb06e3b9d7393de56b/inference/sglang/llm/README.md"
SGLANG_GDN_CASES: list[tuple[str, str, int, str, float, float, float, bool, int, int | None]] = [
    (_OTEL + " (H100, 0.5.18; Qwen3.8-27B-FP8, Qwen3.6-27B's shapes)", "qwen3.6-27b", 1, "0.5.10", 78.48, 50.01,
     0.85, True, 330_323, 124),
    (_OTEL + " (MI355X, a 0.5.17 ROCm build; aiter's x 0.85 on the fraction)", "qwen3.6-27b", 1, "0.5.10", 287.27,
     258.78, 0.7225, True, 1_543_256, None),
    (_OTEL + " (MI355X TP 2, as above)", "qwen3.6-27b", 2, "0.5.10", 279.24, 264.75, 0.7225, True, 3_228_418, None),
    ("https://github.com/kvcache-ai/ktransformers/issues/1870 (RTX 4090 x 2, 0.5.9, Qwen3.5-397B-A17B-FP8)",
     "qwen3.5-397b-a17b", 2, "0.5", 22.84, 19.08, 0.85, False, 580_364, 82),
]


def sglang_gdn_rows() -> tuple[list[list[str]], list[float]]:
    out, errors = [], []
    for link, name, tp, version, before, after, fraction, multimodal, tokens, logged_slots in SGLANG_GDN_CASES:
        card = load_card(name)
        c = ServeConfig(engine="sglang", version=version, tp=tp, gpu_total_bytes=int(before * GiB))
        rest = (after - before * (1 - fraction)) * GiB - (100 * 2**20 if multimodal else 0)
        mamba, slots, *_ = _sglang_mamba(card, c, version, rest, 2)
        cell = sum(g.layers * g.bytes_per_token for g in _kv_groups(card, c, 2, 1))
        predicted = int((rest - mamba) // cell)
        errors.append(100 * (predicted - tokens) / tokens)
        url, _, what = link.partition(" (")
        out.append([f"[{url.split('github.com/')[-1]}]({url}) ({what}", f"{name} TP {tp}, fraction {fraction}",
                    f"{slots} / {logged_slots if logged_slots is not None else '-'}",
                    f"{predicted:,} / {tokens:,} ({_pct(predicted, tokens)})"])
    return out, errors


def main() -> None:
    table = rows()
    more, errors, verdicts = more_rows()
    lines = ["# Serving engines: `llmcalc serve` against public start-up logs", "",
             "Generated by `python benchmarks/serve_validate.py` from benchmarks/serve/logs.jsonl (44 logs users "
             "posted in issues and blogs) and benchmarks/serve/logs-more.jsonl (49 more, 45 of them one public vLLM "
             "0.19 sweep), each with its link, the engines' lines quoted verbatim. Rows: the logs whose model has a "
             "card and whose version llmcalc models, each number the log shows that llmcalc predicts, with the "
             "version's accounting (`--engine-version`, in the setup column). The accounting and its sources: "
             "docs/serve.md, docs/serve-accounting.md, benchmarks/serve/vllm-*.md.", "",
             "## Issue threads and blogs: vLLM V0 0.6-0.7, V1 0.10-0.11 and 0.19, SGLang 0.4-0.5.19", "",
             "| log | setup | number | llmcalc | logged | error |", "|---|---|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in table]
    lines += ["", f"{len(table)} numbers from {len(CASES) + len(SGLANG_CASES) + len(SGLANG_NEW_CASES)} logs (SGLang 0.4: "
              "benchmarks/serve/sglang-logs.jsonl, the 4 of its 14 logs that show the memory free before and after "
              "the weights and the fraction; the 24 GB card ran under Docker Desktop, whose VM held 0.5 GiB "
              "more than a bare card: +9.8% tokens; SGLang 0.4.4's loader logged gemma-3-4b-it 0.45 GiB below vLLM "
              "0.19's 8.58 GiB, which llmcalc matches: not explained). SGLang 0.5.10-0.5.19 "
              "(benchmarks/serve/sglang-logs-new.jsonl, sglang-latest.md): the token pool within 0.6% on 4 logs, "
              "the B200's default fraction (0.854) as the log implies; the loader logged 0.06 GiB more than "
              "llmcalc's weights for the two sub-1B models (Qwen3-0.6B, Qwen2.5-0.5B: -5%, -6%), not explained."]
    old = old_rows()
    lines += ["", "## vLLM 0.4.0-0.6.4 and V1 0.8 (`--engine-version 0.4`, `0.5`, `0.6.4`, `0.8`)", "",
              "The logs of these releases that name their GPU, model and options: two from one RTX 3090 (0.6.4, "
              "which prints its whole budget), one from 8 L4s (~0.5.4, options not stated, the defaults assumed), "
              "one from 4 A10s (0.8.5); benchmarks/serve/logs-old.md says how the search went.", "",
              "| log | setup | number | llmcalc | logged | error |", "|---|---|---|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in old]
    lines += ["", "- 0.6.4's profile is exact: weights plus the profile run's allocated peak equal `peak_torch_memory` "
              "at both lengths. Its non-torch term is the device's whole use beyond PyTorch's allocation: 0.35 GiB "
              "on that RTX 3090 (CUDA 12), where llmcalc charges the 0.66 GiB context it measured with CUDA 13 plus "
              "the 0.25 GiB growth of vLLM 0.19's logs; the cache is 0.56 GiB short for that, and the verdicts "
              "are right.",
              "- 8 L4s (from nvidia-smi's total; CUDA's is 0.4-0.6 GiB less): the weights per rank 8% under what "
              "the loader logged (not explained). Without NCCL's NVLS buffers, which need an NVSwitch (the TP "
              "non-torch figure of H100 SXM boards, 2.09 GiB, would have given 21,243 blocks), the blocks agree.",
              "- 4 A10s under V1 0.8.5: the cache 29% too small. The log leaves 1.06 GiB for the context, the "
              "non-torch memory and the profile run together; llmcalc charges 0.66 + 0.25 GiB and a 1.56 GiB "
              "profile whose sampler sorts in PyTorch. 0.8.5's Docker image ships FlashInfer, whose top-k/top-p "
              "sampler would need ~1 GiB less; which path ran is not in the log, so it is left as is.", ""]
    lines += ["## vLLM 0.19 on H100 80GB: the whole budget, 45 runs", "",
              "benchmarks/serve/logs-more.jsonl: the raw logs of the llm-d-planner team's sweep (committed in "
              "[llm-d-incubation/llm-d-planner#205](https://github.com/llm-d-incubation/llm-d-planner/pull/205), "
              "later removed; each row links the log at the commit that held it): vLLM 0.19.0 V1, the OpenAI "
              "server's defaults (8,192 batched tokens, 1,024 sequences), prefix caching off, at debug level, so "
              "each log prints every term of the budget. Each cell: llmcalc / logged (error). Activation = the "
              "profile run's torch peak increase; non-torch = its non-torch increase; available = what is left "
              "for the KV cache.", "",
              "| log | setup | weights GiB | activation GiB | non-torch GiB | available KV GiB | KV tokens | "
              "starts (llmcalc / logged) |",
              "|---|---|---:|---:|---:|---:|---:|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in more]
    lines += ["", f"{len(more)} runs. Weights: {_spread(errors['weights'])}; activation: {_spread(errors['activation'])}; "
              f"non-torch: {_spread(errors['non_torch'])}; available KV memory: {_spread(errors['available'])}; "
              f"KV tokens: {_spread(errors['tokens'])}, {sum(abs(e) <= 10 for e in errors['tokens'])} of "
              f"{len(errors['tokens'])} within 10%; start verdict right in {sum(verdicts)} of {len(verdicts)}.",
              ""]
    graphs, graph_errors, graph_skipped = graph_rows()
    lines += ["## The CUDA-graph estimate (subtracted from the KV budget from vLLM 0.20)", "",
              "From 0.20.0 vLLM subtracts its CUDA-graph estimate from the budget by default "
              "(benchmarks/serve/vllm-0.20-latest.md); the V1 runner's formula is the same from 0.19 to 0.33, and "
              "0.19 already computed and logged it. benchmarks/serve/cudagraph-019.jsonl holds, for the sweep above, "
              "each mode's first capture and per-graph drop and the total it logged (`Estimated CUDA graph memory`), "
              "and the memory the capture later took. llmcalc's estimate (serving.cuda_graph_estimate: 112 KiB a "
              "graph, measured on an H200; 11 KiB a kernel of the engine op list, the median of these logs' "
              "per-graph drops; FlashAttention 3's split buffers on Hopper) against the logged estimate:", "",
              "| log | setup | logged per mode | llmcalc GiB | logged GiB | error | capture took GiB |",
              "|---|---|---|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in graphs]
    lines += ["", f"{len(graphs)} logs ({graph_skipped} more lack a card): {_spread(graph_errors)}, "
              f"{sum(abs(e) <= 20 for e in graph_errors)} within 20%. The per-kernel figure is the median of these "
              "same logs, so this table checks the formula's shape (graph counts, layers, TP, the first capture), not "
              "an independent constant. The large misses are vLLM's own: a second PIECEWISE capture that dropped "
              "24-26 MiB, multiplied by 50 graphs (Llama-3.1-8B and Mistral-Small at TP 2, whose captures then took "
              "half the estimate: the linear extrapolation vLLM issue #45178 reports), Gemma 3 and gpt-oss, whose FULL "
              "captures allocate no FlashAttention split buffers in these logs, and Llama 4 Scout (PIECEWISE only). "
              "Held out: the per-kernel figure fitted on alternate configurations (model, TP, PP, dtype) and "
              "checked on the rest, both ways round: " + "; ".join(graph_split()) + ".",
              ""]
    sg_gdn, sg_gdn_errors = sglang_gdn_rows()
    gdn, gdn_checked, gdn_right = gdn_rows()
    lines += ["## vLLM 0.20-0.27: Gated DeltaNet hybrids (Qwen3.6)", "",
              "benchmarks/serve/gdn-check.json: the Qwen3.6 start-up logs among benchmarks/serve/logs-021.jsonl (RTX "
              "3090/5090 owners' issues, mostly int4 and FP8 checkpoints), and how vLLM lays out a hybrid's cache "
              "(benchmarks/serve/vllm-hybrid-gdn.md, read from every wheel 0.20.0-0.33.0; llmcalc/serving.py "
              "gdn_layout). The logs' excerpts print no weights line, so each row starts from the available memory the "
              "log prints. Where a log's excerpt cuts off a setting, the "
              "row says which, and the setting is the one the club-3090 configuration of that name uses and the "
              "only one that reproduces the numbers: those rows check the arithmetic, not the settings.", "",
              "| log | setup | block tokens / blocks per request | available GiB (logged) | KV tokens (llmcalc / logged) | "
              "concurrency (llmcalc / logged) |", "|---|---|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in gdn]
    lines += ["", f"{gdn_right} of {gdn_checked} logged numbers reproduced exactly (tokens and concurrency from the "
              "printed memory; or a whole number of blocks giving both). #642's available memory sits on a block "
              "boundary: its printed 11.05 GiB gives 425 blocks, the log's tokens are those of 426 (11.05-11.08 GiB "
              "unrounded). Rows without a token line are predictions. Not covered: the int8_per_token_head KV of "
              "club-3090 #434, the external DFlash drafters of #1084/#1086 and the DeepSeek-V4 logs.",
              "", "## SGLang 0.5.9-0.5.18: Gated DeltaNet hybrids", "",
              "benchmarks/serve/sglang-hybrid-gdn.md (a helper's reading of every wheel 0.5.3-0.5.23): the Mamba "
              "pool of a hybrid takes rest x 0.9 / 1.9 in whole slots of every GDN layer's conv and fp32 states, the "
              "full-attention layers' KV the remainder (serving._sglang_mamba). From each log's free memory before "
              "and after the weights and its fraction:", "",
              "| log | setup | slots (llmcalc / logged) | KV tokens (llmcalc / logged) |", "|---|---|---:|---:|"]
    lines += ["| " + " | ".join(r) + " |" for r in sg_gdn]
    lines += ["", f"{len(sg_gdn)} logs: tokens {_spread(sg_gdn_errors)}. The H100 log's free memory puts it 3 MiB "
              "past a slot boundary: one slot more than logged (its tokens imply 58 MiB less, perhaps loader "
              "temporaries 0.5.18 had not yet collected); the MI355X rows need ROCm's aiter backend's x 0.85 on the "
              "fraction, which llmcalc does not apply.",
              "", "Targets (issue 15): weights within 3%, KV cache within 10%, the start verdict right: "
              "{} of {} logs meet every target among the numbers they show. ".format(*targets(table, old, more, errors, verdicts, gdn,
                                                                                             sg_gdn_errors))
              + "The others, each discussed above: vLLM 0.6.4 on an RTX 3090 (#10517, two runs: the cache 15-19% short "
              "where llmcalc charges a CUDA-13 context to a CUDA-12 build), 0.8.5 on four A10s (#17469: -29% "
              "tokens, the sampler's path unknown), ~0.5.4 on eight L4s (#7593: weights -8%, not explained), SGLang's "
              "loader beside llmcalc's weights for Gemma 3 4B (0.4.4: +5%) and the two sub-1B models (0.5.10+: -5%, -6%), "
              "and vLLM 0.19's gpt-oss-20b at 0.95 utilization on TP 1 and 2, which its sampler warm-up after graph "
              "capture ran out of memory (the same model started at 0.9 on TP 2; what the profile leaves pinned, 0.1-2.3 "
              "GiB between runs, decides it: benchmarks/serve/vllm-warmup.md). "
              + f"Logs in all: {len(CASES) + len(SGLANG_CASES) + len(SGLANG_NEW_CASES) + len(OLD_CASES) + len(more) + sum(case[-1] != 'predict' for case in GDN_CASES) + len(SGLANG_GDN_CASES)}."]
    (ROOT / "docs" / "serve-validation.md").write_text("\n".join(lines) + "\n")
    for r in table:
        print(" | ".join(r[1:]))


if __name__ == "__main__":
    main()
