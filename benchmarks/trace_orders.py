"""Can an allocation order recorded at other shapes stand in for a workload's own? The test behind
issue 14's "generate orders from recorded traces" (a negative result, kept so it can be re-run).

    python benchmarks/trace_orders.py

For each workload whose device total the estimate misses (docs/validation.md), traces were recorded
at (B, S), (2B, S) and (B, 2S) (benchmarks/trace_orders/cases.txt, `allocator_trace.py record
--cases`; benchmarks/results/allocator/shapes/). The k-th allocation at each allocation site (its
first user frames) is paired across them, which gives every allocation of the (B, S) trace its
exponents in B and S; the order of (B, S) with its sizes scaled to the held-out row's (2B, 2S) is
replayed through llmcalc.allocator and compared with that row's recorded trace and measurement.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from allocator_trace import load, replay, slug  # noqa: E402

G = 2**30
SHAPES = ROOT / "benchmarks" / "results" / "allocator" / "shapes"
ROWS = ROOT / "benchmarks" / "results" / "allocator"
WORKLOADS = [  # (model, options without batch/seq, B, S): the held-out row is (2B, 2S)
    ("gemma-3-1b", "--mode train --dtype bf16 --grad-checkpointing", 2, 1024),
    ("smollm3-3b", "--mode train --dtype bf16 --grad-checkpointing", 1, 1024),
    ("benchmarks/cards/cohere2-mini.yaml", "--mode train --dtype bf16 --grad-checkpointing", 1, 1024),
    ("olmo-2-7b", "--dtype bf16 --gen 64", 4, 1024),
]


def _case(model: str, options: str, b: int, s: int) -> str:
    """The case text as validate.py writes it: batch and seq after the dtype."""
    head = options.replace(" --grad-checkpointing", "").split(" --gen ")[0]
    tail = options[len(head):].replace(" --grad-checkpointing", "") if " --gen " in options else ""
    return f"{model} {head} --batch {b} --seq {s}{tail}" + (" --grad-checkpointing" if "--grad-checkpointing" in options else "")


def _skeleton(doc: dict) -> tuple[list[tuple], list[int]]:
    """The trace's allocs and frees with ids renumbered in allocation order, and the sizes."""
    codes = {n: i for i, n in enumerate(doc["actions"])}
    ops: list[tuple] = []
    sizes: list[int] = []
    ids: dict[int, int] = {}
    for action, ident, size, tag in doc["events"]:
        if action == codes["alloc"]:
            ids[ident] = len(sizes)
            ops.append(("a", len(sizes), tag))
            sizes.append(size)
        elif action == codes["free_completed"] and ident in ids:
            ops.append(("f", ids[ident]))
    return ops, sizes


def _exponents(ops: list[tuple], sizes: list[int], other: dict) -> list[int]:
    """Per allocation: e in {0, 1, 2} with size(other) ~ size * 2^e, pairing the k-th allocation of
    each site; an allocation with no partner takes its site's most common exponent."""
    o_ops, o_sizes = _skeleton(other)
    theirs: dict[int, list[int]] = {}
    for op in o_ops:
        if op[0] == "a":
            theirs.setdefault(op[2], []).append(o_sizes[op[1]])
    mine: dict[int, list[int]] = {}
    for op in ops:
        if op[0] == "a":
            mine.setdefault(op[2], []).append(sizes[op[1]])
    per_site: dict[int, list[int]] = {}
    for tag, own in mine.items():
        paired = theirs.get(tag, [])
        exps = [max(0, min(2, round(math.log2(paired[k] / a)))) if k < len(paired) and a else None
                for k, a in enumerate(own)]
        known = [e for e in exps if e is not None]
        fill = max(set(known), key=known.count) if known else 0
        per_site[tag] = [fill if e is None else e for e in exps]
    seen: dict[int, int] = {}
    out = []
    for op in ops:
        if op[0] == "a":
            k = seen.get(op[2], 0)
            seen[op[2]] = k + 1
            out.append(per_site[op[2]][k])
    return out


def main() -> None:
    print("| workload | held-out row | allocated: scaled order / measured GiB | reserve: scaled order / "
          "recorded order / measured GiB |")
    print("|---|---|---:|---:|")
    for model, options, b, s in WORKLOADS:
        base, wide, long_ = (load(SHAPES / f"{slug(_case(model, options, bb, ss))}.json.xz")
                             for bb, ss in ((b, s), (2 * b, s), (b, 2 * s)))
        target = load(ROWS / f"{slug(_case(model, options, 2 * b, 2 * s))}.json.xz")
        ops, sizes = _skeleton(base)
        eb, es = _exponents(ops, sizes, wide), _exponents(ops, sizes, long_)
        scaled = [a * 2**i * 2**j for a, i, j in zip(sizes, eb, es)]
        codes = {n: i for i, n in enumerate(base["actions"])}
        events = [[codes["alloc"], op[1], scaled[op[1]], -1] if op[0] == "a" else [codes["free_completed"], op[1], 0, -1]
                  for op in ops]
        gen = replay({**base, "events": events, "measured": target["measured"]})
        rec = replay(target)
        m = target["measured"]
        print(f"| {model} {options} | --batch {2 * b} --seq {2 * s} | {gen['model_peak_allocated'] / G:.2f} / "
              f"{m['peak_allocated_bytes'] / G:.2f} | {(gen['model_peak_reserved'] - gen['model_peak_allocated']) / G:.2f} / "
              f"{(rec['model_peak_reserved'] - rec['model_peak_allocated']) / G:.2f} / "
              f"{(m['peak_reserved_bytes'] - m['peak_allocated_bytes']) / G:.2f} |")


if __name__ == "__main__":
    main()
