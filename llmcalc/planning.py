"""Hardware sizing: for one model and workload, what each catalog device can do with it.

Speeds here are a serving engine's: GPU kernel time, with the host's launches hidden by CUDA
graphs (vLLM, TensorRT-LLM), not an eager `generate()` loop's wall clock (docs/throughput.md).

Per device: whether one fits, else the smallest tensor-parallel group that does (its speed with
the all-reduces over the catalog's interconnect), the largest batch
and the longest context that fit, time to first token and tokens/s at the requested
concurrency, cost per hour and per million generated tokens when a price is given, and the
serving-engine view: how many KV-cache blocks a paged engine (vLLM's scheme) would allocate, and
so how many sequences of the full length can run at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from math import ceil

from llmcalc.cards import ModelCard
from llmcalc.errors import InputError
from llmcalc.hardware import GpuSpec
from llmcalc.memory import Workload, estimate
from llmcalc.speed import Efficiency, Throughput, calibrated_context, efficiency_for, throughput

SEARCH_LIMIT = 1 << 20  # largest batch or context searched for


@dataclass(frozen=True)
class Serving:
    """A paged KV cache as vLLM sizes it (llmcalc.serving): the engine takes `utilization` of the
    device, keeps the weights, its profile run's activation peak and its non-torch memory, and
    cuts the rest into blocks of `block_size` tokens."""

    utilization: float
    block_size: int
    kv_budget_bytes: int
    block_bytes: int
    blocks: int
    max_sequences: int  # of prompt + output tokens each


@dataclass(frozen=True)
class Option:
    """What one device type can do with the workload."""

    gpu: GpuSpec
    fits: bool  # the workload at the requested concurrency fits one device
    min_devices: int  # by the weights alone (lower bound)
    device_total_bytes: int
    max_batch: int  # at the requested lengths, 0 if even batch 1 does not fit
    max_context: int  # prompt tokens at batch 1 (with the output length, within the model's context), 0 if none
    speed: Throughput | None
    serving: Serving | None
    price_per_hour: float | None
    meets_target: bool
    devices: int = 1  # GPUs needed: 1 when one fits, else the smallest tensor-parallel size that fits (0: none)
    device_total_per_gpu: int = 0  # at `devices` GPUs

    @property
    def cost_per_million_tokens(self) -> float | None:
        """Price per hour over the tokens an hour of decoding at the engine rate produces."""
        if self.price_per_hour is None or self.speed is None:
            return None
        return self.price_per_hour * max(self.devices, 1) / (self.speed.engine_decode_tokens_per_s * 3600) * 1e6


def _rate(o: Option) -> float:
    return o.speed.engine_decode_tokens_per_s if o.speed else 0.0


@lru_cache(maxsize=8192)
def _device_total(card: ModelCard, w: Workload, context: tuple[int, str] | None) -> int:
    """The device total the searches compare with each GPU's memory. GPUs of the same memory ask
    the same questions (a plan searches ~30 of them): each workload is estimated once."""
    return estimate(card, w, context, simulate_allocator=False).device_total_bytes


@lru_cache(maxsize=8192)
def _group_total(card: ModelCard, w: Workload, tp: int, context: tuple[int, str] | None) -> int:
    """The per-GPU device total of a tensor-parallel group of `tp` (docs/scale.md), memoized alike."""
    from llmcalc.scale import Scale, scaled_estimate

    return scaled_estimate(card, w, Scale(gpus=tp, tp=tp), context).device_total_bytes


def _largest(fits: Callable[[int], bool], start: int) -> int:
    """Largest n >= 1 with fits(n) (fits is monotone), 0 when fits(1) is false: double, then bisect."""
    if not fits(1):
        return 0
    lo, hi = 1, max(start, 2)
    while hi < SEARCH_LIMIT and fits(hi):
        lo, hi = hi, hi * 2
    if hi >= SEARCH_LIMIT and fits(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo


def serving_view(card: ModelCard, w: Workload, gpu: GpuSpec, context: tuple[int, str] | None,
                 utilization: float | None = None, block_size: int = 16) -> Serving | None:
    """vLLM's own start-up accounting (llmcalc.serving, its default version): the budget (the
    CUDA-reported total x utilization, vLLM's default when None) less the weights as its loader
    holds them, its profile run, its non-torch memory and its CUDA-graph estimate, cut into blocks
    of `block_size` tokens of every layer; sequences of prompt +
    output tokens held at once. `context` (a calibrated CUDA context) plays no part: vLLM's budget
    does not subtract it."""
    from llmcalc.serving import DEFAULT_VERSION, ServeConfig, default_utilization, serve  # only when plan shows it

    config = ServeConfig(gpu_total_bytes=gpu.cuda_total_bytes or gpu.memory_bytes, gpu_name=gpu.name,
                         memory_fraction=utilization, max_model_len=w.seq + w.gen, block_size=block_size,
                         kv_cache_dtype="fp8" if w.kv_dtype == "fp8" else "auto")
    try:
        r = serve(card, config, w.dtype, w.compute_dtype)
    except InputError:  # layers vLLM's allocator cannot share a pool between (different page sizes)
        return None
    budget, block = max(r.kv_available_bytes, 0), r.kv_block_bytes
    blocks = r.kv_cache_bytes // block if block else 0
    return Serving(utilization=utilization or default_utilization(DEFAULT_VERSION["vllm"]), block_size=block_size, kv_budget_bytes=budget, block_bytes=block,
                   blocks=blocks, max_sequences=int(r.max_concurrency))


def plan_option(card: ModelCard, w: Workload, gpu: GpuSpec, price: float | None = None,
                target_tokens_per_s: float | None = None, utilization: float | None = None, block_size: int = 16,
                eff: Efficiency | None = None, concurrency_given: bool = True) -> Option:
    """`w.batch` is the concurrency. With a tokens/s target and no concurrency given, the batch
    is the smallest that reaches the target within memory (or the largest that fits)."""
    context = calibrated_context(gpu)
    eff = eff or efficiency_for(gpu)

    def fits_batch(b: int) -> bool:
        return _device_total(card, replace(w, batch=b), context) <= gpu.memory_bytes

    longest = max(card.max_position_embeddings - w.gen, 1)  # prompt + output within the model's context

    def fits_context(s: int) -> bool:
        return s <= longest and _device_total(card, replace(w, batch=1, seq=s), context) <= gpu.memory_bytes

    max_batch = _largest(fits_batch, w.batch)
    max_context = _largest(fits_context, w.seq)
    if target_tokens_per_s is not None and not concurrency_given and max_batch:
        w = replace(w, batch=batch_for_target(card, w, gpu, target_tokens_per_s, eff, max_batch) or max_batch)
    # Sized with the measured reserve fraction, not the allocator simulation: plan searches every
    # GPU (docs/plan.md); `llmcalc estimate` of the chosen deployment replays the allocation order.
    m = estimate(card, w, context, simulate_allocator=False)
    fits = m.device_total_bytes <= gpu.memory_bytes
    usable = gpu.memory_bytes - m.components["cuda_context"]
    min_devices = max(1, ceil(m.components["weights"] / usable)) if usable > 0 else 0
    speed = throughput(card, w, gpu, eff) if fits else None
    devices, per_gpu = 1, m.device_total_bytes
    if not fits:
        devices, per_gpu = _tensor_parallel(card, w, gpu, context)
        if devices and gpu.link_bytes_per_s:
            def fits_tp(b: int) -> bool:
                return _group_total(card, replace(w, batch=b), devices, context) <= gpu.memory_bytes

            def fits_tp_context(n: int) -> bool:
                return n <= longest and _group_total(card, replace(w, batch=1, seq=n), devices,
                                                     context) <= gpu.memory_bytes

            max_batch, max_context = _largest(fits_tp, w.batch), _largest(fits_tp_context, w.seq)
            speed = throughput(card, w, gpu, eff, devices)
    serving = serving_view(card, w, gpu, context, utilization, block_size) if (max_batch and fits) else None
    runs = fits or (devices > 0 and speed is not None)
    meets = runs and (target_tokens_per_s is None
                      or (speed is not None and speed.engine_decode_tokens_per_s >= target_tokens_per_s))
    return Option(gpu=gpu, fits=fits, min_devices=min_devices, device_total_bytes=m.device_total_bytes,
                  devices=devices, device_total_per_gpu=per_gpu,
                  max_batch=max_batch, max_context=max_context, speed=speed, serving=serving,
                  price_per_hour=price, meets_target=meets)


TP_SIZES = (2, 4, 8)


def _tensor_parallel(card: ModelCard, w: Workload, gpu: GpuSpec, context: tuple[int, str] | None) -> tuple[int, int]:
    """Smallest tensor-parallel size (2, 4, 8) whose per-GPU memory fits; (0, 0) when none."""
    for t in TP_SIZES:
        try:
            total = _group_total(card, w, t, context)
        except InputError:  # heads or kv heads do not split t ways (lru_cache does not keep exceptions)
            continue
        if total <= gpu.memory_bytes:
            return t, total
    return 0, 0


def rank(options: list[Option]) -> list[Option]:
    """Recommendation first: meets the target, then cheapest per million tokens where prices
    are known, then fastest decode; devices that do not fit last, fewest devices needed first."""
    def key(o: Option) -> tuple:
        cost = o.cost_per_million_tokens
        return (not o.meets_target, o.devices == 0, cost is None, cost or 0.0, o.devices, -_rate(o),
                o.min_devices, o.gpu.id)

    return sorted(options, key=key)


def batch_for_target(card: ModelCard, w: Workload, gpu: GpuSpec, target: float, eff: Efficiency,
                     max_batch: int) -> int | None:
    """Smallest batch whose aggregate decode rate reaches `target` tokens/s, within memory."""
    for b in sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, max_batch}):
        if b > max_batch:
            break
        if throughput(card, replace(w, batch=b), gpu, eff).engine_decode_tokens_per_s >= target:
            return b
    return None
