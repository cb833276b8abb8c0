"""Run the real model and measure it: the only module that imports torch and transformers.

The workload it runs is the reference the estimate models (docs/memory-model.md):
- inference: prefill over the prompt with a DynamicCache and logits for the last position only,
  then greedy decode steps (argmax of the fp32 logits), like `generate(do_sample=False)`;
- training: `loss = model(ids, labels=ids, use_cache=False).loss; loss.backward();
  opt.step(); opt.zero_grad(set_to_none=True)` with fused AdamW, over 3 steps so that the
  lazily created optimizer state is included.
"""

from __future__ import annotations

import gc
import os
import platform
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

from llmcalc.cards import ModelCard
from llmcalc.errors import EnvironmentProblem, InputError
from llmcalc.hf import to_hf_config
from llmcalc.memory import Workload

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
TRAIN_STEPS = 3


@dataclass
class PhaseMeasure:
    name: str
    peak_allocated_bytes: int = 0
    peak_reserved_bytes: int = 0
    process_bytes: int = 0  # NVML (GPU) or RSS (CPU) at the end of the phase
    seconds: float = 0.0


@dataclass
class Measurement:
    device: str
    env: dict[str, str]
    cuda_context_bytes: int = 0  # NVML process memory minus PyTorch's reserve, after init + cuBLAS
    cuda_context_init_bytes: int = 0  # the same, right after CUDA initialises
    workspace_bytes: int = 0  # allocated by the first matmul (cuBLAS workspace)
    weights_bytes: int = 0  # allocated by building the model
    phases: list[PhaseMeasure] = field(default_factory=list)
    peak_allocated_bytes: int = 0
    peak_reserved_bytes: int = 0
    device_total_bytes: int = 0
    peak_phase: str = ""
    oom_phase: str | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _import_torch() -> Any:
    try:
        import torch
        import transformers  # noqa: F401
    except ImportError as exc:
        raise EnvironmentProblem(f"the profiler needs torch and transformers ({exc.name} is missing): "
                                 "install llmcalc[profile]") from None
    return torch


class _Probe:
    """Memory readings for one device: PyTorch's allocator stats and the process total."""

    def __init__(self, torch: Any, device: str) -> None:
        self.torch, self.device = torch, device
        self.nvml_handle = None
        if device == "cuda":
            try:
                import pynvml

                pynvml.nvmlInit()
                index = torch.cuda.current_device()
                self.nvml_handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                self.pynvml = pynvml
            except Exception as exc:  # NVML missing or broken: device totals unavailable
                raise EnvironmentProblem(f"NVML is not usable ({exc}): install nvidia-ml-py") from None

    def process_bytes(self) -> int:
        if self.device == "cuda":
            pid = os.getpid()
            procs = self.pynvml.nvmlDeviceGetComputeRunningProcesses(self.nvml_handle)
            used = [p.usedGpuMemory for p in procs if p.pid == pid and p.usedGpuMemory]
            if used:
                return int(used[0])
            # In a container NVML may not see our pid: fall back to the device's used memory.
            return int(self.pynvml.nvmlDeviceGetMemoryInfo(self.nvml_handle).used)
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def sync(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def reset(self) -> None:
        if self.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()

    def peaks(self) -> tuple[int, int]:
        if self.device == "cuda":
            return self.torch.cuda.max_memory_allocated(), self.torch.cuda.max_memory_reserved()
        return 0, 0


def environment(torch: Any, device: str) -> dict[str, str]:
    import transformers

    env = {"torch": torch.__version__, "transformers": transformers.__version__, "python": platform.python_version()}
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = str(torch.version.cuda)
        try:
            import pynvml

            pynvml.nvmlInit()
            env["driver"] = str(pynvml.nvmlSystemGetDriverVersion())
        except Exception:
            env["driver"] = "unknown"
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def build_model(torch: Any, card: ModelCard, w: Workload, device: str, weights: str | None) -> Any:
    import transformers

    transformers.logging.set_verbosity_error()
    kwargs = to_hf_config(card)
    model_type = kwargs.pop("model_type")
    # Dropout off (GPT-2 defaults to 0.1): the reference workload is deterministic.
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "hidden_dropout", "attention_dropout"):
        kwargs[key] = 0.0
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    config._attn_implementation = w.attention
    dtype = getattr(torch, TORCH_DTYPES.get(w.dtype, "float32"))
    if w.dtype not in TORCH_DTYPES:
        raise InputError(f"the profiler runs fp32, fp16 and bf16 weights; {w.dtype} needs bitsandbytes "
                         "and is not wired in yet")
    if weights:
        model = transformers.AutoModelForCausalLM.from_pretrained(weights, dtype=dtype, device_map=device,
                                                                  attn_implementation=w.attention)
    else:
        with torch.device(device):
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


