"""Measure what the throughput model needs on this machine: achieved bandwidth, matrix rate
per dtype, the smallest kernel's GPU time, host time per launched kernel, the CUDA context.

Each figure is a median over repeats, timed with CUDA events (GPU) or perf_counter (CPU):
- bandwidth: a device-to-device copy of a 1 GiB tensor moves 2 GiB (read + write);
- matrix rate: 2 x n^3 FLOPs of an n x n product (n = 8192 on a GPU, 1024 on a CPU), fp32 with
  TF32 off (PyTorch's default), tf32, fp16, bf16, fp8 (torch._scaled_mm, e4m3) and int8
  (torch._int_mm) where the device has them;
- kernel floor: the median duration, from a torch.profiler trace, of a 1-element add; and the
  mean GPU time of the small (non-GEMM) kernels of a 4096-wide Llama's decode step, which the
  throughput model charges per small kernel;
- launch: host seconds per kernel while a tiny Llama layer (transformers' modules) decodes, the
  same Python path a real model takes, divided by the kernels it launches.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from llmcalc.errors import EnvironmentProblem, InputError

GiB = 2**30


def _median_seconds(torch: Any, fn: Any, device: str, repeats: int) -> float:
    fn()  # warm-up: kernels selected, workspace allocated
    times = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1000)
        else:
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bandwidth(torch: Any, device: str) -> float:
    n = GiB if device == "cuda" else GiB // 4
    src = torch.empty(n, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    seconds = _median_seconds(torch, lambda: dst.copy_(src), device, 10)
    return 2 * n / seconds


def matmul_rates(torch: Any, device: str) -> dict[str, float]:
    n = 8192 if device == "cuda" else 1024
    flops = 2.0 * n**3
    rates: dict[str, float] = {}
    dtypes = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    for name, dtype in dtypes.items():
        if device == "cpu" and name in ("tf32", "fp16"):
            continue
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        previous = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = name == "tf32"
        try:
            rates[name] = flops / _median_seconds(torch, lambda a=a, b=b: a @ b, device, 10)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = previous
        del a, b
    if device == "cuda":
        try:
            a8 = torch.randn(n, n, device=device).to(torch.float8_e4m3fn)
            b8 = torch.randn(n, n, device=device).to(torch.float8_e4m3fn).t()  # column-major
            one = torch.ones((), device=device)
            rates["fp8"] = flops / _median_seconds(
                torch, lambda: torch._scaled_mm(a8, b8, scale_a=one, scale_b=one, out_dtype=torch.bfloat16), device, 10)
            del a8, b8
        except (RuntimeError, AttributeError):
            pass  # no fp8 matrix units (pre-Hopper) or no _scaled_mm
        try:
            ai = torch.randint(-128, 127, (n, n), device=device, dtype=torch.int8)
            bi = torch.randint(-128, 127, (n, n), device=device, dtype=torch.int8)
            rates["int8"] = flops / _median_seconds(torch, lambda: torch._int_mm(ai, bi), device, 10)
            del ai, bi
        except (RuntimeError, AttributeError):
            pass
    return rates


def kernel_floor(torch: Any, device: str) -> float:
    """Median GPU duration of a 1-element add (a CPU has no kernel floor beyond dispatch)."""
    if device != "cuda":
        return 0.0
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    x = torch.zeros(1, device=device)
    x.add_(1)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(500):
            x.add_(1)
        torch.cuda.synchronize()
    durations = [e.time_range.elapsed_us() for e in prof.events() if e.device_type == DeviceType.CUDA]
    if not durations:
        raise EnvironmentProblem("torch.profiler recorded no GPU kernels (CUPTI unavailable?)")
    return statistics.median(durations) * 1e-6


def _tiny_llama(torch: Any, device: str, layers: int) -> tuple[Any, Any]:
    """A Llama with hidden size 64 and `layers` layers, and functions for a 64-token prefill
    and for one decode step on its cache: transformers' real modules, tiny kernels."""
    import transformers

    transformers.logging.set_verbosity_error()
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=layers,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=256)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16 if device == "cuda" else torch.float32).eval()
    ids = torch.zeros((1, 64), dtype=torch.long, device=device)
    cache = transformers.DynamicCache(config=config)
    with torch.inference_mode():
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    nxt = ids[:, -1:]

    @torch.inference_mode()
    def prefill() -> None:
        out = model(input_ids=ids, past_key_values=transformers.DynamicCache(config=config), use_cache=True,
                    logits_to_keep=1)
        out.logits[:, -1, :].float().argmax(-1, keepdim=True)

    @torch.inference_mode()
    def step() -> None:
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
        out.logits[:, -1, :].float().argmax(-1, keepdim=True)

    return prefill, step


