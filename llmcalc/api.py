"""llmcalc as a library: the commands' answers as typed results (docs/api.md).

    import llmcalc
    r = llmcalc.estimate("llama-3.1-8b", dtype="bf16", batch=8, seq=2048, gen=128)
    r.peak_allocated_bytes      # == `llmcalc estimate ... --json`'s memory.peak_allocated_bytes

Each function takes its command's options (dashes become underscores) and returns a frozen result
holding the core's own objects; `to_dict()` is the command's `--json` document (llmcalc/contract.py,
docs/json.md), because the CLI prints exactly that. Bad input raises `llmcalc.InputError` (the
message the CLI prints, exit code 2), a machine that cannot run it `llmcalc.EnvironmentProblem`.
Nothing here prints, and nothing imports torch, typer or rich: the CLI (llmcalc/cli.py) is a layer
of option parsing and rendering over these functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from llmcalc.errors import InputError

if TYPE_CHECKING:
    from llmcalc.cards import ModelCard
    from llmcalc.hardware import GpuSpec
    from llmcalc.memory import MemoryBreakdown
    from llmcalc.results import CheckReport, PlanResult, ServeResult, SweepRow, ThroughputResult  # noqa: F401
    from llmcalc.scale import ScaledEstimate
    from llmcalc.speed import Throughput
    from llmcalc.workload import Workload

# A card name, a card .yaml, a config.json (file or directory), a Hub ID, or a ModelCard.
ModelLike = Union[str, "ModelCard"]
DEFAULT_BATCHES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def card_for(model: ModelLike, revision: str | None = None, as_family: str | None = None) -> ModelCard:
    """What every command does with MODEL (llmcalc/resolve.py); a ModelCard passes through."""
    from llmcalc.cards import ModelCard

    if isinstance(model, ModelCard):
        return model
    from llmcalc.resolve import load_card

    return load_card(model, revision, as_family)


def make_workload(mode: str = "infer", dtype: str | None = None, autocast: str | None = None, batch: int = 1,
                  seq: int = 512, gen: int = 128, beams: int = 1, kv_dtype: str | None = None,
                  grad_checkpointing: bool = False, optimizer: str = "adamw", attention: str = "sdpa",
                  allocator: str = "default", card: ModelCard | None = None, int8_outliers: str = "few") -> Workload:
    """The workload options shared by the commands, validated by the core. Without `dtype`, a
    pre-quantized checkpoint's own format (its config's quantization_config), else bf16."""
    from llmcalc.workload import Workload

    dtype = dtype or (card.quantization if card is not None else None) or "bf16"
    return Workload(
        mode=mode, dtype=dtype.lower(), autocast=autocast.lower() if autocast else None, batch=batch, seq=seq,
        gen=gen if mode == "infer" else 0, beams=beams, kv_dtype=kv_dtype.lower() if kv_dtype else None,
        grad_checkpointing=grad_checkpointing, optimizer=optimizer.lower(), attention=attention.lower(),
        allocator=allocator.lower(), int8_outliers=int8_outliers.lower(),
    )


def gpu_spec(gpu: str | GpuSpec) -> GpuSpec:
    from llmcalc.hardware import GpuSpec, get_gpu

    return gpu if isinstance(gpu, GpuSpec) else get_gpu(gpu)


# -- estimate ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EstimateResult:
    """`estimate`: memory per component and phase (per GPU when split), the fit on `gpu` and,
    for single-GPU inference on a GPU, the speed."""

    model: ModelCard
    workload: Workload
    memory: MemoryBreakdown | ScaledEstimate
    gpu: GpuSpec | None = None
    throughput: Throughput | None = None

    @property
    def per_gpu(self) -> bool:
        """True when split over GPUs or LoRA/offload (the numbers are per GPU rank)."""
        return hasattr(self.memory, "scale")  # a ScaledEstimate (scale.py loads only when asked for)

    @property
    def peak_allocated_bytes(self) -> int:
        return self.memory.peak_allocated_bytes

    @property
    def device_total_bytes(self) -> int:
        """What nvidia-smi shows: peak allocated + allocator reserve + CUDA context."""
        return self.memory.device_total_bytes

    @property
    def peak_phase(self) -> str:
        return self.memory.peak_phase

    @property
    def components(self) -> dict[str, int]:
        return dict(self.memory.components)

    @property
    def phases(self) -> dict[str, int]:
        return {p.name: p.total for p in self.memory.phases}

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(getattr(self.memory, "warnings", ())) or tuple(getattr(self.memory, "notes", ()))

    @property
    def fits(self) -> bool | None:
        """Whether the device total fits the GPU's memory; None without a GPU."""
        return None if self.gpu is None else self.memory.device_total_bytes <= self.gpu.memory_bytes

    def to_dict(self) -> dict[str, Any]:
        from llmcalc import contract

        if self.per_gpu:
            return contract.scaled_doc(self.memory, self.model, self.workload, self.gpu)  # type: ignore[arg-type]
        return contract.estimate_doc(self.memory, self.model, self.gpu, self.throughput)  # type: ignore[arg-type]


