"""Run the real model and measure it: the only module that imports torch and transformers.

The workload it runs is the reference the estimate models (docs/memory-model.md):
- inference: prefill over the prompt with a DynamicCache and logits for the last position only,
  then greedy decode steps (argmax of the fp32 logits), like `generate(do_sample=False)`;
- training: `loss = model(ids, labels=ids, use_cache=False).loss; loss.backward();
  opt.step(); opt.zero_grad(set_to_none=True)` with fused AdamW, over 3 steps so that the
  lazily created optimizer state is included.
"""

from __future__ import annotations

import contextlib
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
from llmcalc.workload import reference_attention

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
QUANTIZED = ("int8", "nf4")  # through bitsandbytes
TRAIN_STEPS = 3


@dataclass
class PhaseMeasure:
    name: str
    peak_allocated_bytes: int = 0
    peak_reserved_bytes: int = 0
    process_bytes: int = 0  # NVML process memory at the end of the phase (GPU), peak RSS during it (CPU)
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
    trainable_params: int = 0
    # LLM.int8 in the prefill: the quantized linears, and those whose every input column held an
    # outlier (bitsandbytes' state.idx after the call), which it multiplies in 16 bits
    int8_outliers: dict[str, int] = field(default_factory=dict)

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

    def watch(self) -> _RssWatch | None:
        """On the CPU, the process's peak RSS during a phase comes from a sampling thread (the
        kernel's own high-water mark, ru_maxrss, cannot be reset between phases). On CUDA the
        NVML reading at the end of a phase is its peak: the caching allocator keeps what it
        reserved."""
        return _RssWatch(self.process_bytes) if self.device == "cpu" else None

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


class _RssWatch:
    """Samples the process RSS every millisecond on a thread; `peak` is the largest reading."""

    def __init__(self, read: Callable[[], int]) -> None:
        import threading

        self.read, self.peak = read, read()
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop_event.wait(0.001):
            self.peak = max(self.peak, self.read())

    def stop(self) -> int:
        self.stop_event.set()
        self.thread.join()
        self.peak = max(self.peak, self.read())
        return self.peak


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


def hf_config(card: ModelCard, attention: str) -> Any:
    """The transformers config of a card, dropout off (GPT-2 defaults to 0.1): the reference
    workload is deterministic."""
    import transformers

    transformers.logging.set_verbosity_error()
    kwargs = to_hf_config(card)
    model_type = kwargs.pop("model_type")
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop", "hidden_dropout", "attention_dropout"):
        kwargs[key] = 0.0
    config = transformers.AutoConfig.for_model(model_type, **kwargs)
    config._attn_implementation = attention
    return config


def build_model(torch: Any, card: ModelCard, w: Workload, device: str, weights: str | None,
                quantize_on_device: bool = False) -> Any:
    import transformers

    config = hf_config(card, w.attention)
    if w.dtype in QUANTIZED:
        return _build_quantized(torch, transformers, config, card, w, device, weights, quantize_on_device)
    if w.dtype not in TORCH_DTYPES:
        raise InputError(f"the profiler runs weights in {', '.join([*TORCH_DTYPES, *QUANTIZED])}; "
                         f"{w.dtype} has no reference implementation wired in")
    dtype = getattr(torch, TORCH_DTYPES[w.dtype])
    if weights:
        model = transformers.AutoModelForCausalLM.from_pretrained(weights, dtype=dtype, device_map=device,
                                                                  attn_implementation=w.attention)
    else:
        with torch.device(device):
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    return model


def _import_bnb() -> Any:
    try:
        import bitsandbytes
    except ImportError:
        raise EnvironmentProblem("int8, nf4 and adamw-8bit run through bitsandbytes, which is not installed: "
                                 "pip install bitsandbytes") from None
    return bitsandbytes