def _host_seconds(torch: Any, fn: Any, device: str, repeats: int = 60) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


DEPTHS = (2, 8)


def host_times(torch: Any, device: str) -> dict[str, dict[int, float]]:
    """Wall seconds of a prefill and of a decode step of tiny Llamas of two depths: the GPU
    finishes each tiny kernel long before the next is launched, so the host sets the pace.
    With the kernel counts (count_kernels) this gives the host cost per kernel (the slope over
    depth) and per forward (the intercept)."""
    out: dict[str, dict[int, float]] = {"prefill": {}, "decode": {}}
    for layers in DEPTHS:
        prefill, step = _tiny_llama(torch, device, layers)
        out["prefill"][layers] = _host_seconds(torch, prefill, device)
        out["decode"][layers] = _host_seconds(torch, step, device)
    return out


def _trace(torch: Any, fn: Any) -> list[float]:
    """Durations (s) of the GPU kernels fn launches (torch.profiler)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return [e.time_range.elapsed_us() * 1e-6 for e in prof.events() if e.device_type == DeviceType.CUDA]


def kernel_traces(torch: Any) -> dict[str, Any]:
    """Kernels per prefill and per decode step of the tiny Llamas, and their median duration:
    the typical small kernel of the reference stack (norm pieces, RoPE, adds, cache cat)."""
    result: dict[str, Any] = {"prefill_kernels": {}, "decode_kernels": {}}
    durations: list[float] = []
    for layers in DEPTHS:
        prefill, step = _tiny_llama(torch, "cuda", layers)
        result["prefill_kernels"][layers] = len(_trace(torch, prefill))
        decode = _trace(torch, step)
        result["decode_kernels"][layers] = len(decode)
        durations += decode
    result["small_kernel_s"] = statistics.median(durations)
    return result


GEMM_KERNELS = ("gemm", "nvjet", "cutlass", "flash", "fmha", "gemv", "cudnn", "memcpy")


def small_kernel_mean(torch: Any) -> float:
    """Mean GPU time of the kernels other than GEMMs and attention in one batch-1 decode step of
    a two-layer Llama at a real width (hidden 4096): the per-kernel cost the throughput model
    charges for a step's small kernels, which sum, so their mean counts, not their median (norm
    reductions, cache copies and casts over 4096-wide rows take longer than a 1-element add)."""
    import transformers
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    transformers.logging.set_verbosity_error()
    config = transformers.LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=2,
                                      num_attention_heads=32, num_key_value_heads=32, vocab_size=32000)
    with torch.device("cuda"):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16).eval()
    ids = torch.zeros((1, 256), dtype=torch.long, device="cuda")
    cache = transformers.DynamicCache(config=config)
    with torch.inference_mode():
        model(input_ids=ids, past_key_values=cache, use_cache=True)
        for _ in range(3):
            model(input_ids=ids[:, -1:], past_key_values=cache, use_cache=True).logits.argmax(-1)
        torch.cuda.synchronize()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            model(input_ids=ids[:, -1:], past_key_values=cache, use_cache=True).logits.argmax(-1)
            torch.cuda.synchronize()
    small = [e.time_range.elapsed_us() for e in prof.events()
             if e.device_type == DeviceType.CUDA and not any(k in e.name.lower() for k in GEMM_KERNELS)]
    del model, cache
    torch.cuda.empty_cache()
    return statistics.mean(small) * 1e-6


def gemv_bandwidth(torch: Any) -> float:
    """Bytes/s a bf16 matrix-vector product streams (8192 x 8192 weight, one row): the access
    pattern of every projection in a batch-1 decode step."""
    w = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    x = torch.randn(1, 8192, device="cuda", dtype=torch.bfloat16)
    seconds = _median_seconds(torch, lambda: x @ w.t(), "cuda", 20)
    return w.numel() * 2 / seconds


LINEAR_SHAPES = ((4096, 4096), (11008, 4096))  # (out, in): a Llama-7B projection and up/gate
LINEAR_ROWS = (1, 16, 4096)


def _linear_modules(torch: Any, bnb: Any, out_f: int, in_f: int) -> dict[str, Any]:
    lin = torch.nn.Linear(in_f, out_f, bias=False, dtype=torch.float16)
    mods: dict[str, Any] = {"bf16": torch.nn.Linear(in_f, out_f, bias=False, dtype=torch.bfloat16).to("cuda")}
    if bnb is not None:
        q8 = bnb.nn.Linear8bitLt(in_f, out_f, bias=False, has_fp16_weights=False, threshold=6.0)
        q8.weight = bnb.nn.Int8Params(lin.weight.data.clone(), requires_grad=False, has_fp16_weights=False)
        q4 = bnb.nn.Linear4bit(in_f, out_f, bias=False, compute_dtype=torch.bfloat16, compress_statistics=False,
                               quant_type="nf4")
        q4.weight = bnb.nn.Params4bit(lin.weight.data.clone(), requires_grad=False, quant_type="nf4", blocksize=64,
                                      compress_statistics=False, module=q4)
        mods["int8"], mods["nf4"] = q8.to("cuda"), q4.to("cuda")
    return mods


def linear_layers(torch: Any) -> dict[str, Any]:
    """One linear layer of each kind (bf16 nn.Linear, bitsandbytes Linear8bitLt and Linear4bit)
    at two weight sizes and three row counts: GPU kernel time and kernels per call (traced),
    and wall time per call when called back to back (host and GPU overlapped)."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        bnb = None
    result: dict[str, Any] = {}
    for out_f, in_f in LINEAR_SHAPES:
        mods = _linear_modules(torch, bnb, out_f, in_f)
        for kind, mod in mods.items():
            dtype = torch.float16 if kind == "int8" else torch.bfloat16
            for rows in LINEAR_ROWS:
                x = torch.randn(rows, in_f, device="cuda", dtype=dtype)
                with torch.inference_mode():
                    call = lambda mod=mod, x=x: mod(x)  # noqa: E731
                    wall = _median_seconds(torch, lambda call=call: [call() for _ in range(20)], "cuda", 5) / 20
                    durations = _trace(torch, call)
                result[f"{kind} {out_f}x{in_f} rows={rows}"] = {
                    "kernel_s": sum(durations), "kernels": len(durations), "wall_s": wall}
        del mods
    return result