def estimate(model: ModelLike, *, mode: str = "infer", dtype: str | None = None, autocast: str | None = None,
             batch: int = 1, seq: int = 512, gen: int = 128, beams: int = 1, kv_dtype: str | None = None,
             grad_checkpointing: bool = False, optimizer: str = "adamw", attention: str = "sdpa",
             allocator: str = "default", gpu: str | GpuSpec | None = None, gpus: int = 1, tp: int = 1, pp: int = 1,
             zero: int = 0, fsdp: str | None = None, grad_accum: int = 1, offload: str | None = None,
             cpu_memory: float | None = None, lora_rank: int = 0, lora_targets: str | Sequence[str] = "q,v",
             selective_recompute: bool = False, reduce_bucket_size: int | None = None, revision: str | None = None,
             as_family: str | None = None, int8_outliers: str = "few") -> EstimateResult:
    """The memory of a workload (`llmcalc estimate`); `cpu_memory` in GiB per rank,
    `reduce_bucket_size` in elements (DeepSpeed's, with `zero`); `int8_outliers` "all" charges
    LLM.int8's decomposition of every input column (the bound; "few": a trained checkpoint's)."""
    card = card_for(model, revision, as_family)
    w = make_workload(mode, dtype, autocast, batch, seq, gen, beams, kv_dtype, grad_checkpointing, optimizer,
                      attention, allocator, card=card, int8_outliers=int8_outliers)
    spec = gpu_spec(gpu) if gpu is not None else None
    context = None
    if spec is not None:
        from llmcalc.speed import calibrated_context

        context = calibrated_context(spec)
    if (gpus, tp, pp, zero, fsdp, grad_accum, offload, cpu_memory, lora_rank, selective_recompute, reduce_bucket_size) != (
            1, 1, 1, 0, None, 1, None, None, 0, False, None):
        from llmcalc.scale import Scale, parse_lora_targets, scaled_estimate  # only when asked for

        targets = parse_lora_targets(lora_targets) if isinstance(lora_targets, str) else tuple(lora_targets)
        split = Scale(gpus=gpus, tp=tp, pp=pp, zero=zero, fsdp=fsdp.lower() if fsdp else None, grad_accum=grad_accum,
                      offload=offload.lower() if offload else None,
                      cpu_memory_bytes=int(cpu_memory * 2**30) if cpu_memory is not None else None,
                      lora_rank=lora_rank, lora_targets=targets, selective=selective_recompute,
                      reduce_bucket=reduce_bucket_size)
        return EstimateResult(card, w, scaled_estimate(card, w, split, context), spec)
    from llmcalc.memory import estimate as memory_estimate

    result = memory_estimate(card, w, context)
    speed = None
    if spec is not None and w.mode == "infer":
        from llmcalc.speed import efficiency_for
        from llmcalc.speed import throughput as run_throughput

        speed = run_throughput(card, w, spec, efficiency_for(spec))
    return EstimateResult(card, w, result, spec, speed)


# -- throughput -------------------------------------------------------------------------------


def throughput(model: ModelLike, gpu: str | GpuSpec, *, dtype: str | None = None, autocast: str | None = None,
               seq: int = 512, gen: int = 128, beams: int = 1, kv_dtype: str | None = None,
               attention: str = "sdpa", batches: Sequence[int] = DEFAULT_BATCHES, revision: str | None = None,
               as_family: str | None = None) -> ThroughputResult:
    """Time to first token, decode step and tokens/s per batch size (`llmcalc throughput`)."""
    from llmcalc.memory import estimate as memory_estimate
    from llmcalc.results import SweepRow, ThroughputResult
    from llmcalc.speed import calibrated_context, efficiency_for
    from llmcalc.speed import throughput as run_throughput

    card = card_for(model, revision, as_family)
    spec = gpu_spec(gpu)
    sizes = list(batches)
    if not sizes or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in sizes):
        raise InputError(f"--batches must be positive integers, got '{','.join(map(str, sizes))}'")
    eff, context = efficiency_for(spec), calibrated_context(spec)
    rows = []
    for b in sizes:
        w = make_workload("infer", dtype, autocast, b, seq, gen, beams, kv_dtype, False, "adamw", attention, card=card)
        m = memory_estimate(card, w, context)
        rows.append(SweepRow(b, m, run_throughput(card, w, spec, eff), m.device_total_bytes <= spec.memory_bytes))
    return ThroughputResult(card, spec, tuple(rows))


# -- plan -------------------------------------------------------------------------------------