def _build_quantized(torch: Any, transformers: Any, config: Any, card: ModelCard, w: Workload, device: str,
                     weights: str | None, on_device: bool = False) -> Any:
    """The model as transformers' bitsandbytes loader leaves it: every decoder nn.Linear replaced
    by Linear8bitLt (LLM.int8, outlier threshold 6.0) or Linear4bit (NF4, blocks of 64, no double
    quantization), lm_head and embeddings in the compute dtype. The GPU holds the quantized
    weights plus one 16-bit matrix at a time, as a checkpoint load does: with `weights` each
    matrix comes from the CPU copy; random weights are drawn on the GPU one matrix at a time into
    a model built on the CPU without initialisation (transformers' CPU init of a 1B model took
    45-100 s). `on_device` builds the whole 16-bit model on the GPU first (for timing runs; the
    load phase's memory is then not the reference's)."""
    if device != "cuda":
        raise InputError(f"{w.dtype} weights run on cuda only (bitsandbytes' kernels)")
    if card.is_moe:
        raise InputError("quantized MoE experts are not wired into the profiler (transformers fuses them)")
    bnb = _import_bnb()
    dtype = getattr(torch, TORCH_DTYPES[w.compute_dtype])
    no_init = None
    if weights:
        model = transformers.AutoModelForCausalLM.from_pretrained(weights, dtype=dtype, device_map="cpu",
                                                                  attn_implementation=w.attention)
    elif on_device:
        with torch.device(device):
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    else:
        no_init = _no_init_weights()
        if no_init is not None:
            with no_init():  # storage left uninitialised (and untied): filled on the GPU below
                model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
            model.tie_weights()
        else:
            model = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype)
    fresh = not weights and not on_device and no_init is not None
    std = float(getattr(config, "initializer_range", 0.02) or 0.02)
    head = model.get_output_embeddings()
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, torch.nn.Linear) or child is head:
                continue
            bias = child.bias is not None
            data = child.weight.data
            if fresh:  # transformers' init: normal(0, initializer_range)
                data = torch.empty(data.shape, dtype=dtype, device=device).normal_(0.0, std)
            if w.dtype == "int8":
                new = bnb.nn.Linear8bitLt(child.in_features, child.out_features, bias=bias,
                                          has_fp16_weights=False, threshold=6.0, device="meta")
                new.weight = bnb.nn.Int8Params(data, requires_grad=False, has_fp16_weights=False)
            else:
                new = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=bias, compute_dtype=dtype,
                                        compress_statistics=False, quant_type="nf4", device="meta")
                new.weight = bnb.nn.Params4bit(data, requires_grad=False, quant_type="nf4",
                                               blocksize=64, compress_statistics=False, module=new)
            if bias:
                new.bias = torch.nn.Parameter(child.bias.data.zero_() if fresh else child.bias.data,
                                              requires_grad=False)
            if on_device or fresh:  # quantize now: to() quantizes int8 only from CPU data
                if w.dtype == "int8":
                    new.weight._quantize(device)
                else:
                    new.weight = new.weight.to(device)
            setattr(parent, name, new)
            del child, data
    # As transformers' bitsandbytes quantizers mark a loaded model: peft reads these flags to wrap
    # the layers in its bitsandbytes LoRA layers, which under autocast feed lora_A the 16-bit input
    # itself (its generic layer casts the input to the fp32 adapters' dtype first: a copy per module).
    model.is_loaded_in_4bit = w.dtype == "nf4"
    model.is_loaded_in_8bit = w.dtype == "int8"
    model = model.to(device)
    if fresh:  # the rest as transformers initialises it: matrices normal, norms 1, biases 0
        with torch.no_grad():
            for pname, p in model.named_parameters():
                if isinstance(p, (bnb.nn.Int8Params, bnb.nn.Params4bit)):
                    continue
                if p.ndim >= 2:
                    p.normal_(0.0, std)
                else:
                    p.fill_(0.0 if pname.endswith("bias") else 1.0)
    return model