def prefill_gemms(torch: Any) -> dict[str, float]:
    """bf16 GEMM rate at a prefill's shapes (4096 tokens x a 7B model's projections)."""
    out: dict[str, float] = {}
    for m, n, k in ((4096, 4096, 4096), (4096, 11008, 4096), (4096, 4096, 11008)):
        a = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
        b = torch.randn(n, k, device="cuda", dtype=torch.bfloat16)
        out[f"{m}x{n}x{k}"] = 2.0 * m * n * k / _median_seconds(torch, lambda a=a, b=b: a @ b.t(), "cuda", 20)
    return out


def bitsandbytes_figures(torch: Any) -> dict[str, Any]:
    """bitsandbytes' int8 GEMM rate (the cuBLASLt kernel LLM.int8 runs). {} without it."""
    try:
        import bitsandbytes as bnb
    except ImportError:
        return {}
    n = 8192
    a = torch.randint(-128, 127, (n, n), device="cuda", dtype=torch.int8)
    b = torch.randint(-128, 127, (n, n), device="cuda", dtype=torch.int8)
    return {"version": bnb.__version__, "int8_flops": 2.0 * n**3 / _median_seconds(
        torch, lambda: torch.ops.bitsandbytes.int8_linear_matmul(a, b), "cuda", 10)}


