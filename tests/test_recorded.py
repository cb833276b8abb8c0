"""Allocation orders generated from recorded traces (llmcalc.recorded)."""

import json
from dataclasses import replace
from pathlib import Path

from llmcalc import recorded
from llmcalc.memory import Workload, estimate
from llmcalc.resolve import load_card

ROOT = Path(__file__).resolve().parent.parent
COHERE = str(ROOT / "benchmarks" / "cards" / "cohere2-mini.yaml")
GC = Workload(mode="train", dtype="bf16", batch=2, seq=2048, gen=0, grad_checkpointing=True)


def test_sizes_scale_by_their_exponents_in_batch_and_sequence():
    # an allocation of 1,024 B at (B0, S0) = (2, 512) with eB = 1, eS = 2 (a scores tensor):
    # at (8, 1,024): 1,024 x (8/2)^1 x (1,024/512)^2 = 16,384; one with eB = eS = 0 stays 4,096
    doc = {"base": [2, 512], "sizes": [1024, 4096], "eb": [1.0, 0.0], "es": [2.0, 0.0]}
    assert recorded.scaled_sizes(doc, 8, 1024) == [16_384, 4_096]
    assert recorded.scaled_sizes(doc, 2, 512) == [1_024, 4_096]


def test_a_template_replays_its_allocs_and_frees_in_order():
    # 30 MiB, then 12 MiB; the 30 MiB block freed (one back from the latest), then 20 MiB reuses
    # its cached segment: reserved = 30 + 12 MiB segments (sizes rounded to 2 MiB), allocated
    # peaks at 42 MiB
    mib = 1 << 20
    doc = {"base": [1, 1], "initial": [], "sizes": [30 * mib, 12 * mib, 20 * mib], "eb": [0] * 3, "es": [0] * 3,
           "ops": "aafa", "frees": [1]}
    sim = recorded.replay(doc, 1, 1)
    assert (sim.peak_allocated, sim.peak_reserved) == (42 * mib, 42 * mib)
    # at twice the batch with eB = 1 for the first: 60 + 12 MiB at once, then 20 in the freed 60
    sim = recorded.replay({**doc, "eb": [1, 0, 0]}, 2, 1)
    assert (sim.peak_allocated, sim.peak_reserved) == (72 * mib, 72 * mib)


def test_the_held_out_row_is_reproduced_to_the_byte():
    # cohere2-mini training with checkpointing at 2 x 2,048, from its traces at 1-2 x 1,024-2,048:
    # PyTorch reported peak allocated 18,212,937,216 and peak reserved 23,829,938,176 for the row
    # (h200-families-heldout.jsonl); the measured fraction had put its device total -17.3% off
    card = load_card(COHERE)
    _, allocated, reserved = recorded.replayed_peaks(recorded.find(card, GC), GC, 400_000)
    assert (allocated, reserved) == (18_212_937_216, 23_829_938_176)
    m = estimate(card, GC)
    assert m.components["allocator_reserve"] == 23_829_938_176 - 18_212_937_216
    assert "llmcalc.recorded" in m.explain["allocator_reserve"]


def test_a_template_applies_to_its_card_and_workload_kind_only():
    card = load_card(COHERE)
    assert recorded.find(card, GC) is not None
    assert recorded.find(replace(card, name="my-cohere", source="elsewhere"), GC) is not None  # same shape
    assert recorded.find(replace(card, hidden_size=4096), GC) is None
    assert recorded.find(card, replace(GC, optimizer="sgd")) is None
    assert recorded.find(card, replace(GC, batch=7, seq=300)) is not None  # batch and sequence are free
    # its 4,096-token sliding window binds beyond 4,096 tokens: another path, no template
    assert recorded.find(card, replace(GC, seq=8192)) is None
    assert estimate(card, replace(GC, seq=8192)).explain["allocator_reserve"].startswith("median")
    # an inference template serves any number of tokens generated
    qwen = load_card("qwen3-30b-a3b")
    assert recorded.find(qwen, Workload(dtype="bf16", batch=3, seq=700, gen=500)) is not None
    # gpt-oss has no SDPA path in transformers: its template is keyed as the estimate runs it (eager)
    assert "llmcalc.recorded" in estimate(load_card("gpt-oss-20b"), Workload(dtype="bf16", seq=1024, gen=8)).explain[
        "allocator_reserve"]