def plan(model: ModelLike, *, gpu: str | Sequence[str] | None = None, dtype: str | None = None, seq: int = 512,
         gen: int = 128, kv_dtype: str | None = None, concurrency: int | None = None,
         target_tokens_per_s: float | None = None, price: Mapping[str, float] | None = None,
         gpu_memory_utilization: float | None = None, block_size: int = 16, revision: str | None = None,
         as_family: str | None = None) -> PlanResult:
    """Size the hardware over the catalog, or over `gpu` (`llmcalc plan`); `price`: GPU id ->
    USD per hour."""
    from llmcalc.hardware import catalog
    from llmcalc.planning import plan_option, rank
    from llmcalc.results import PlanResult

    card = card_for(model, revision, as_family)
    prices = {gpu_spec(g).id: float(usd) for g, usd in (price or {}).items()}
    if gpu_memory_utilization is not None and not 0 < gpu_memory_utilization <= 1:
        raise InputError(f"--gpu-memory-utilization must be in (0, 1], got {gpu_memory_utilization}")
    if block_size < 1:
        raise InputError(f"--block-size must be a positive integer, got {block_size}")
    if concurrency is not None and concurrency < 1:
        raise InputError(f"--concurrency must be a positive integer, got {concurrency}")
    names = [gpu] if isinstance(gpu, str) else list(gpu or [])
    specs = [gpu_spec(g) for g in names] if names else [g for g in catalog().values() if g.kind == "gpu"]
    w = make_workload("infer", dtype, None, concurrency or 1, seq, gen, 1, kv_dtype, False, "adamw", "sdpa", card=card)
    options = rank([plan_option(card, w, g, prices.get(g.id), target_tokens_per_s, gpu_memory_utilization,
                                block_size, concurrency_given=concurrency is not None) for g in specs])
    return PlanResult(card, w, tuple(options), target_tokens_per_s)


# -- check ------------------------------------------------------------------------------------


def check(model: str | None = None, gpu: str | None = None, *, gpus: int = 1, mode: str = "infer",
          dtype: str | None = None, autocast: str | None = None, batch: int = 1, seq: int = 512, gen: int = 128,
          beams: int = 1, kv_dtype: str | None = None, grad_checkpointing: bool = False, optimizer: str = "adamw",
          attention: str = "sdpa", headroom: str | float = "0%", min_tokens_per_s: float | None = None,
          file: str | None = None, deployments: Sequence[Mapping[str, Any]] | None = None) -> CheckReport:
    """Capacity check (`llmcalc check`): MODEL on GPU, or a deployments file (docs/check.md), or
    `deployments`, a list of mappings with the file's keys."""
    from llmcalc.capacity import Deployment, deployment_from_mapping, load_check_file, parse_headroom
    from llmcalc.capacity import check as run_check
    from llmcalc.results import CheckReport

    given = sum(x is not None for x in (model, file, deployments))
    if given > 1:
        raise InputError("give either MODEL with --gpu or --file, not both")
    if file:
        items = load_check_file(file)
    elif deployments is not None:
        items = [deployment_from_mapping(dict(d), i) for i, d in enumerate(deployments)]
    elif model and gpu:
        w = make_workload(mode, dtype, autocast, batch, seq, gen, beams, kv_dtype, grad_checkpointing, optimizer,
                          attention)
        items = [Deployment(name=f"{model} on {gpu}", model=model, gpu=gpu, workload=w, gpus=gpus,
                            headroom=parse_headroom(headroom), min_tokens_per_s=min_tokens_per_s)]
    else:
        raise InputError("check needs MODEL and --gpu ID, or --file deployments.yaml")
    return CheckReport(tuple(run_check(d) for d in items))


# -- serve ------------------------------------------------------------------------------------


