"""Allocation orders generated from recorded traces (issue 14), for the workloads llmcalc.alloc_order
has no order for: PyTorch's own allocation trace of one card and workload kind, recorded at three
shapes, scaled to the batch and sequence asked and replayed through llmcalc.allocator.

A template (llmcalc/data/orders/*.json.xz, written by `benchmarks/trace_orders.py build`) keeps
the trace at (B0, S0) as allocs and frees in order, and for each allocation its exponents in batch
and sequence: the recorded size at (2 B0, S0) and at (B0, 2 S0) over its size at (B0, S0), the
three traces aligned operation by operation (same call site, same order). At (B, S) an allocation
of s0 bytes becomes s0 (B / B0)^eB (S / S0)^eS. Fragmentation follows the exact order, which the
scaled trace keeps: generated this way, the held-out rows' reserves came out as PyTorch reported
them (cohere2-mini training with checkpointing at 2 x 2,048 from traces at 1-2 x 1,024-2,048:
5.23 GiB against 5.23; docs/validation-corrections.md, 28).

An inference template also serves any number of tokens generated: its decode steps run as
recorded, and beyond them the last one again, each allocation grown by what it grew from the
step before (a step's allocations are affine in the context: (B, 2S) gives the slope in S).

A template applies to the card it was recorded with (its shape fields, whatever it is called),
to the same workload options but batch, sequence and tokens generated, and while a sliding
window binds at the target shape exactly where it bound at the recorded ones (a binding window
takes another path).
Pure standard library; the template is read only when the estimate needs it.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from llmcalc.cards import ModelCard
from llmcalc.diskcache import cached_peaks
from llmcalc.workload import Workload

ORDERS = Path(__file__).resolve().parent / "data" / "orders"
# Card fields that do not change what transformers allocates for the text model.
_NOT_SHAPE = {"name", "source", "path", "notes", "max_position_embeddings", "vision_params",
              "vision_replicated_params", "mm_tokens_per_image", "mm_image_pixels", "rope_cache_rows",
              "quantization", "quant_skip", "mtp_layers", "vision_hidden_size", "vision_layers"}


def card_key(card: ModelCard) -> str:
    """A checksum of the card's shape: equal for two cards that build the same model. Fields at their
    default are left out, so a card key added later keeps the templates' keys."""
    text = repr([(f.name, getattr(card, f.name)) for f in fields(card)
                 if f.name not in _NOT_SHAPE and getattr(card, f.name) != f.default]).encode()
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"


def workload_key(w: Workload) -> str:
    """Every workload option but batch, sequence and the tokens generated."""
    return repr((w.mode, w.dtype, w.autocast, w.beams, w.kv_dtype, w.grad_checkpointing, w.optimizer,
                 w.attention, w.allocator, w.int8_outliers))


def window_binds(card: ModelCard, w: Workload) -> bool:
    """Whether a sliding or chunked window is shorter than the sequence (transformers then builds
    masks and takes kernels an unbounded causal mask does not need)."""
    window = card.shortest_window
    return window is not None and w.seq + (w.gen if w.mode == "infer" else 0) > window


@lru_cache(maxsize=1)
def _index() -> dict[str, dict[str, Any]]:
    try:
        index: dict[str, dict[str, Any]] = json.loads((ORDERS / "index.json").read_text())
    except (OSError, ValueError):
        return {}
    return index


def find(card: ModelCard, w: Workload) -> dict[str, Any] | None:
    """The index entry of a template that applies to `w` on `card`, if one was recorded."""
    entry = _index().get(f"{card_key(card)} {workload_key(w)}")
    if entry is None or entry["window_binds"] != window_binds(card, w):
        return None
    return entry


@lru_cache(maxsize=8)
def _template(name: str) -> dict[str, Any]:
    import lzma

    with lzma.open(ORDERS / name, "rt") as f:
        doc: dict[str, Any] = json.load(f)
    return doc


def scaled_sizes(doc: dict[str, Any], batch: int, seq: int) -> list[int]:
    """Every recorded allocation's size at (batch, seq): s0 (B / B0)^eB (S / S0)^eS, and in a decode
    step (B / B0)^eB (s0 + cS (S - S0))."""
    b0, s0 = doc["base"]
    rb, rs = batch / b0, seq / s0
    cs = doc.get("cs") or [0.0] * len(doc["sizes"])
    return [round(rb ** eb * (size * rs ** es + c * (seq - s0)))
            for size, eb, es, c in zip(doc["sizes"], doc["eb"], doc["es"], cs)]


SMALL_SIZE = 1 << 20  # llmcalc.allocator.SMALL_SIZE (tests/test_allocator.py keeps them equal)