def _no_init_weights() -> Any:
    """transformers' context that skips weight initialisation (and tying), where it has one."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights  # type: ignore[no-redef]
        except ImportError:
            return None
    return no_init_weights


def run_profile(
    card: ModelCard,
    w: Workload,
    device: str = "cuda",
    weights: str | None = None,
    snapshot: str | None = None,
    progress: Callable[[str], None] = lambda phase: None,
    lora: tuple[int, tuple[str, ...]] | None = None,
) -> Measurement:
    """Profile `w` on `device`. `lora` = (rank, target projections) trains peft LoRA adapters
    on the frozen model (QLoRA when the weights are nf4)."""
    w, _ = reference_attention(card, w)  # gpt-oss: eager where SDPA was asked for (it has none)
    torch = _import_torch()
    if device == "cuda" and not torch.cuda.is_available():
        raise EnvironmentProblem("no CUDA GPU is visible (torch.cuda.is_available() is False); try --device cpu")
    if device not in ("cuda", "cpu"):
        raise InputError(f"--device must be cuda or cpu, got '{device}'")
    if device == "cuda":
        # The allocator reads its settings when it first allocates: set them before anything does.
        setting = f"expandable_segments:{w.allocator == 'expandable'}"
        conf = os.environ.get("PYTORCH_CUDA_ALLOC_CONF", "")
        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = ",".join(filter(None, [conf, setting]))
        with contextlib.suppress(AttributeError, RuntimeError):
            torch.cuda.memory._set_allocator_settings(setting)
    m = Measurement(device=device, env=environment(torch, device))
    m.env["allocator"] = w.allocator
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
        watch = probe.watch()
        t0 = time.perf_counter()
        try:
            value = fn()
            probe.sync()
        finally:
            rss_peak = watch.stop() if watch else 0
        seconds = time.perf_counter() - t0
        alloc, reserved = probe.peaks()
        existing = next((p for p in m.phases if p.name == name), None)
        if existing is None:
            existing = PhaseMeasure(name)
            m.phases.append(existing)
        existing.peak_allocated_bytes = max(existing.peak_allocated_bytes, alloc)
        existing.peak_reserved_bytes = max(existing.peak_reserved_bytes, reserved)
        existing.process_bytes = max(existing.process_bytes, rss_peak or probe.process_bytes())
        existing.seconds += seconds
        last_seconds[0] = seconds
        return value

    last_seconds = [0.0]  # the latest phase call's own time: fn() and a sync, no probe readings

    baseline = torch.cuda.memory_allocated() if device == "cuda" else 0
    try:
        model = phase("load", lambda: build_model(torch, card, w, device, weights))
        if device == "cuda":
            m.weights_bytes = torch.cuda.memory_allocated() - baseline
        gen = torch.Generator(device="cpu").manual_seed(0)
        tokens = w.batch * w.beams
        ids = torch.randint(0, card.vocab_size, (tokens, w.seq), generator=gen).to(device)
        if w.mode == "infer":
            _run_inference(torch, model, card, w, ids, phase, m, probe, last_seconds)
        else:
            _run_training(torch, model, w, ids, phase, m, device, lora)
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


KERNEL_WINDOW = 5  # decode steps traced for GPU kernel time


def _run_inference(torch: Any, model: Any, card: ModelCard, w: Workload, ids: Any, phase: Any, m: Measurement,
                   probe: _Probe, last_seconds: list[float]) -> None:
    from transformers import DynamicCache

    model.eval()
    cache = DynamicCache(config=model.config)
    state: dict[str, Any] = {}

    @torch.inference_mode()
    def prefill() -> None:
        out = model(input_ids=ids, past_key_values=cache, use_cache=True, logits_to_keep=1)
        state["next"] = out.logits[:, -1, :].float().argmax(-1, keepdim=True)

    phase("prefill", prefill)
    linears, all_columns = _outlier_columns(model)
    if linears:
        m.int8_outliers = {"linears": linears, "all_columns": all_columns}
    m.timings["prefill_s"] = last_seconds[0]
    steps = max(w.gen - 1, 0)

    @torch.inference_mode()
    def decode_step() -> None:
        out = model(input_ids=state["next"], past_key_values=cache, use_cache=True)
        state["next"] = out.logits[:, -1, :].float().argmax(-1, keepdim=True)

    # Wall time per step: the forward, the argmax and a sync (generate syncs every step to check
    # its stopping criteria), without the memory probes. GPU kernel time: the kernels of the last
    # few steps, traced with torch.profiler. Tracing comes last because it slows every later
    # launch in the process, not only the traced ones (measured on the H100: host time per
    # decode step rose ~20x once CUPTI had been attached).
    start = steps - KERNEL_WINDOW
    traced = range(start, steps) if (probe.device == "cuda" and steps >= 2 * KERNEL_WINDOW) else range(0)
    wall: list[float] = []
    tracer = None
    for step in range(steps):
        if step == traced.start and traced:
            tracer = _KernelTracer(torch)
            tracer.__enter__()
        phase("decode", decode_step)
        if tracer is None:
            wall.append(last_seconds[0])
        if tracer is not None and step == traced.stop - 1:
            tracer.__exit__(None, None, None)
            kernel_s, kernels = tracer.totals()
            if kernels:
                m.timings["decode_step_kernel_s"] = kernel_s / len(traced)
                m.timings["decode_kernels_per_step"] = kernels / len(traced)
            tracer = None
    if wall:
        wall.sort()
        m.timings["decode_step_median_s"] = wall[len(wall) // 2]
        m.timings["decode_tokens_per_s"] = w.batch * w.beams / m.timings["decode_step_median_s"]


def _outlier_columns(model: Any) -> tuple[int, int]:
    """(LLM.int8 linears, those whose last call found an outlier in every input column): bitsandbytes'
    MatMul8bitLt leaves that call's outlier columns in the Linear8bitLt module's state.idx."""
    modules = [mod for mod in model.modules() if type(mod).__name__ == "Linear8bitLt"]
    full = sum(1 for mod in modules if getattr(mod.state, "idx", None) is not None
               and mod.state.idx.numel() == mod.in_features)
    return len(modules), full


class _KernelTracer:
    """Sum of GPU kernel (and memcpy/memset) durations while active, from torch.profiler."""

    def __init__(self, torch: Any) -> None:
        from torch.profiler import ProfilerActivity, profile

        self.torch = torch
        self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA])

    def __enter__(self) -> _KernelTracer:
        self.prof.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.torch.cuda.synchronize()
        self.prof.__exit__(*exc)

    def totals(self) -> tuple[float, int]:
        from torch.autograd import DeviceType

        device_events = [e for e in self.prof.events() if e.device_type == DeviceType.CUDA]
        return sum(e.time_range.elapsed_us() for e in device_events) * 1e-6, len(device_events)


LORA_MODULES = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "o_proj", "gate": "gate_proj", "up": "up_proj",
                "down": "down_proj"}


def _with_lora(model: Any, w: Workload, lora: tuple[int, tuple[str, ...]]) -> Any:
    """peft LoRA as its users configure it: alpha 2r, no dropout, peft's defaults otherwise
    (adapters kept in fp32: autocast_adapter_dtype=True)."""
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise EnvironmentProblem("LoRA runs through peft, which is not installed: pip install peft") from None
    rank, targets = lora
    if w.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.enable_input_require_grads()
    config = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                        target_modules=[LORA_MODULES[t] for t in targets])
    return get_peft_model(model, config)


def _run_training(torch: Any, model: Any, w: Workload, ids: Any, phase: Any, m: Measurement, device: str,
                  lora: tuple[int, tuple[str, ...]] | None = None) -> None:
    if w.dtype in QUANTIZED and not lora:
        raise InputError(f"{w.dtype} weights are frozen: train LoRA adapters on them with --lora-rank (QLoRA)")
    if lora:
        model = _with_lora(model, w, lora)
    elif w.grad_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    m.trainable_params = sum(p.numel() for p in params)
    if w.optimizer == "adamw":
        opt = torch.optim.AdamW(params, lr=1e-5, fused=True)
    elif w.optimizer == "adamw-foreach":
        opt = torch.optim.AdamW(params, lr=1e-5, foreach=True)
    elif w.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=1e-5, momentum=0.9)
    elif w.optimizer == "adamw-8bit":
        if device != "cuda":
            raise InputError("adamw-8bit runs on cuda only (bitsandbytes' kernels)")
        opt = _import_bnb().optim.AdamW8bit(params, lr=1e-5)
    else:
        raise InputError(f"the profiler runs adamw, adamw-foreach, adamw-8bit and sgd, not {w.optimizer}")
    # QLoRA computes in the 16-bit compute dtype under autocast (the fp32 adapters meet bf16 inputs)
    cast = w.autocast or (w.compute_dtype if w.dtype in QUANTIZED else None)
    autocast = (torch.autocast(device_type=device, dtype=getattr(torch, TORCH_DTYPES[cast])) if cast else nullcontext())
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