def serve(model: ModelLike, *, gpu: str | GpuSpec | None = None, engine: str = "vllm",
          engine_version: str | None = None, gpu_memory: float | None = None, tp: int = 1, pp: int = 1,
          gpu_memory_utilization: float | None = None, mem_fraction_static: float | None = None,
          max_model_len: int | None = None, context_length: int | None = None, max_num_seqs: int | None = None,
          max_running_requests: int | None = None, max_num_batched_tokens: int | None = None,
          chunked_prefill_size: int | None = None, kv_cache_dtype: str = "auto", concurrency: int | None = None,
          dtype: str | None = None, quantization: str | None = None, dp: int = 1, enforce_eager: bool = False,
          enable_prefix_caching: bool | None = None, revision: str | None = None,
          as_family: str | None = None, num_speculative_tokens: int = 0) -> ServeResult:
    """What vLLM or SGLang allocates per GPU at start-up (`llmcalc serve`); `gpu_memory` in GiB
    as CUDA reports it. The result's `starts` is False (not an exception) when the engine would
    refuse to start, with the engine's message in `error`."""
    from llmcalc.results import ServeResult
    from llmcalc.serving import ServeConfig, size_for
    from llmcalc.serving import serve as run_serve

    card = card_for(model, revision, as_family)
    if quantization and not dtype:
        dtype = engine_quantization(quantization, card)
    w = make_workload("infer", dtype, None, 1, 1, 1, 1, None, False, "adamw", "sdpa", card=card)
    spec = gpu_spec(gpu) if gpu is not None else None
    if gpu_memory is not None and gpu_memory <= 0:
        raise InputError(f"--gpu-memory must be a positive number of GiB, got {gpu_memory}")
    total = int(gpu_memory * 2**30) if gpu_memory else (spec.cuda_total_bytes or spec.memory_bytes if spec else 0)
    if not total:
        raise InputError("give --gpu ID or --gpu-memory GiB")
    vllm = engine.lower() == "vllm"
    config = ServeConfig(
        engine=engine.lower(), version=engine_version, gpu_total_bytes=total, gpu_name=spec.name if spec else "",
        gpu_smi_bytes=spec.memory_bytes if spec and not gpu_memory else 0,
        tp=tp, pp=pp, memory_fraction=gpu_memory_utilization if vllm else mem_fraction_static,
        max_model_len=max_model_len or context_length, max_num_seqs=max_num_seqs if vllm else max_running_requests,
        max_num_batched_tokens=max_num_batched_tokens if vllm else chunked_prefill_size,
        kv_cache_dtype=kv_cache_dtype.lower(), dp=dp, enforce_eager=enforce_eager, prefix_caching=enable_prefix_caching,
        num_speculative_tokens=num_speculative_tokens)
    warnings = list(card.notes)
    if spec and not gpu_memory and not spec.cuda_total_bytes:
        warnings.append(f"{spec.id}: the catalog has nvidia-smi's total, not CUDA's (which is 0.4-0.6 GiB less): "
                        "give --gpu-memory for exact block counts")
    if concurrency is None:
        return ServeResult(card, w, run_serve(card, config, w.dtype, w.compute_dtype), spec, None, tuple(warnings))
    sizing = size_for(card, config, w.dtype, w.compute_dtype, concurrency)
    if sizing.estimate is None:
        raise InputError(f"no TP up to 8 holds {concurrency} requests of "
                         f"{config.max_model_len or card.max_position_embeddings} tokens on this GPU with {engine}")
    return ServeResult(card, w, sizing.estimate, spec, sizing, tuple(warnings))


# The engines' --quantization names: the runtime methods llmcalc can size from the card alone,
# and the checkpoint formats, which the checkpoint's own quantization_config names.
_RUNTIME_QUANTIZATION = {"fp8": "fp8-channel", "bitsandbytes": "nf4"}
_CHECKPOINT_QUANTIZATION = ("awq", "awq_marlin", "gptq", "gptq_marlin", "compressed-tensors", "mxfp4", "modelopt",
                            "modelopt_fp4", "fp8")


def engine_quantization(name: str, card: ModelCard) -> str:
    """The weights' format for an engine's --quantization: a checkpoint's own format where it has
    one (its config.json's quantization_config); vLLM's runtime fp8 (per-channel weight scales on
    Hopper and later: 8.49 GiB for Llama-3.1-8B in vLLM 0.19's logs, as fp8-channel counts) and
    in-flight bitsandbytes (nf4) otherwise."""
    key = name.lower()
    if card.quantization:
        return card.quantization
    if key in _RUNTIME_QUANTIZATION:
        return _RUNTIME_QUANTIZATION[key]
    if key in _CHECKPOINT_QUANTIZATION:
        raise InputError(f"--quantization {name} reads a quantized checkpoint's config, and {card.name} has none: "
                         "name the checkpoint (its config.json or Hub ID) or give --dtype (docs/models.md)")
    raise InputError(f"--quantization must be one of {', '.join(sorted({*_RUNTIME_QUANTIZATION, *_CHECKPOINT_QUANTIZATION}))}, "
                     f"got '{name}'")


# -- catalogs ---------------------------------------------------------------------------------


def models() -> list[ModelCard]:
    """Every model card (`llmcalc models`)."""
    from llmcalc.cards import load_all_cards

    return load_all_cards()


def gpus() -> list[GpuSpec]:
    """The GPU and CPU catalog (`llmcalc gpus`)."""
    from llmcalc.hardware import catalog

    return list(catalog().values())


_RESULTS = ("SweepRow", "ThroughputResult", "PlanResult", "CheckReport", "ServeResult")


def __getattr__(name: str) -> Any:
    """The other commands' result types live in llmcalc/results.py (built on first use)."""
    if name in _RESULTS:
        from llmcalc import results

        return getattr(results, name)
    raise AttributeError(f"module 'llmcalc.api' has no attribute '{name}'")
