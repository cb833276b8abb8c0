"""Throughput validation: measured prefill and decode times against the throughput model.

    PYTHONPATH=. python benchmarks/throughput.py run --out benchmarks/results/throughput/h100.jsonl
    python benchmarks/throughput.py report    # rewrites docs/throughput-validation.md

`run` builds each (model, dtype) once on the GPU with random weights, then for every batch size:
a warm-up prefill, a timed prefill (wall clock with a sync) and GEN-1 greedy decode steps on a
DynamicCache, each timed (forward + argmax + sync; the median is reported). Then, in a second
pass, the same prefill and KERNEL_WINDOW decode steps around the median step are traced with
torch.profiler for the GPU kernel time. Tracing comes last, and each (model, dtype) runs in its
own process, because once CUPTI is attached every later launch in the process is slower. `report` predicts every stored row with the current model
(llmcalc/speed.py and the efficiencies in llmcalc/calibration.py) and writes the table.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmcalc.memory import Workload  # noqa: E402
from llmcalc.resolve import load_card  # noqa: E402

MODELS = ["llama-2-7b", "llama-3.1-8b"]
DTYPES = ["bf16", "int8", "nf4"]
BATCHES = [1, 4, 16, 64]
SEQ, GEN = 512, 64
KERNEL_WINDOW = 5


def _prefill_fn(torch: Any, model: Any, card: Any, w: Workload) -> tuple[Any, Any]:
    gen = torch.Generator(device="cpu").manual_seed(0)
    ids = torch.randint(0, card.vocab_size, (w.batch, w.seq), generator=gen).to("cuda")

    def prefill(cache: Any) -> Any:
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float().argmax(-1, keepdim=True)

    return prefill, ids


def wall_times(torch: Any, model: Any, card: Any, w: Workload) -> dict[str, Any]:
    """Pass 1, no tracing: prefill wall time, then every decode step's (median reported)."""
    from transformers import DynamicCache

    prefill, _ = _prefill_fn(torch, model, card, w)
    row: dict[str, Any] = {}
    with torch.inference_mode():
        prefill(DynamicCache(config=model.config))  # warm-up: kernel selection, workspaces
        torch.cuda.synchronize()
        cache = DynamicCache(config=model.config)
        t0 = time.perf_counter()
        nxt = prefill(cache)
        torch.cuda.synchronize()
        row["prefill_s"] = time.perf_counter() - t0
        wall = []
        for _ in range(w.gen - 1):
            t0 = time.perf_counter()
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
            nxt = out.logits[:, -1, :].float().argmax(-1, keepdim=True)
            torch.cuda.synchronize()
            wall.append(time.perf_counter() - t0)
    # the median step sits halfway: its cache holds the prompt and half the generated tokens
    row["decode_step_wall_s"] = statistics.median(wall)
    row["decode_context"] = w.seq + w.gen // 2
    return row


def kernel_times(torch: Any, model: Any, card: Any, w: Workload) -> dict[str, Any]:
    """Pass 2, traced: prefill kernels, and KERNEL_WINDOW decode steps at the median step's
    cache length."""
    from transformers import DynamicCache

    from llmcalc.profile.runner import _KernelTracer

    prefill, ids = _prefill_fn(torch, model, card, w)
    row: dict[str, Any] = {}
    with torch.inference_mode():
        with _KernelTracer(torch) as tracer:
            prefill(DynamicCache(config=model.config))
        row["prefill_kernel_s"], row["prefill_kernels"] = tracer.totals()
        cache = DynamicCache(config=model.config)
        nxt = prefill(cache)
        first = w.gen // 2 - KERNEL_WINDOW // 2 - 1  # steps before the window
        for _ in range(first):
            nxt = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits[:, -1, :].float().argmax(-1, keepdim=True)
        with _KernelTracer(torch) as tracer:
            for _ in range(KERNEL_WINDOW):
                out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
                nxt = out.logits[:, -1, :].float().argmax(-1, keepdim=True)
        kernel_s, kernels = tracer.totals()
    row["decode_step_kernel_s"] = kernel_s / KERNEL_WINDOW
    row["decode_kernels_per_step"] = kernels / KERNEL_WINDOW
    return row