def run_profile(
    card: ModelCard,
    w: Workload,
    device: str = "cuda",
    weights: str | None = None,
    snapshot: str | None = None,
    progress: Callable[[str], None] = lambda phase: None,
) -> Measurement:
    torch = _import_torch()
    if device == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem("no CUDA GPU is visible (torch.cuda.is_available() is False); try --device cpu")
    if device not in ("cuda", "cpu"):
        raise InputError(f"--device must be cuda or cpu, got '{device}'")
    m = Measurement(device=device, env=environment(torch, device))
    probe = _Probe(torch, device)
    # CUDA context: process memory after initialisation, then after the first cuBLAS call, minus
    # what PyTorch's own allocator holds.
    if device == "cuda":
        torch.cuda.init()
        x = torch.ones((1, 1), device="cuda")
        probe.sync()
        m.cuda_context_init_bytes = probe.process_bytes() - torch.cuda.memory_reserved()
        before = torch.cuda.memory_allocated()
        y = torch.ones((64, 64), device="cuda", dtype=torch.bfloat16)
        (y @ y).sum().item()
        probe.sync()
        m.workspace_bytes = torch.cuda.memory_allocated() - before - y.element_size() * y.numel()
        m.cuda_context_bytes = probe.process_bytes() - torch.cuda.memory_reserved()
        del x, y
    if snapshot and device == "cuda":
        torch.cuda.memory._record_memory_history(max_entries=200_000)
    model = None
    current = "load"

    def phase(name: str, fn: Callable[[], Any]) -> Any:
        nonlocal current
        current = name
        progress(name)
        probe.reset()
        t0 = time.perf_counter()
        value = fn()
        probe.sync()
        seconds = time.perf_counter() - t0
        alloc, reserved = probe.peaks()
        existing = next((p for p in m.phases if p.name == name), None)
        if existing is None:
            existing = PhaseMeasure(name)
            m.phases.append(existing)
        existing.peak_allocated_bytes = max(existing.peak_allocated_bytes, alloc)
        existing.peak_reserved_bytes = max(existing.peak_reserved_bytes, reserved)
        existing.process_bytes = max(existing.process_bytes, probe.process_bytes())
        existing.seconds += seconds
        return value

    baseline = torch.cuda.memory_allocated() if device == "cuda" else 0
    try:
        model = phase("load", lambda: build_model(torch, card, w, device, weights))
        if device == "cuda":
            m.weights_bytes = torch.cuda.memory_allocated() - baseline
        gen = torch.Generator(device="cpu").manual_seed(0)
        tokens = w.batch * w.beams
        ids = torch.randint(0, card.vocab_size, (tokens, w.seq), generator=gen).to(device)
        if w.mode == "infer":
            _run_inference(torch, model, card, w, ids, phase, m, probe)
        else:
            _run_training(torch, model, w, ids, phase, m, device)
    except torch.OutOfMemoryError:
        m.oom_phase = current
        alloc, reserved = probe.peaks()
        m.phases.append(PhaseMeasure(current + " (out of memory)", alloc, reserved, probe.process_bytes()))
    finally:
        if snapshot and device == "cuda":
            torch.cuda.memory._dump_snapshot(snapshot)
            torch.cuda.memory._record_memory_history(enabled=None)
        model = None
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    if m.phases:
        top = max(m.phases, key=lambda p: p.peak_allocated_bytes)
        m.peak_allocated_bytes, m.peak_phase = top.peak_allocated_bytes, top.name
        m.peak_reserved_bytes = max(p.peak_reserved_bytes for p in m.phases)
        m.device_total_bytes = max(p.process_bytes for p in m.phases)
    return m


def _run_inference(torch: Any, model: Any, card: ModelCard, w: Workload, ids: Any, phase: Any, m: Measurement, probe: _Probe) -> None:
    from transformers import DynamicCache

    model.eval()
    cache = DynamicCache(config=model.config)
    state: dict[str, Any] = {}

    @torch.inference_mode()
    def prefill() -> None:
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        state["next"] = out.logits[:, -1, :].float().argmax(-1, keepdim=True)

    phase("prefill", prefill)
    m.timings["prefill_s"] = next(p.seconds for p in m.phases if p.name == "prefill")
    steps = max(w.gen - 1, 0)
    step_times = []

    @torch.inference_mode()
    def decode_step() -> None:
        out = model(input_ids=state["next"], past_key_values=cache, use_cache=True)
        state["next"] = out.logits[:, -1, :].float().argmax(-1, keepdim=True)

    for _ in range(steps):
        t0 = time.perf_counter()
        phase("decode", decode_step)
        step_times.append(time.perf_counter() - t0)
    if step_times:
        step_times.sort()
        m.timings["decode_step_median_s"] = step_times[len(step_times) // 2]
        m.timings["decode_tokens_per_s"] = w.batch * w.beams / m.timings["decode_step_median_s"]


def _run_training(torch: Any, model: Any, w: Workload, ids: Any, phase: Any, m: Measurement, device: str) -> None:
    model.train()
    if w.grad_checkpointing:
        model.gradient_checkpointing_enable()
    params = [p for p in model.parameters() if p.requires_grad]
    if w.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
    elif w.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=1e-5, momentum=0.9)
    else:
        raise InputError(f"the profiler runs adamw and sgd; {w.optimizer} needs bitsandbytes and is not wired in yet")
    autocast = (torch.autocast(device_type=device, dtype=getattr(torch, TORCH_DTYPES[w.autocast]))
                if w.autocast else nullcontext())
    state: dict[str, Any] = {}

    def forward() -> None:
        with autocast:
            state["loss"] = model(input_ids=ids, labels=ids, use_cache=False).loss

    def backward() -> None:
        state.pop("loss").backward()

    def step() -> None:
        opt.step()
        opt.zero_grad(set_to_none=True)

    t_total = 0.0
    for _ in range(TRAIN_STEPS):
        t0 = time.perf_counter()
        phase("forward", forward)
        phase("backward", backward)
        phase("optimizer_step", step)
        t_total += time.perf_counter() - t0
    m.timings["train_step_s"] = t_total / TRAIN_STEPS
    m.timings["train_tokens_per_s"] = w.batch * w.seq / m.timings["train_step_s"]
