"""Hardware sizing: searches, the paged-KV serving view, ranking, the plan command."""

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from llmcalc.cli import app
from llmcalc.hardware import get_gpu
from llmcalc.memory import Workload, estimate
from llmcalc.planning import SEARCH_LIMIT, _largest, plan_option, rank, serving_view
from llmcalc.resolve import load_card

LLAMA7 = load_card("llama-2-7b")
runner = CliRunner()


@pytest.mark.parametrize(("limit", "start", "expected"), [(37, 1, 37), (37, 64, 37), (1, 8, 1), (0, 1, 0),
                                                          (10**9, 1, SEARCH_LIMIT)])
def test_largest_finds_the_boundary(limit, start, expected):
    assert _largest(lambda n: n <= limit, start) == expected


def test_max_batch_is_the_boundary_of_the_memory_model():
    h100 = get_gpu("h100-sxm-80gb")
    w = Workload(seq=2048, gen=256)
    o = plan_option(LLAMA7, w, h100)
    # plan sizes with the measured reserve fraction (no allocator simulation: it searches every GPU)
    fixed = {"simulate_allocator": False}
    assert estimate(LLAMA7, replace(w, batch=o.max_batch), **fixed).device_total_bytes <= h100.memory_bytes
    assert estimate(LLAMA7, replace(w, batch=o.max_batch + 1), **fixed).device_total_bytes > h100.memory_bytes
    assert o.max_context == 4096 - 256  # llama-2-7b's context less the output: memory is not the limit


def test_paged_serving_view_arithmetic():
    # A block of 16 positions of llama-2-7b: 16 x 32 layers x 2 (K, V) x 4096 x 2 B = 8,388,608 B.
    # The budget and the sequences are vLLM's start-up accounting (llmcalc.serving): 64 blocks per
    # sequence of 1000 + 24 tokens.
    from llmcalc.serving import ServeConfig, serve

    h100 = get_gpu("h100-sxm-80gb")
    w = Workload(seq=1000, gen=24)
    s = serving_view(LLAMA7, w, h100, None, utilization=0.9, block_size=16)
    assert s.block_bytes == 8_388_608
    r = serve(LLAMA7, ServeConfig(gpu_total_bytes=h100.cuda_total_bytes, gpu_name=h100.name, memory_fraction=0.9,
                                  max_model_len=1024, block_size=16), "bf16", "bf16")
    assert s.kv_budget_bytes == r.kv_available_bytes == r.budget_bytes - r.weights_bytes - r.non_torch_bytes \
        - r.activation_peak_bytes - r.cuda_graph_bytes and r.cuda_graph_bytes > 0
    assert s.blocks == s.kv_budget_bytes // 8_388_608 == r.kv_cache_tokens // 16
    assert s.max_sequences == s.blocks // 64


def test_ranking_puts_met_targets_and_cheaper_tokens_first():
    w = Workload(batch=8, seq=1024, gen=128)
    h100, a100, l4 = (get_gpu(g) for g in ("h100-sxm-80gb", "a100-sxm-80gb", "l4"))
    ranked = rank([plan_option(LLAMA7, w, l4, 0.7), plan_option(LLAMA7, w, h100, 2.5),
                   plan_option(LLAMA7, w, a100, 1.0)])
    costs = [o.cost_per_million_tokens for o in ranked]
    assert costs == sorted(costs)
    slow = rank([plan_option(LLAMA7, w, l4, target_tokens_per_s=1e6), plan_option(LLAMA7, w, a100)])
    assert slow[0].gpu.id == "a100-sxm-80gb" and not slow[1].meets_target


def test_a_target_without_concurrency_picks_the_smallest_batch_that_reaches_it():
    h100 = get_gpu("h100-sxm-80gb")
    o = plan_option(LLAMA7, Workload(seq=512, gen=128), h100, target_tokens_per_s=1000, concurrency_given=False)
    assert o.meets_target and o.speed.engine_decode_tokens_per_s >= 1000
    half = plan_option(LLAMA7, Workload(batch=o.speed.seqs // 2, seq=512, gen=128), h100)
    assert half.speed.engine_decode_tokens_per_s < 1000


def test_plan_cli_json_and_bad_input():
    result = runner.invoke(app, ["plan", "llama-3.1-70b", "--gpu", "h100-sxm-80gb", "--gpu", "b200", "--json",
                                 "--price", "b200=6"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    first, second = doc["options"]
    assert first["gpu"] == "b200" and first["fits"] and first["cost_per_million_tokens"] > 0
    assert second == second | {"gpu": "h100-sxm-80gb", "fits": False, "min_devices": 2}
    assert runner.invoke(app, ["plan", "gpt2", "--price", "l4=cheap"]).output.strip() == (
        "error: --price must be ID=USD per hour, got 'l4=cheap'")
    bad = runner.invoke(app, ["plan", "gpt2", "--gpu", "h100"])
    assert bad.exit_code == 2 and bad.output.startswith("error: unknown GPU 'h100'")


def test_models_too_big_for_one_gpu_get_the_smallest_tensor_parallel_group():
    w = Workload(seq=2048, gen=128)
    seventy = load_card("llama-3.1-70b")
    o = plan_option(seventy, w, get_gpu("h100-sxm-80gb"))
    assert not o.fits and o.devices == 2
    assert o.device_total_per_gpu <= get_gpu("h100-sxm-80gb").memory_bytes
    assert plan_option(seventy, w, get_gpu("l4")).devices == 8
    assert plan_option(load_card("llama-3.1-405b"), w, get_gpu("l4")).devices == 0  # not even 8 of them


def test_tensor_parallel_groups_are_timed_and_priced_for_the_group():
    seventy = load_card("llama-3.1-70b")
    o = plan_option(seventy, Workload(batch=8, seq=2048, gen=128), get_gpu("h100-sxm-80gb"), price=2.5)
    assert o.devices == 2 and o.speed is not None and o.meets_target
    assert o.cost_per_million_tokens == pytest.approx(2.5 * 2 / (o.speed.engine_decode_tokens_per_s * 3600) * 1e6)
    assert o.max_batch >= 8


def test_plan_says_how_far_moe_speeds_are_checked():
    moe = runner.invoke(app, ["plan", "qwen3-30b-a3b", "--gpu", "h100-sxm-80gb", "--concurrency", "4"])
    dense = runner.invoke(app, ["plan", "llama-3.1-8b", "--gpu", "h100-sxm-80gb", "--concurrency", "4"])
    assert moe.exit_code == dense.exit_code == 0
    note = "MoE: the routed experts as vLLM's Triton fused_moe runs them (within -17% to +16% on an H200"
    assert note in " ".join(moe.output.split()) and note not in " ".join(dense.output.split())
