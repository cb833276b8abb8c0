"""Measure what the throughput model needs on this machine: achieved bandwidth, matrix rate
per dtype, the smallest kernel's GPU time, host time per launched kernel, the CUDA context.

Each figure is a median over repeats, timed with CUDA events (GPU) or perf_counter (CPU):
- bandwidth: a device-to-device copy of a 1 GiB tensor moves 2 GiB (read + write);
- matrix rate: 2 x n^3 FLOPs of an n x n product (n = 8192 on a GPU, 1024 on a CPU), fp32 with
  TF32 off (PyTorch's default), tf32, fp16, bf16, fp8 (torch._scaled_mm, e4m3) and int8
  (torch._int_mm) where the device has them;
- kernel floor: the median duration, from a torch.profiler trace, of a 1-element add;
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
            rates[name] = flops / _median_seconds(torch, lambda: a @ b, device, 10)
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


def _tiny_llama(torch: Any, device: str) -> tuple[Any, Any]:
    """A 4-layer Llama (hidden 64) prefilled with 8 tokens, and a function for one decode step."""
    import transformers

    transformers.logging.set_verbosity_error()
    config = transformers.LlamaConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                                      num_attention_heads=4, num_key_value_heads=2, vocab_size=256)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(config).to(torch.bfloat16 if device == "cuda" else torch.float32).eval()
    ids = torch.zeros((1, 8), dtype=torch.long, device=device)
    cache = transformers.DynamicCache(config=config)
    with torch.inference_mode():
        model(input_ids=ids, past_key_values=cache, use_cache=True)
    nxt = ids[:, -1:]

    @torch.inference_mode()
    def step() -> None:
        out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
        out.logits[:, -1, :].float().argmax(-1, keepdim=True)

    return model, step


def launch_overhead(torch: Any, device: str) -> tuple[float, int]:
    """Host seconds per decode step of a tiny transformers Llama (the GPU finishes each tiny
    kernel long before the next is launched, so the host sets the pace), and on a CPU the aten
    ops per step. Divided by the kernels per step (count_kernels) it is the launch cost."""
    _, step = _tiny_llama(torch, device)
    for _ in range(5):
        step()
    times = []
    for _ in range(100):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    ops = 0
    if device == "cpu":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        ops = sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None) or 1
    return statistics.median(times), ops


def count_kernels(torch: Any) -> int:
    """GPU kernels one decode step of the tiny Llama launches (torch.profiler trace)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    _, step = _tiny_llama(torch, "cuda")
    step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA)


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
    # The launch timing runs before anything is traced: once torch.profiler has attached CUPTI,
    # every later launch in the process is slower.
    launch_step_s, kernels = launch_overhead(torch, device)
    result["bytes_per_s"] = bandwidth(torch, device)
    result["matmul_flops"] = matmul_rates(torch, device)
    result["kernel_floor_s"] = kernel_floor(torch, device)
    if device == "cuda":
        kernels = count_kernels(torch)
    result["launch_s"] = launch_step_s / max(kernels, 1)
    result["launch_kernels_per_step"] = kernels
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return result