def cpu_op_counts(torch: Any) -> tuple[dict[int, int], dict[int, int]]:
    """On a CPU, the aten ops a prefill and a decode step dispatch (top-level profiler events)."""
    from torch.profiler import ProfilerActivity, profile

    counts: tuple[dict[int, int], dict[int, int]] = ({}, {})
    for layers in DEPTHS:
        for fn, into in zip(_tiny_llama(torch, "cpu", layers), counts):
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                fn()
            into[layers] = sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None)
    return counts


def host_costs(m: dict[str, Any]) -> dict[str, float]:
    """Host seconds per kernel (the slope of prefill time over depth) and per forward (the
    intercept), from the tiny Llamas' prefill timings and kernel counts. Decode timings are
    stored but not used: on the lent H100 a tiny decode step took 52 ms at 2 layers and 7 ms at
    8 (medians of 60), an erratic host stall that the prefill timings do not show."""
    lo, hi = DEPTHS
    t, k = m["host_seconds"]["prefill"], m["prefill_kernels"]
    launch = max((t[hi] - t[lo]) / max(k[hi] - k[lo], 1), 0.0)
    return {"launch_s": launch, "forward_s": max(t[lo] - launch * k[lo], 0.0)}


def cuda_context(torch: Any) -> int:
    import os

    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
    y = torch.ones((64, 64), device="cuda", dtype=torch.bfloat16)
    (y @ y).sum().item()
    torch.cuda.synchronize()
    procs = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    used = [p.usedGpuMemory for p in procs if p.pid == os.getpid() and p.usedGpuMemory]
    total = used[0] if used else pynvml.nvmlDeviceGetMemoryInfo(handle).used
    return int(total - torch.cuda.memory_reserved())


def measure(device: str = "cuda") -> dict[str, Any]:
    """Everything `llmcalc calibrate` stores, with the environment it was measured in."""
    try:
        import torch
    except ImportError:
        raise EnvironmentProblem("calibrate needs torch: install llmcalc[profile]") from None
    if device not in ("cuda", "cpu"):
        raise InputError(f"--device must be cuda or cpu, got '{device}'")
    if device == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem("no CUDA GPU is visible (torch.cuda.is_available() is False); try --device cpu")
    from llmcalc.profile.runner import environment

    env = environment(torch, device)
    result: dict[str, Any] = {"device": device, "env": env}
    if device == "cuda":
        result["cuda_context_bytes"] = cuda_context(torch)  # first: before anything is cached
        result["memory_bytes"] = torch.cuda.get_device_properties(0).total_memory
    # Host timings run before anything is traced: once torch.profiler has attached CUPTI,
    # every later launch in the process is slower.
    result["host_seconds"] = host_times(torch, device)
    result["bytes_per_s"] = bandwidth(torch, device)
    result["matmul_flops"] = matmul_rates(torch, device)
    if device == "cuda":
        result["gemv_bytes_per_s"] = gemv_bandwidth(torch)
        result["kernel_floor_s"] = kernel_floor(torch, device)
        result.update(kernel_traces(torch))
        result["small_kernel_mean_s"] = small_kernel_mean(torch)
        for key, fn in (("bitsandbytes", bitsandbytes_figures), ("linear_layers", linear_layers),
                        ("prefill_gemm_flops", prefill_gemms)):
            try:
                result[key] = fn(torch)
            except Exception as exc:  # noqa: BLE001 - optional figures; the rest still stands
                result[key] = {"error": repr(exc)}
    else:
        result["gemv_bytes_per_s"] = result["bytes_per_s"]
        result["kernel_floor_s"] = 0.0
        result["small_kernel_s"] = 0.0
        result["prefill_kernels"], result["decode_kernels"] = cpu_op_counts(torch)
    result.update(host_costs(result))
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return result