def run_one(out: Path, name: str, dtype: str, batches: list[int]) -> None:
    """One (model, dtype) in this process: every batch's wall times first, then the traces."""
    import torch

    from llmcalc.profile.runner import build_model, environment

    env = environment(torch, "cuda")
    try:
        import bitsandbytes

        env["bitsandbytes"] = bitsandbytes.__version__
    except ImportError:
        pass
    card = load_card(name)
    t0 = time.time()
    model = build_model(torch, card, Workload(dtype=dtype, batch=1, seq=SEQ, gen=GEN), "cuda", None,
                        quantize_on_device=True).eval()
    rows: dict[int, dict[str, Any]] = {}
    for passes in (wall_times, kernel_times):
        for batch in batches:
            if rows.get(batch, {}).get("oom"):
                continue
            w = Workload(dtype=dtype, batch=batch, seq=SEQ, gen=GEN)
            try:
                rows.setdefault(batch, {}).update(passes(torch, model, card, w))
            except torch.OutOfMemoryError:
                rows.setdefault(batch, {})["oom"] = True
            gc.collect()
            torch.cuda.empty_cache()
    with out.open("a") as f:
        for batch, row in rows.items():
            row.update({"model": name, "dtype": dtype, "batch": batch, "seq": SEQ, "gen": GEN, "env": env})
            f.write(json.dumps(row) + "\n")
            print(f"{name} {dtype} b{batch}: " + ", ".join(f"{k} {v:.4g}" for k, v in row.items()
                                                          if isinstance(v, float)), flush=True)
    print(f"  {name} {dtype}: {time.time() - t0:.0f}s", flush=True)


def run(out: Path, models: list[str], dtypes: list[str], batches: list[int]) -> None:
    """Each (model, dtype) in a fresh process: tracing slows every later launch in a process."""
    import os
    import subprocess

    out.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    for name in models:
        for dtype in dtypes:
            cmd = [sys.executable, __file__, "one", "--out", str(out), "--model", name, "--dtype", dtype,
                   "--batches", ",".join(map(str, batches))]
            proc = subprocess.run(cmd, env=env, cwd=ROOT)
            if proc.returncode:
                print(f"FAILED {name} {dtype} (exit {proc.returncode})", flush=True)