def test_every_indexed_template_is_shipped_and_consistent():
    index = json.loads((recorded.ORDERS / "index.json").read_text())
    assert len(index) >= 15
    for entry in index.values():
        doc = recorded._template(entry["file"])
        allocs = doc["ops"].count("a")
        assert allocs == len(doc["sizes"]) == len(doc["eb"]) == len(doc["es"])
        assert doc["ops"].count("f") == len(doc["frees"])
        # a free names an allocation made before it
        made = 0
        frees = iter(doc["frees"])
        for op in doc["ops"]:
            if op == "a":
                made += 1
            else:
                assert 0 <= next(frees) < made


def test_decode_steps_run_as_recorded_then_repeat_the_last_one_grown():
    # head: 10 MiB kept. Two recorded steps, each allocating the new cache (12, then 14 MiB: it
    # grew 2 MiB) and freeing the previous step's (the first step frees nothing of the head).
    # At gen 5 (4 steps): 12, 14, then the last step again grown 2 MiB each time: 16, 18. Each
    # step holds the new cache beside the old one: 10 + 16 + 18 = 44 MiB at the peak. (Sizes in
    # whole 2 MiB: the allocator gives a block of 10 MiB or more exactly what was asked.)
    mib = 1 << 20
    doc = {"base": [1, 1], "initial": [], "sizes": [10 * mib, 12 * mib, 14 * mib], "eb": [0, 0, 1], "es": [0, 0, 0],
           "cs": [0, 0, 0], "ds": [0, 0, 2 * mib], "head": 1, "steps": [1, 2], "ops": "aaaf", "frees": [1]}
    assert recorded.replay(doc, 1, 1, gen=5).peak_allocated == 44 * mib
    assert recorded.replay(doc, 1, 1, gen=2).peak_allocated == 22 * mib  # one step: 10 + 12
    assert recorded.replay(doc, 1, 1, gen=1).peak_allocated == 10 * mib  # the prefill only
    # twice the batch: the step allocation with eB = 1 and its growth double: 10 + 28 + 32
    assert recorded.replay(doc, 2, 1, gen=4).peak_allocated == (10 + 28 + 32) * mib


def test_more_tokens_generated_than_recorded_reproduce_the_held_out_row():
    # deepseek-v2-lite's template was recorded at 1-2 x 512-1,024 tokens generating 32; the row at
    # 2 x 4,096 generating 64 reported peak allocated 33,130,751,488 and peak reserved
    # 34,105,982,976 (h200-families-heldout.jsonl; the measured fraction: device total +6.4%)
    card = load_card("deepseek-v2-lite")
    w = Workload(dtype="bf16", batch=2, seq=4096, gen=64)
    _, allocated, reserved = recorded.replayed_peaks(recorded.find(card, w), w, 400_000)
    assert (allocated, reserved) == (33_130_751_488, 34_105_982_976)


def test_an_order_too_long_to_replay_quickly_falls_back_to_the_fraction():
    # qwen3-30b-a3b at 1 x 512: the load, prefill and 15 recorded decode steps, then each further
    # step's large-pool operations: 2,000 tokens generated pass alloc_order.MAX_EVENTS (400,000),
    # so the estimate takes the measured fraction
    from llmcalc.alloc_order import MAX_EVENTS

    card = load_card("qwen3-30b-a3b")
    long_run = Workload(dtype="bf16", batch=1, seq=512, gen=2000)
    assert recorded.replayed_peaks(recorded.find(card, long_run), long_run, MAX_EVENTS)[1:] == (0, 0)
    m = estimate(card, long_run)
    assert m.explain["allocator_reserve"].startswith("median")
    assert "recorded allocation order" in m.explain["allocator_reserve"]
    short = replace(long_run, gen=16)
    assert 0 < recorded.replayed_peaks(recorded.find(card, short), short, MAX_EVENTS)[0] <= MAX_EVENTS


def test_rows_estimated_before_their_run_are_reproduced_to_the_byte():
    # session 12's templates, replayed at shapes 8-32x their traces' and committed before the rows
    # ran (h200-recorded-heldout-12.jsonl): PyTorch reported for gpt2-medium's fp32 training at
    # 16 x 1,024 (traces at 2-4 x 256-512) peak allocated 59,473,165,824 and reserved
    # 60,043,558,912; for gemma-3-4b in NF4 at 2 x 8,192 generating 32 (traces at 1-2 x 2,048-4,096)
    # 6,901,619,712 and 7,149,191,168
    for name, w, peaks in (
            ("gpt2-medium", Workload(mode="train", dtype="fp32", batch=16, seq=1024, gen=0),
             (59_473_165_824, 60_043_558_912)),
            ("gemma-3-4b", Workload(dtype="nf4", batch=2, seq=8192, gen=32), (6_901_619_712, 7_149_191_168))):
        card = load_card(name)
        assert recorded.replayed_peaks(recorded.find(card, w), w, 400_000)[1:] == peaks, name
