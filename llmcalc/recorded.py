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

A template applies to the card it was recorded with (its shape fields, whatever it is called),
to the same workload options but batch and sequence, and while a sliding window binds at the
target shape exactly where it bound at the recorded ones (a binding window takes another path).
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
              "quantization", "quant_skip"}


def card_key(card: ModelCard) -> str:
    """A checksum of the card's shape: equal for two cards that build the same model."""
    text = repr([(f.name, getattr(card, f.name)) for f in fields(card) if f.name not in _NOT_SHAPE]).encode()
    return f"{zlib.crc32(text):08x}{zlib.adler32(text):08x}"


def workload_key(w: Workload) -> str:
    """Every workload option but batch and sequence (and, in training, the absent generation)."""
    return repr((w.mode, w.dtype, w.autocast, w.gen if w.mode == "infer" else 0, w.beams, w.kv_dtype,
                 w.grad_checkpointing, w.optimizer, w.attention, w.allocator, w.int8_outliers))


def window_binds(card: ModelCard, w: Workload) -> bool:
    """Whether a sliding or chunked window is shorter than the sequence (transformers then builds
    masks and takes kernels an unbounded causal mask does not need)."""
    window = min(filter(None, (card.sliding_window if card.sliding_layers else None, card.attention_chunk_size)),
                 default=None)
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
    """Every allocation's size at (batch, seq): s0 (B / B0)^eB (S / S0)^eS."""
    b0, s0 = doc["base"]
    rb, rs = batch / b0, seq / s0
    return [round(size * rb ** eb * rs ** es) for size, eb, es in zip(doc["sizes"], doc["eb"], doc["es"])]


def replay(doc: dict[str, Any], batch: int, seq: int) -> Any:
    """The llmcalc.allocator.CachingAllocator The allocator model after the template's order at (batch, seq): the segments the trace began
    with (and their live blocks), then its allocs and frees in order."""
    from llmcalc.allocator import CachingAllocator  # only on a replay, not on a cached one

    sim = CachingAllocator()
    for total, small, live in doc["initial"]:
        sim.add_segment(total, small)
        for size in live:
            sim.malloc(size)
    sizes = scaled_sizes(doc, batch, seq)
    handles: list[int] = []
    frees = iter(doc["frees"])
    for op in doc["ops"]:
        if op == "a":
            handles.append(sim.malloc(sizes[len(handles)]))
        else:
            sim.free(handles[len(handles) - 1 - next(frees)])
    return sim


def replayed_peaks(card: ModelCard, w: Workload) -> tuple[int, int] | None:
    """(peak allocated, peak reserved) of the recorded order scaled to `w`, or None without one."""
    entry = find(card, w)
    if entry is None:
        return None

    def run() -> tuple[int, int]:
        sim = replay(_template(entry["file"]), w.batch, w.seq)
        return sim.peak_allocated, sim.peak_reserved

    here = Path(__file__).resolve()
    return cached_peaks((entry["file"], w.batch, w.seq),
                        (here, here.with_name("allocator.py"), ORDERS / entry["file"]), run)
