"""typer commands: parse, call the core, hand the result to render.

Exit codes: 0 success, 1 a capacity check failed, 2 bad input, 3 profiler out of memory,
4 the environment cannot run the command (see llmcalc/errors.py and docs/cli.md).

No `from __future__ import annotations` here: typer reads every option's annotation with
typing.get_type_hints, which compiles and evaluates string annotations one by one (11 ms of
`estimate`'s start on a 2-core machine); evaluated once at import they cost nothing more.
"""

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from llmcalc.errors import LlmcalcError

app = typer.Typer(
    help="How much GPU memory an LLM workload takes, how fast it runs, and which hardware it fits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No markup: model names and paths print as given (a path may hold "[...]"); styles are set
# explicitly in render.
out = Console(highlight=False, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, markup=False, emoji=False)


@contextmanager
def _reported() -> Iterator[None]:
    """Core errors become one line on stderr and a documented exit code."""
    try:
        yield
    except LlmcalcError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(code=exc.exit_code) from None


Model = Annotated[str, typer.Argument(help="A card name (see `llmcalc models`), a card .yaml, a config.json (file or directory), or a Hugging Face Hub ID (owner/name).")]
Revision = Annotated[Optional[str], typer.Option(help="Hub ID only: a branch, tag or commit (default: main).")]
AsFamily = Annotated[Optional[str], typer.Option("--as-family", help="Read the config.json as this family's (a fine-tune that renamed a known architecture).")]
Mode = Annotated[str, typer.Option(help="infer or train.")]
Dtype = Annotated[Optional[str], typer.Option(help="How weights are stored: fp32, fp16, bf16, fp8, int8, int4, nf4, or a "
                                                   "pre-quantized checkpoint's format (awq-int4, gptq-int4, fp8-block, "
                                                   "mxfp4, nvfp4, w4a16, ...: docs/models.md). Default: the checkpoint's "
                                                   "quantization_config, else bf16.")]
Autocast = Annotated[Optional[str], typer.Option(help="torch autocast dtype (bf16 or fp16): mixed precision over the stored weights.")]
Batch = Annotated[int, typer.Option(help="Sequences per batch.")]
Seq = Annotated[int, typer.Option(help="Prompt tokens (infer) or sequence length (train).")]
Gen = Annotated[int, typer.Option(help="New tokens generated (infer).")]
Beams = Annotated[int, typer.Option(help="Beams per sequence (infer).")]
KvDtype = Annotated[Optional[str], typer.Option("--kv-dtype", help="KV cache dtype (default: the compute dtype).")]
Ckpt = Annotated[bool, typer.Option("--grad-checkpointing", help="Gradient checkpointing (train).")]
Optim = Annotated[str, typer.Option(help="adamw (torch, fused), adamw-foreach (torch.optim.AdamW's CUDA default), adamw-8bit or sgd (train).")]
Attention = Annotated[str, typer.Option(help="sdpa (flash / memory-efficient kernels) or eager (materialises seq x seq scores).")]
Allocator = Annotated[str, typer.Option(help="PyTorch's caching allocator: default, or expandable "
                                              "(PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True).")]
Int8Outliers = Annotated[str, typer.Option(help="LLM.int8's input columns with an outlier (|x| >= 6): few (a trained "
                                                 "checkpoint's) or all (the bound: every weight dequantized in its matmul).")]
LoraTargets = Annotated[str, typer.Option(help="LoRA target projections: q,k,v,o,gate,up,down or all.")]
Gpu = Annotated[Optional[str], typer.Option(help="GPU or CPU id from `llmcalc gpus`: adds a fit verdict and, for inference, the throughput.")]
Explain = Annotated[bool, typer.Option("--explain", help="Show the formula and numbers behind each row.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (the documented contract in docs/json.md).")]


@app.command()
def estimate(
    model: Model,
    mode: Mode = "infer",
    dtype: Dtype = None,
    autocast: Autocast = None,
    batch: Batch = 1,
    seq: Seq = 512,
    gen: Gen = 128,
    beams: Beams = 1,
    kv_dtype: KvDtype = None,
    grad_checkpointing: Ckpt = False,
    optimizer: Optim = "adamw",
    attention: Attention = "sdpa",
    allocator: Allocator = "default",
    int8_outliers: Int8Outliers = "few",
    gpu: Gpu = None,
    gpus: Annotated[int, typer.Option(help="GPUs in all (data x tensor x pipeline parallel).")] = 1,
    tp: Annotated[int, typer.Option(help="Tensor-parallel size.")] = 1,
    pp: Annotated[int, typer.Option(help="Pipeline-parallel size.")] = 1,
    zero: Annotated[int, typer.Option(help="DeepSpeed ZeRO stage 0-3 (train).")] = 0,
    fsdp: Annotated[Optional[str], typer.Option(help="PyTorch FSDP: full (= ZeRO-3) or grad-op (= ZeRO-2) (train).")] = None,
    grad_accum: Annotated[int, typer.Option(help="Gradient accumulation steps (--batch is the micro-batch).")] = 1,
    offload: Annotated[Optional[str], typer.Option(help="Offload to CPU memory: optimizer or params (train).")] = None,
    cpu_memory: Annotated[Optional[float], typer.Option(help="CPU memory offload may use, GiB per rank.")] = None,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank: train adapters only (QLoRA with --dtype nf4).")] = 0,
    lora_targets: LoraTargets = "q,v",
    micro_batch: Annotated[Optional[int], typer.Option(help="Micro-batch per GPU (same as --batch; with --grad-accum).")] = None,
    selective_recompute: Annotated[bool, typer.Option("--selective-recompute", help="Recompute the attention core in backward (Megatron's selective recomputation).")] = False,
    reduce_bucket_size: Annotated[Optional[int], typer.Option(help="DeepSpeed's reduce_bucket_size, elements (with --zero; default 5e8).")] = None,
    explain: Explain = False,
    json: Json = False,
    revision: Revision = None,
    as_family: AsFamily = None,
) -> None:
    """Estimate the GPU memory of a workload, per component, at its peak phase (per GPU when split)."""
    from llmcalc import api, render

    with _reported():
        r = api.estimate(model, mode=mode, dtype=dtype, autocast=autocast, batch=micro_batch or batch, seq=seq, gen=gen,
                         beams=beams, kv_dtype=kv_dtype, grad_checkpointing=grad_checkpointing, optimizer=optimizer,
                         attention=attention, allocator=allocator, gpu=gpu, gpus=gpus, tp=tp, pp=pp, zero=zero,
                         fsdp=fsdp, grad_accum=grad_accum, offload=offload, cpu_memory=cpu_memory, lora_rank=lora_rank,
                         lora_targets=lora_targets, selective_recompute=selective_recompute,
                         reduce_bucket_size=reduce_bucket_size, revision=revision, as_family=as_family,
                         int8_outliers=int8_outliers)
    if r.per_gpu:
        if json:
            print(render.dumps(r.to_dict()))
        else:
            render.print_scaled(out, r.memory, r.model, r.workload, r.gpu)  # type: ignore[arg-type]
        return
    for line in r.warnings:
        err.print(f"warning: {line}", markup=False, soft_wrap=True)
    if json:
        print(render.dumps(r.to_dict()))
    else:
        render.print_estimate(out, r.memory, r.model, r.gpu, explain)  # type: ignore[arg-type]
        if r.gpu is not None and r.throughput is not None:
            render.print_throughput(out, r.throughput, r.memory, r.gpu)  # type: ignore[arg-type]


Device = Annotated[str, typer.Option(help="cuda or cpu.")]
Weights = Annotated[Optional[str], typer.Option(help="Load a local checkpoint (safetensors directory) instead of random weights.")]
Snapshot = Annotated[Optional[str], typer.Option(help="Write PyTorch's memory-history snapshot here (view at pytorch.org/memory_viz).")]


@app.command()
def profile(
    model: Model,
    mode: Mode = "infer",
    dtype: Dtype = None,
    autocast: Autocast = None,
    batch: Batch = 1,
    seq: Seq = 512,
    gen: Gen = 128,
    beams: Beams = 1,
    kv_dtype: KvDtype = None,
    grad_checkpointing: Ckpt = False,
    optimizer: Optim = "adamw",
    attention: Attention = "sdpa",
    allocator: Allocator = "default",
    int8_outliers: Int8Outliers = "few",
    device: Device = "cuda",
    weights: Weights = None,
    snapshot: Snapshot = None,
    lora_rank: Annotated[int, typer.Option(help="Train peft LoRA adapters of this rank (QLoRA with --dtype nf4).")] = 0,
    lora_targets: LoraTargets = "q,v",
    json: Json = False,
    revision: Revision = None,
    as_family: AsFamily = None,
) -> None:
    """Run the real model (random weights unless --weights) and compare with the estimate."""
    from llmcalc import api, render
    from llmcalc.errors import EXIT_OOM
    from llmcalc.profile.compare import record
    from llmcalc.profile.runner import run_profile

    with _reported():
        card = api.card_for(model, revision, as_family)
        r = api.estimate(card, mode=mode, dtype=dtype, autocast=autocast, batch=batch, seq=seq, gen=gen, beams=beams,
                         kv_dtype=kv_dtype, grad_checkpointing=grad_checkpointing, optimizer=optimizer,
                         attention=attention, allocator=allocator, lora_rank=lora_rank, lora_targets=lora_targets,
                         int8_outliers=int8_outliers)
        workload, est = r.workload, r.memory
        lora = (lora_rank, r.memory.scale.lora_targets) if lora_rank else None  # type: ignore[union-attr]
        with err.status("profiling") as status:
            measured = run_profile(card, workload, device=device, weights=weights, snapshot=snapshot,
                                   progress=lambda p: status.update(f"profiling: {p}"), lora=lora)
    doc = record(model, card.name, est, measured.to_dict())
    if json:
        print(render.dumps(doc))
    else:
        render.print_profile(out, doc)
    if measured.oom_phase:
        err.print(f"error: out of memory in phase {measured.oom_phase}; GPU memory released", soft_wrap=True)
        raise typer.Exit(code=EXIT_OOM)


Batches = Annotated[str, typer.Option(help="Batch sizes to sweep, comma-separated.")]
GpuRequired = Annotated[str, typer.Option(help="GPU or CPU id from `llmcalc gpus`.")]


@app.command("throughput")
def throughput_cmd(
    model: Model,
    gpu: GpuRequired,
    dtype: Dtype = None,
    autocast: Autocast = None,
    seq: Seq = 512,
    gen: Gen = 128,
    beams: Beams = 1,
    kv_dtype: KvDtype = None,
    attention: Attention = "sdpa",
    batches: Batches = "1,2,4,8,16,32,64,128,256",
    json: Json = False,
    revision: Revision = None,
    as_family: AsFamily = None,
) -> None:
    """Sweep the batch size: time to first token, decode step, tokens/s, until memory runs out."""
    from llmcalc import api, render
    from llmcalc.errors import InputError

    with _reported():
        try:
            sizes = [int(b) for b in batches.split(",") if b.strip()]
        except ValueError:
            raise InputError(f"--batches must be comma-separated integers, got '{batches}'") from None
        r = api.throughput(model, gpu, dtype=dtype, autocast=autocast, seq=seq, gen=gen, beams=beams,
                           kv_dtype=kv_dtype, attention=attention, batches=sizes, revision=revision,
                           as_family=as_family)
    if json:
        print(render.dumps(r.to_dict()))
    else:
        render.print_sweep(out, [(row.batch, row.memory, row.throughput) for row in r.rows], r.gpu,
                           f"{r.model.name} · weights {dtype} · prompt {seq} · gen {gen} on {r.gpu.name}")


CalDevice = Annotated[str, typer.Option(help="cuda or cpu.")]
CalGpu = Annotated[Optional[str], typer.Option(help="Catalog id to store the figures under (default: matched from the driver's device name).")]


@app.command()
def calibrate(device: CalDevice = "cuda", gpu: CalGpu = None, json: Json = False) -> None:
    """Measure this machine (bandwidth, matrix rates, kernel and launch costs, CUDA context) and store it."""
    from llmcalc import render
    from llmcalc.calibration import save_calibration
    from llmcalc.errors import InputError
    from llmcalc.hardware import get_gpu, gpu_for_device_name
    from llmcalc.profile.calibrate import measure

    with _reported():
        if gpu:
            spec = get_gpu(gpu)
        elif device == "cpu":
            raise InputError("--device cpu needs --gpu ID: the catalog CPU to store the figures under")
        else:
            spec = None
        with err.status("calibrating (about a minute)"):
            result = measure(device)
        if spec is None:
            spec = gpu_for_device_name(result["env"].get("gpu", ""))
            if spec is None:
                raise InputError(f"no catalog GPU matches '{result['env'].get('gpu')}': name it with --gpu ID")
        path = save_calibration(spec.id, result)
    if json:
        print(render.dumps({"gpu": spec.id, "path": str(path), "calibration": result}))
    else:
        render.print_calibration(out, spec.id, result, str(path))


OptModel = Annotated[Optional[str], typer.Argument(help="A card name, card .yaml or config.json (or use --file).")]
OptGpu = Annotated[Optional[str], typer.Option(help="GPU or CPU id from `llmcalc gpus`.")]
Gpus = Annotated[int, typer.Option(help="GPUs per deployment: inference splits tensor-parallel, training data-parallel.")]
Headroom = Annotated[str, typer.Option(help="Memory that must stay free: 10% or 0.1.")]
MinRate = Annotated[Optional[float], typer.Option("--min-tokens-per-s", help="Aggregate decode rate the deployment must reach.")]
CheckFile = Annotated[Optional[str], typer.Option("--file", help="YAML file of deployments (docs/check.md).")]
Junit = Annotated[Optional[str], typer.Option("--junit", help="Also write JUnit XML here, one test case per deployment.")]


@app.command("check")
def check_cmd(
    model: OptModel = None,
    gpu: OptGpu = None,
    gpus: Gpus = 1,
    mode: Mode = "infer",
    dtype: Dtype = None,
    autocast: Autocast = None,
    batch: Batch = 1,
    seq: Seq = 512,
    gen: Gen = 128,
    beams: Beams = 1,
    kv_dtype: KvDtype = None,
    grad_checkpointing: Ckpt = False,
    optimizer: Optim = "adamw",
    attention: Attention = "sdpa",
    headroom: Headroom = "0%",
    min_tokens_per_s: MinRate = None,
    file: CheckFile = None,
    json: Json = False,
    junit: Junit = None,
) -> None:
    """CI capacity check: exit 0 when every deployment fits (and meets its speed floor), 1 when one does not."""
    from llmcalc import api, render
    from llmcalc.errors import EXIT_CHECK_FAILED

    with _reported():
        report = api.check(model, gpu, gpus=gpus, mode=mode, dtype=dtype, autocast=autocast, batch=batch, seq=seq,
                           gen=gen, beams=beams, kv_dtype=kv_dtype, grad_checkpointing=grad_checkpointing,
                           optimizer=optimizer, attention=attention, headroom=headroom,
                           min_tokens_per_s=min_tokens_per_s, file=file)
    if junit:
        try:
            with open(junit, "w", encoding="utf-8") as f:
                f.write(report.junit_xml())
        except OSError as exc:
            err.print(f"error: cannot write {junit} ({exc.strerror})", soft_wrap=True)
            raise typer.Exit(code=2) from None
    if json:
        print(render.dumps(report.to_dict()))
    else:
        render.print_check(out, list(report.results))
    if not report.ok:
        raise typer.Exit(code=EXIT_CHECK_FAILED)


GpuList = Annotated[Optional[list[str]], typer.Option("--gpu", help="Device id to consider (repeat; default: every catalog GPU).")]
Concurrency = Annotated[Optional[int], typer.Option(help="Sequences decoded at once (default 1, or what a --target-tokens-per-s needs).")]
Target = Annotated[Optional[float], typer.Option("--target-tokens-per-s", help="Aggregate decode rate wanted.")]
Prices = Annotated[Optional[list[str]], typer.Option("--price", help="ID=USD per hour, e.g. h100-sxm-80gb=2.49 (repeat).")]
Utilization = Annotated[Optional[float], typer.Option("--gpu-memory-utilization", help="Share of device memory a paged serving engine takes (vLLM's default: 0.92 from 0.20).")]
BlockSize = Annotated[int, typer.Option("--block-size", help="KV-cache block size in tokens (vLLM's default 16).")]


@app.command()
def plan(
    model: Model,
    gpu: GpuList = None,
    dtype: Dtype = None,
    seq: Seq = 512,
    gen: Gen = 128,
    kv_dtype: KvDtype = None,
    concurrency: Concurrency = None,
    target_tokens_per_s: Target = None,
    price: Prices = None,
    gpu_memory_utilization: Utilization = None,
    block_size: BlockSize = 16,
    json: Json = False,
    revision: Revision = None,
    as_family: AsFamily = None,
) -> None:
    """Size the hardware: per device, fit, largest batch and context, speed, cost; best first."""
    from llmcalc import api, render
    from llmcalc.errors import InputError

    with _reported():
        prices: dict[str, float] = {}
        for item in price or []:
            gpu_id, _, usd = item.partition("=")
            try:
                prices[gpu_id] = float(usd)
            except ValueError:
                raise InputError(f"--price must be ID=USD per hour, got '{item}'") from None
        r = api.plan(model, gpu=gpu, dtype=dtype, seq=seq, gen=gen, kv_dtype=kv_dtype, concurrency=concurrency,
                     target_tokens_per_s=target_tokens_per_s, price=prices,
                     gpu_memory_utilization=gpu_memory_utilization, block_size=block_size, revision=revision,
                     as_family=as_family)
    if json:
        print(render.dumps(r.to_dict()))
    else:
        render.print_plan(out, list(r.options), r.model, r.workload, target_tokens_per_s)


@app.command()
def serve(
    model: Model,
    gpu: Annotated[Optional[str], typer.Option(help="GPU id from `llmcalc gpus` (its CUDA-reported total where the catalog has it).")] = None,
    engine: Annotated[str, typer.Option(help="vllm (V1) or sglang.")] = "vllm",
    engine_version: Annotated[Optional[str], typer.Option(help="The engine's version whose accounting to follow (vllm 0.33 (default), 0.8-0.32, V0 0.7, 0.6 (0.6.5-0.6.6), 0.6.4, 0.5 (0.5.3-0.6.3), 0.4 (0.4.0-0.5.2); sglang 0.5.20 (0.5.20-0.5.23, default), 0.5.10 (0.5.10-0.5.19), 0.5 (0.5.3-0.5.9), 0.4.8 (0.4.8-0.5.2), 0.4.7, 0.4.6, 0.4 (0.4.1-0.4.5)).")] = None,
    gpu_memory: Annotated[Optional[float], typer.Option(help="The GPU's memory in GiB as CUDA reports it (overrides the catalog's).")] = None,
    tp: Annotated[int, typer.Option(help="Tensor-parallel size.")] = 1,
    pp: Annotated[int, typer.Option(help="Pipeline-parallel size.")] = 1,
    gpu_memory_utilization: Annotated[Optional[float], typer.Option(help="vLLM: the share of the GPU's total the engine may use (0.92 from 0.20, 0.9 before).")] = None,
    mem_fraction_static: Annotated[Optional[float], typer.Option(help="SGLang: the share of free memory for weights and KV cache (default by GPU).")] = None,
    max_model_len: Annotated[Optional[int], typer.Option(help="Longest request in tokens (default: the model's context). SGLang: --context-length.")] = None,
    context_length: Annotated[Optional[int], typer.Option(help="SGLang's name for --max-model-len.")] = None,
    max_num_seqs: Annotated[Optional[int], typer.Option(help="vLLM: requests at once (default by GPU).")] = None,
    max_running_requests: Annotated[Optional[int], typer.Option(help="SGLang's cap on requests at once.")] = None,
    max_num_batched_tokens: Annotated[Optional[int], typer.Option(help="vLLM: tokens per scheduler step (default by GPU).")] = None,
    chunked_prefill_size: Annotated[Optional[int], typer.Option(help="SGLang's prefill chunk.")] = None,
    kv_cache_dtype: Annotated[str, typer.Option(help="auto (the model's dtype) or fp8.")] = "auto",
    concurrency: Annotated[Optional[int], typer.Option(help="Instead: the smallest TP, and at it the smallest memory fraction, that hold this many requests of --max-model-len at once.")] = None,
    dtype: Dtype = None,
    quantization: Annotated[Optional[str], typer.Option(help="The engine's --quantization: fp8 or bitsandbytes at run time; a checkpoint's own format (awq, gptq, ...) is read from its config.")] = None,
    dp: Annotated[int, typer.Option(help="Data-parallel replicas (each an engine of its own; the figures are per replica).")] = 1,
    enforce_eager: Annotated[bool, typer.Option("--enforce-eager", help="No CUDA graphs (outside the budget in the modelled versions).")] = False,
    enable_prefix_caching: Annotated[Optional[bool], typer.Option("--enable-prefix-caching/--no-enable-prefix-caching", help="vLLM's prefix caching (default: the engine's): nothing at start-up, but a Gated DeltaNet hybrid keeps one more state block per request (on by default from 0.28).")] = None,
    num_speculative_tokens: Annotated[int, typer.Option(help="vLLM: MTP speculative decoding with the checkpoint's own MTP layers (Qwen3.5/3.6): their KV cache and a longer GDN conv state.")] = 0,
    json: Json = False,
    revision: Revision = None,
    as_family: AsFamily = None,
) -> None:
    """What vLLM or SGLang allocates per GPU at start-up: weights, activations, KV cache tokens,
    concurrency, and whether it starts (docs/serve.md). Exit 1 when the engine would not start."""
    from llmcalc import api, render
    from llmcalc.errors import EXIT_CHECK_FAILED

    with _reported():
        r = api.serve(model, gpu=gpu, engine=engine, engine_version=engine_version, gpu_memory=gpu_memory, tp=tp, pp=pp,
                      gpu_memory_utilization=gpu_memory_utilization, mem_fraction_static=mem_fraction_static,
                      max_model_len=max_model_len, context_length=context_length, max_num_seqs=max_num_seqs,
                      max_running_requests=max_running_requests, max_num_batched_tokens=max_num_batched_tokens,
                      chunked_prefill_size=chunked_prefill_size, kv_cache_dtype=kv_cache_dtype,
                      concurrency=concurrency, dtype=dtype, quantization=quantization, dp=dp,
                      enforce_eager=enforce_eager, enable_prefix_caching=enable_prefix_caching, revision=revision,
                      as_family=as_family, num_speculative_tokens=num_speculative_tokens)
    if json:
        print(render.dumps(r.to_dict()))
    else:
        render.print_serve(out, r.serve, r.model, r.workload, r.gpu, list(r.warnings), r.sizing)
    if not r.starts:
        raise typer.Exit(code=EXIT_CHECK_FAILED)


def _stderr_file() -> Any:
    """Our stderr for the child's stdout (so --json keeps stdout clean), where it is a real file."""
    try:
        sys.stderr.fileno()
        return sys.stderr
    except (AttributeError, OSError, ValueError):
        return None


@app.command(context_settings={"allow_interspersed_args": False})
def watch(
    command: Annotated[list[str], typer.Argument(help="The command to run, after --.", show_default=False)],
    device: Annotated[str, typer.Option(help="cuda (NVML, per GPU) or cpu (the resident set).")] = "cuda",
    interval: Annotated[float, typer.Option(help="Seconds between samples.")] = 0.2,
    torch_hook: Annotated[bool, typer.Option("--torch-hook", help="Also record PyTorch's own peak allocated and reserved "
                                              "in every Python process of the command (a sitecustomize on its PYTHONPATH; "
                                              "the script is not changed).")] = False,
    model: Annotated[Optional[str], typer.Option(help="Compare with the estimate of this model and the workload options below.")] = None,
    mode: Mode = "infer",
    dtype: Dtype = None,
    autocast: Autocast = None,
    batch: Batch = 1,
    seq: Seq = 512,
    gen: Gen = 128,
    beams: Beams = 1,
    kv_dtype: KvDtype = None,
    grad_checkpointing: Ckpt = False,
    optimizer: Optim = "adamw",
    attention: Attention = "sdpa",
    allocator: Allocator = "default",
    gpus: Annotated[int, typer.Option(help="GPUs in all (the estimate is per GPU).")] = 1,
    tp: Annotated[int, typer.Option(help="Tensor-parallel size.")] = 1,
    zero: Annotated[int, typer.Option(help="DeepSpeed ZeRO stage 0-3 (train).")] = 0,
    fsdp: Annotated[Optional[str], typer.Option(help="PyTorch FSDP: full or grad-op (train).")] = None,
    lora_rank: Annotated[int, typer.Option(help="LoRA rank (QLoRA with --dtype nf4).")] = 0,
    lora_targets: LoraTargets = "q,v",
    json: Annotated[bool, typer.Option("--json", help="Print JSON at the end (the command's own stdout goes to stderr).")] = False,
) -> None:
    """Run a command and measure its GPU memory (per GPU, every process it starts); with --model,
    compare with the estimate (docs/watch.md). Exits with the command's own exit code."""
    from llmcalc import api, render
    from llmcalc import watch as watching

    with _reported():
        est = None
        if model:
            est = api.estimate(model, mode=mode, dtype=dtype, autocast=autocast, batch=batch, seq=seq, gen=gen,
                               beams=beams, kv_dtype=kv_dtype, grad_checkpointing=grad_checkpointing,
                               optimizer=optimizer, attention=attention, allocator=allocator, gpus=gpus, tp=tp,
                               zero=zero, fsdp=fsdp, lora_rank=lora_rank, lora_targets=lora_targets)
        if device not in ("cuda", "cpu"):
            from llmcalc.errors import InputError

            raise InputError(f"--device must be cuda or cpu, got '{device}'")
        sampler = watching.NvmlSampler() if device == "cuda" else watching.RssSampler()
        live = render.WatchDisplay(err) if err.is_terminal and not json else None
        try:
            result = watching.run(command, sampler, interval, torch_hook, live.update if live else None,
                                  stdout=_stderr_file() if json else None)
        finally:
            if live:
                live.stop()
    rows = watching.compare(result, est) if est is not None else []
    if json:
        doc = result.to_dict()
        if est is not None:
            doc["estimate"] = est.to_dict()
            doc["comparison"] = [{"what": r.label, "estimate_bytes": r.estimate_bytes,
                                  "measured_bytes": r.measured_bytes, "error_pct": r.error_pct} for r in rows]
        print(render.dumps(doc))
    else:
        render.print_watch(out, result, rows, est)
    raise typer.Exit(code=result.exit_code or 0)


ChartKind = Annotated[str, typer.Option("--what", help="memory-batch, memory-context or throughput.")]
Points = Annotated[Optional[str], typer.Option(help="x values, comma-separated (batch sizes or prompt lengths).")]
Out = Annotated[Optional[str], typer.Option("--out", help="Write a PNG here (needs matplotlib: pip install '.[charts]'); default: draw in the terminal.")]


@app.command()
def chart(
    model: Model,
    gpu: GpuRequired,
    what: ChartKind = "memory-batch",
    mode: Mode = "infer",
    dtype: Dtype = None,
    autocast: Autocast = None,
    batch: Batch = 1,
    seq: Seq = 512,
    gen: Gen = 128,
    kv_dtype: KvDtype = None,
    grad_checkpointing: Ckpt = False,
    optimizer: Optim = "adamw",
    points: Points = None,
    out_file: Out = None,
    revision: Revision = None,
    as_family: AsFamily = None,
) -> None:
    """Chart memory against batch or context (stacked, with the device's capacity) or throughput against batch."""
    from llmcalc import render
    from llmcalc.api import card_for, gpu_spec, make_workload
    from llmcalc.charts import KINDS, build, to_png
    from llmcalc.errors import InputError

    with _reported():
        if what not in KINDS:
            raise InputError(f"--what must be one of {', '.join(KINDS)}, got '{what}'")
        if what == "throughput" and mode != "infer":
            raise InputError("--what throughput charts inference (--mode infer)")
        try:
            xs = tuple(int(p) for p in points.split(",")) if points else None
        except ValueError:
            raise InputError(f"--points must be comma-separated integers, got '{points}'") from None
        if xs is not None and (not xs or min(xs) < 1):
            raise InputError(f"--points must be positive integers, got '{points}'")
        card = card_for(model, revision, as_family)
        spec = gpu_spec(gpu)
        w = make_workload(mode, dtype, autocast, batch, seq, gen, 1, kv_dtype, grad_checkpointing, optimizer, "sdpa",
                          card=card)
        data = build(what, card, w, spec, xs)
        if out_file:
            to_png(data, out_file)
    if out_file:
        out.print(f"wrote {out_file}")
    else:
        render.print_chart(out, data)


@app.command()
def models(json: Json = False) -> None:
    """List the model cards with their exact parameter counts."""
    from llmcalc import api, contract, render

    with _reported():
        cards = api.models()
    if json:
        print(render.dumps(contract.models_doc(cards)))
    else:
        render.print_models(out, cards)


@app.command()
def gpus(json: Json = False) -> None:
    """List the GPU and CPU catalog: memory, bandwidth and dense peak rates."""
    from llmcalc import api, contract, render

    with _reported():
        specs = api.gpus()
    if json:
        print(render.dumps(contract.gpus_doc(specs)))
    else:
        render.print_gpus(out, specs)


def _only(name: str) -> typer.Typer | None:
    """An app holding just the command named on the command line. typer builds every command's
    options before it dispatches (~1 ms per command here), so `llmcalc estimate ...` starts
    faster without the others; help and unknown commands still go to the full app."""
    for info in app.registered_commands:
        if (info.name or info.callback.__name__.replace("_", "-")) == name:  # type: ignore[union-attr]
            single = typer.Typer(help=app.info.help, add_completion=False, pretty_exceptions_enable=False)
            single.registered_commands = [info]
            single.callback()(_group)  # keeps `llmcalc COMMAND ...` a group with one command
            return single
    return None


def _group() -> None:
    """How much GPU memory an LLM workload takes, how fast it runs, and which hardware it fits."""


def main() -> None:
    single = _only(sys.argv[1]) if len(sys.argv) > 1 else None
    (single or app)(prog_name="llmcalc")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