def report(results: Path, doc: Path) -> None:
    from llmcalc.hardware import gpu_for_device_name
    from llmcalc.speed import default_efficiency, forward_ops, step_time

    rows = [json.loads(line) for path in sorted(results.glob("*.jsonl")) for line in path.read_text().splitlines()]
    eff = default_efficiency()
    lines = [
        "# Throughput validation: predicted vs measured",
        "",
        "Generated by `python benchmarks/throughput.py report` from benchmarks/results/throughput/.",
        "Measured by `benchmarks/throughput.py run` (random weights, transformers SDPA, DynamicCache, greedy).",
        "Predictions use the current throughput model with the default efficiencies",
        f"({eff.source}).",
        "",
        "Times in ms. Decode: one step for the whole batch, at the cache length the traced steps had.",
        "kernel = sum of GPU kernel durations (torch.profiler); wall = forward + argmax + sync (host included).",
        "",
        "| model | dtype | batch | prefill ms pred | meas | err | decode kernel ms pred | meas | err |"
        " decode wall ms pred | meas | err | kernels/step pred | meas |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    errs: dict[str, list[float]] = {"prefill": [], "kernel": [], "wall": []}
    by_dtype: dict[str, list[tuple[float, float]]] = {}
    envs = set()
    for r in rows:
        if r.get("oom"):
            continue
        e = r["env"]
        envs.add(f"{e.get('gpu')}, driver {e.get('driver')}, CUDA {e.get('cuda')}, torch {e.get('torch')}, "
                 f"transformers {e.get('transformers')}, bitsandbytes {e.get('bitsandbytes', '-')}")
        gpu = gpu_for_device_name(e.get("gpu", ""))
        if gpu is None:
            continue
        card = load_card(r["model"])
        w = Workload(dtype=r["dtype"], batch=r["batch"], seq=r["seq"], gen=r["gen"])
        pre = step_time(forward_ops(card, w, w.batch * w.seq, w.seq, w.seq, w.batch, eff), gpu, eff)
        ctx = r.get("decode_context", w.seq + w.gen // 2)
        dec = step_time(forward_ops(card, w, w.batch, 1, ctx, w.batch, eff), gpu, eff)

        def pct(pred: float, meas: float | None) -> str:
            return f"{100 * (pred - meas) / meas:+.0f}%" if meas else "-"

        ep = 100 * (pre.wall_s - r["prefill_s"]) / r["prefill_s"]
        ek = 100 * (dec.kernel_s - r["decode_step_kernel_s"]) / r["decode_step_kernel_s"]
        ew = 100 * (dec.wall_s - r["decode_step_wall_s"]) / r["decode_step_wall_s"]
        errs["prefill"].append(abs(ep))
        errs["kernel"].append(abs(ek))
        errs["wall"].append(abs(ew))
        by_dtype.setdefault(r["dtype"], []).append((abs(ep), abs(ek)))
        lines.append(
            f"| {r['model']} | {r['dtype']} | {r['batch']} | {pre.wall_s * 1e3:.1f} | {r['prefill_s'] * 1e3:.1f} | "
            f"{ep:+.0f}% | {dec.kernel_s * 1e3:.2f} | {r['decode_step_kernel_s'] * 1e3:.2f} | {ek:+.0f}% | "
            f"{dec.wall_s * 1e3:.2f} | {r['decode_step_wall_s'] * 1e3:.2f} | {ew:+.0f}% | {dec.kernels} | "
            f"{r['decode_kernels_per_step']:.0f} |")
    if errs["kernel"]:
        lines += ["", f"{len(errs['kernel'])} rows. Median |error|: prefill {statistics.median(errs['prefill']):.0f}% "
                  f"(max {max(errs['prefill']):.0f}%), decode kernel time {statistics.median(errs['kernel']):.0f}% "
                  f"(max {max(errs['kernel']):.0f}%), decode wall time {statistics.median(errs['wall']):.0f}% "
                  f"(max {max(errs['wall']):.0f}%). Target (issue 4): prefill and decode kernel time within 20%.",
                  ""]
        for dtype, pairs in by_dtype.items():
            within = sum(1 for p, k in pairs if p <= 20 and k <= 20)
            lines.append(f"- {dtype}: {within} of {len(pairs)} rows with prefill and decode kernel time both within 20% "
                         f"(max |error| prefill {max(p for p, _ in pairs):.0f}%, decode kernel {max(k for _, k in pairs):.0f}%).")
        lines += ["", "Environment: " + "; ".join(sorted(envs)), "",
                  "Wall clock on this machine's host was erratic (docs/throughput.md): the wall predictions are a "
                  "steady host's, and the measured decode wall times run 2-4x longer than the kernel time for reasons "
                  "the model does not capture."]
    doc.write_text("\n".join(lines) + "\n")
    print(f"wrote {doc} ({len(rows)} rows)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("--out", type=Path, required=True)
    p_run.add_argument("--models", default=",".join(MODELS))
    p_run.add_argument("--dtypes", default=",".join(DTYPES))
    p_run.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p_one = sub.add_parser("one")
    p_one.add_argument("--out", type=Path, required=True)
    p_one.add_argument("--model", required=True)
    p_one.add_argument("--dtype", required=True)
    p_one.add_argument("--batches", default=",".join(map(str, BATCHES)))
    p_rep = sub.add_parser("report")
    p_rep.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "throughput")
    p_rep.add_argument("--doc", type=Path, default=ROOT / "docs" / "throughput-validation.md")
    args = parser.parse_args()
    if args.command == "run":
        run(args.out, args.models.split(","), args.dtypes.split(","), [int(b) for b in args.batches.split(",")])
    elif args.command == "one":
        run_one(args.out, args.model, args.dtype, [int(b) for b in args.batches.split(",")])
    else:
        report(args.results, args.doc)


if __name__ == "__main__":
    main()