def _plan(doc: dict[str, Any], batch: int, seq: int, gen: int) -> tuple[int, list[tuple[bool, int]], int, int]:
    """What the replay runs: the recorded ops up to `prefix` (the load and prefill, and the decode
    steps recorded, up to gen - 1), then `repeats` times the last recorded step's ops in `block`
    ((alloc?, recorded allocation index): the allocations, and the frees of those, that reach the
    large pool at some repeat; the small pool's 2 MiB segments are settled by then, and leaving its
    allocations out of the repeats changed no held-out row's reserve by a byte while it cut the
    replay of qwen3-30b-a3b generating 128 tokens from 3.9 to 0.7 s), and the
    allocations one block holds."""
    ops = doc["ops"]
    if "head" not in doc:
        return len(ops), [], 0, 0
    steps = max(gen - 1, 0)
    recorded_steps = doc["steps"]
    prefix = doc["head"] + sum(recorded_steps[:steps])
    repeats = max(steps - len(recorded_steps), 0) if recorded_steps else 0
    if not repeats:
        return prefix, [], 0, 0
    start = doc["head"] + sum(recorded_steps[:-1])
    first = ops.count("a", 0, start)  # the block's first allocation
    count = ops.count("a", start)
    sizes = scaled_sizes(doc, batch, seq)
    rb = batch / doc["base"][0]
    large = {j for j in range(first, first + count)
             if max(sizes[j] + k * doc["ds"][j] * rb ** doc["eb"][j] for k in (1, repeats)) > SMALL_SIZE}
    block: list[tuple[bool, int]] = []
    made, freed = first, ops.count("f", 0, start)
    for op in ops[start:]:
        if op == "a":
            if made in large:
                block.append((True, made))
            made += 1
        else:
            target = made - 1 - doc["frees"][freed]
            freed += 1
            # an allocation of this block or of the one before (its previous repeat); what is
            # older was freed once, by the recorded steps
            if first - count <= target and (target if target >= first else target + count) in large:
                block.append((False, target))
    return prefix, block, repeats, count


def replay(doc: dict[str, Any], batch: int, seq: int, gen: int = 0) -> Any:
    """The llmcalc.allocator.CachingAllocator after the template's order at (batch, seq): the
    segments the trace began with (and their live blocks), then its allocs and frees in order. An
    inference template runs its load and prefill, then gen - 1 decode steps: the recorded ones,
    and beyond them its last step again, each time grown by what that step had grown (`ds`)."""
    from llmcalc.allocator import CachingAllocator  # only on a replay, not on a cached one

    sim = CachingAllocator()
    for total, small, live in doc["initial"]:
        sim.add_segment(total, small)
        for size in live:
            sim.malloc(size)
    sizes = scaled_sizes(doc, batch, seq)
    ops, frees = doc["ops"], doc["frees"]
    prefix, block, repeats, count = _plan(doc, batch, seq, gen)
    handles: dict[int, int] = {}  # by allocation index: recorded, then + k x count in the k-th repeat
    made = freed = 0
    for op in ops[:prefix]:
        if op == "a":
            handles[made] = sim.malloc(sizes[made])
            made += 1
        else:
            handle = handles.pop(made - 1 - frees[freed], None)
            freed += 1
            if handle is not None:
                sim.free(handle)
    rb = batch / doc["base"][0]
    for k in range(1, repeats + 1):
        shift = k * count
        for is_alloc, j in block:
            if is_alloc:
                handles[j + shift] = sim.malloc(sizes[j] + round(k * doc["ds"][j] * rb ** doc["eb"][j]))
            else:
                handle = handles.pop(j + shift, None)
                if handle is not None:
                    sim.free(handle)
    return sim


def replayed_peaks(entry: dict[str, Any], w: Workload, max_events: int) -> tuple[int, int, int]:
    """(events, peak allocated, peak reserved) of the recorded order of `entry` (find) scaled to
    `w`; the peaks are 0 where it would replay more than `max_events` allocs and frees. Cached
    (diskcache.cached_peaks): a cached answer reads no template."""
    gen = w.gen if w.mode == "infer" else 0

    def run() -> tuple[int, int, int]:
        doc = _template(entry["file"])
        prefix, block, repeats, _ = _plan(doc, w.batch, w.seq, gen)
        length = prefix + repeats * len(block)
        if length > max_events:
            return length, 0, 0
        sim = replay(doc, w.batch, w.seq, gen)
        return length, sim.peak_allocated, sim.peak_reserved

    here = Path(__file__).resolve()
    length, allocated, reserved = cached_peaks((entry["file"], w.batch, w.seq, gen, max_events),
                                               (here, here.with_name("allocator.py"), ORDERS / entry["file"]), run)
    return length, allocated, reserved
