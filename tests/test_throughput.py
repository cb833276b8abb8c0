"""Throughput model: per-op roofline arithmetic, golden values, properties, the calibration file."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from llmcalc.errors import InputError
from llmcalc.hardware import GpuSpec, get_gpu
from llmcalc.memory import Workload
from llmcalc.resolve import load_card
from llmcalc.speed import (
    Efficiency,
    Op,
    _linear_ops,
    default_efficiency,
    efficiency_for,
    forward_ops,
    step_time,
    throughput,
)

# A made-up device with round numbers: 1 TB/s, 1 PFLOP/s bf16, 100 TFLOP/s fp32.
TOY = GpuSpec(id="toy", name="toy", memory_bytes=80 * 2**30, bytes_per_s=1e12,
              peak_flops={"bf16": 1e15, "fp32": 1e14}, unconfirmed=(), source="test")
PLAIN = Efficiency(bandwidth=1.0, matmul={"bf16": 0.5, "fp32": 0.5}, kernel_floor_s=2e-6, launch_s=10e-6,
                   source="test", gemv=0.5)
LLAMA7 = load_card("llama-2-7b")


def test_linear_op_bytes_and_flops():
    # 4096 -> 4096 in bf16 on one row: weight 4096 * 4096 * 2 = 33,554,432 B, input and output
    # 2 * 4096 * 2 = 16,384 B; 2 * 4096 * 4096 = 33,554,432 FLOPs.
    (op,) = _linear_ops("q", 1, 4096, 4096, Workload(dtype="bf16"), 2, PLAIN)
    assert (op.bytes, op.flops, op.kernels, op.rate, op.streams_weights) == (33_570_816, 33_554_432, 1, "bf16", True)


def test_roofline_takes_the_largest_term():
    # compute 1e12 / (1e15 * 0.5) = 2 ms; memory 1e9 / 1e12 = 1 ms; floor 3 x 2 us: compute wins.
    t = step_time([Op("gemm", 1e12, 1e9, 3, "bf16")], TOY, PLAIN)
    assert t.kernel_s == pytest.approx(2e-3) and t.bound == "compute"
    # elementwise, 1e6 B: memory 1 us < floor 5 x 2 us = 10 us: the floor holds.
    t = step_time([Op("add", 0, 1e6, 5)], TOY, PLAIN)
    assert t.kernel_s == pytest.approx(10e-6) and t.bound == "overhead"
    # weight streaming at the GEMV efficiency: 1e9 B / (1e12 * 0.5) = 2 ms.
    t = step_time([Op("gemv", 1e9, 1e9, 1, "bf16", True)], TOY, PLAIN)
    assert t.kernel_s == pytest.approx(2e-3) and t.bound == "memory"
    # host: 6 kernels x 10 us = 60 us > 10 us of kernels: the wall is the host's.
    t = step_time([Op("a", 0, 0, 6)], TOY, PLAIN)
    assert (t.kernel_s, t.host_s, t.wall_s) == pytest.approx((12e-6, 60e-6, 60e-6))


def test_cpu_adds_dispatch_to_compute():
    cpu = replace(TOY, kind="cpu")
    t = step_time([Op("gemv", 1e9, 1e9, 1, "bf16", True)], cpu, PLAIN)
    assert t.wall_s == pytest.approx(2e-3 + 10e-6)  # kernel + host, not the larger of the two


def test_quantized_linear_uses_its_measured_fit():
    eff = replace(PLAIN, quant_linear={("int8", False): (15e-6, 0.5)}, quant_call_s={("int8", False): 300e-6})
    # int8 4096 x 4096: 16,777,216 B + 4096 fp32 row scales = 16,793,600 B at 0.5 x 1 TB/s
    # = 33.5872 us, plus the fixed 15 us; host: 7 kernels x 10 us + 300 us per call.
    ops = _linear_ops("q", 1, 4096, 4096, Workload(dtype="int8"), 2, eff)
    t = step_time(ops, TOY, eff)
    assert t.kernel_s == pytest.approx(15e-6 + 16_793_600 / 0.5e12)
    assert t.host_s == pytest.approx(7 * 10e-6 + 300e-6)


def test_decode_of_a_7b_model_is_its_weights_at_gemv_bandwidth_plus_small_kernels():
    eff = default_efficiency()
    h100 = get_gpu("h100-sxm-80gb")
    t = throughput(LLAMA7, Workload(dtype="bf16", batch=1, seq=512, gen=64), h100, eff)
    weights = 6_738_415_616 * 2
    stream = weights / (h100.bytes_per_s * eff.gemv)
    assert stream < t.decode.kernel_s < stream + t.decode.kernels * eff.kernel_floor_s * 1.2
    assert t.decode.bound == "memory"
    assert t.prefill.bound == "compute"


def test_kernels_per_step_match_the_traced_tiny_llama():
    # transformers 5.17 on the H100 (benchmarks/results/h100-calibration.json): tiny Llamas of
    # 2 and 8 layers launch 104 and 344 kernels per decode step, i.e. 40 per layer and 24 per
    # forward. The model counts 41 per layer (the cache cat of K and V included) and 24 outside.
    tiny = load_card(str(Path(__file__).parent / "assets" / "tiny-llama.yaml"))
    ops = forward_ops(tiny, Workload(batch=1, seq=64, gen=2), 1, 1, 65, 1, default_efficiency())
    assert sum(op.kernels for op in ops) == 41 * tiny.num_layers + 24


@pytest.mark.parametrize("dtype", ["bf16", "fp16", "fp32"])
def test_aggregate_decode_rate_never_falls_as_batch_grows(dtype):
    # Unquantized weights: one more sequence adds its KV reads but shares the weights, so
    # tokens/s rises with batch (bitsandbytes nf4 is the exception: any batch above 1 dequantizes
    # every weight, measured on the H100).
    eff, h100 = default_efficiency(), get_gpu("h100-sxm-80gb")
    rates = [throughput(LLAMA7, Workload(dtype=dtype, batch=b, seq=512, gen=64), h100, eff).decode_tokens_per_s
             for b in (1, 2, 4, 8, 16, 32, 64)]
    assert rates == sorted(rates)


def test_prefill_time_grows_with_the_prompt():
    eff, h100 = default_efficiency(), get_gpu("h100-sxm-80gb")
    times = [throughput(LLAMA7, Workload(seq=s, gen=2), h100, eff).prefill.kernel_s for s in (128, 512, 2048, 8192)]
    assert times == sorted(times)


def test_calibration_file_is_used_and_named(tmp_path, monkeypatch):
    from llmcalc.calibration import calibration_file, save_calibration

    monkeypatch.setenv("LLMCALC_CONFIG_DIR", str(tmp_path))
    l4 = get_gpu("l4")
    save_calibration("l4", {"bytes_per_s": 0.15e12, "gemv_bytes_per_s": 0.12e12, "kernel_floor_s": 2e-6,
                            "small_kernel_s": 3e-6, "launch_s": 20e-6, "forward_s": 1e-3,
                            "matmul_flops": {"bf16": 60.5e12}, "measured_at": "2026-11-21T00:00:00",
                            "cuda_context_bytes": 500 * 2**20})
    eff = efficiency_for(l4)
    assert eff.bandwidth == pytest.approx(0.5)  # 0.15 of 0.30 TB/s
    assert eff.gemv == pytest.approx(0.4)
    assert eff.matmul["bf16"] == pytest.approx(0.5)  # 60.5 of 121 TFLOP/s
    assert eff.kernel_floor_s == 3e-6
    assert eff.source.startswith("calibrated on this machine at 2026-11-21T00:00:00")
    assert json.loads(calibration_file().read_text())["devices"]["l4"]["launch_s"] == 20e-6
    # uncalibrated GPUs keep the defaults
    assert efficiency_for(get_gpu("a100-sxm-80gb")).source == default_efficiency().source


def test_damaged_calibration_file_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCALC_CONFIG_DIR", str(tmp_path))
    (tmp_path / "calibration.json").write_text('{"devices": {"l4": {"bytes_per_s": "fast"}}}')
    with pytest.raises(InputError) as info:
        efficiency_for(get_gpu("l4"))
    assert str(info.value).startswith(f"{tmp_path / 'calibration.json'}: not a calibration file llmcalc wrote")


def test_tensor_parallel_halves_the_weight_stream_and_adds_two_allreduces_per_layer():
    eff = default_efficiency()
    w = Workload(batch=1, seq=512, gen=64)
    one = forward_ops(LLAMA7, w, 1, 1, 544, 1, eff)
    two = forward_ops(LLAMA7, w, 1, 1, 544, 1, eff, tp=2)
    weights = lambda ops: sum(op.bytes for op in ops if op.streams_weights)  # noqa: E731
    assert weights(two) == pytest.approx(weights(one) / 2, rel=0.001)
    reduces = [op for op in two if op.name == "allreduce"]
    # one op per layer kind, scaled by 32 layers: 2 x 32 all-reduces of 1 row x 4096 x 2 B,
    # a ring moving 2 (2 - 1) / 2 of it: 8,192 B each.
    assert len(reduces) == 2 and all(op.kernels == 32 and op.link_bytes == 32 * 8192 for op in reduces)


def test_allreduce_time_is_latency_plus_bytes_over_the_link():
    eff = replace(PLAIN, link=0.5, link_latency_s=10e-6)
    linked = replace(TOY, link_bytes_per_s=100e9)
    # 4 collectives of 1e6 B in all: 4 x 10 us + 1e6 / (0.5 x 100e9) = 40 us + 20 us
    t = step_time([Op("allreduce", 0, 0, 4, link_bytes=1e6)], linked, eff)
    assert t.comm_s == pytest.approx(60e-6) and t.bound == "communication"


def test_tensor_parallel_needs_an_interconnect():
    with pytest.raises(InputError) as info:
        throughput(LLAMA7, Workload(), get_gpu("epyc-9654"), default_efficiency(), tp=2)
    assert str(info.value) == ("epyc-9654: no interconnect bandwidth in the catalog, so tensor-parallel time "
                               "cannot be predicted")


def test_gemma_runs_four_fp32_norms_per_layer():
    # Gemma 2: input, post-attention, pre- and post-MLP norms, each 10 kernels (x.float(), pow,
    # mean, + eps, rsqrt, mul, w.float(), 1 + w, mul, type_as): 26 layers x 4 x 10 = 1,040.
    gemma = load_card("gemma-2-2b")
    ops = forward_ops(gemma, Workload(dtype="bf16"), 1, 1, 300, 1, PLAIN)
    assert sum(op.kernels for op in ops if op.name == "norm") == 1_040


def test_falcon_attention_runs_the_math_path_in_fp32():
    # falcon-7b bf16, one sequence, a 512-token prompt: every key scored (no causal skipping), the
    # two batched matmuls at the fp32 rate: 4 x 512 rows x 512 keys x 71 heads x 64 = 4.76 GFLOP
    # per layer, 32 layers; 23 kernels per layer.
    falcon = load_card("falcon-7b")
    ops = forward_ops(falcon, Workload(dtype="bf16", seq=512), 512, 512, 512, 1, PLAIN)
    attn = next(op for op in ops if op.name == "attention")
    assert (attn.rate, attn.kernels) == ("fp32", 23 * 32)
    assert attn.flops == 4.0 * 512 * 512 * 71 * 64 * 32


def test_moe_experts_are_two_grouped_gemms_reading_each_active_expert_once():
    # mixtral-8x7b bf16, one decode row: 2 of 8 experts active; gate_up reads 2 x (2 x 14,336 x
    # 4,096) x 2 B and writes/reads the 2 routed rows (4,096 + 28,672) x 2 B = 469,893,120 B per
    # layer, 32 layers; 2 kernels per layer however many experts are active.
    mixtral = load_card("mixtral-8x7b")
    ops = forward_ops(mixtral, Workload(dtype="bf16"), 1, 1, 300, 1, PLAIN)
    gate_up = next(op for op in ops if op.name == "experts_gate_up")
    assert gate_up.bytes == pytest.approx(32 * (2 * 2 * 14_336 * 4_096 * 2 + 2 * (4_096 + 28_672) * 2))
    assert gate_up.kernels == 2 * 32


# --- the serving engine's op list (engine_forward_ops, engine_step_time) ---------------------


def test_engine_gemm_is_a_latency_plus_its_bandwidth_time():
    from llmcalc.speed import _engine_linear, engine_step_time

    # o_proj of Llama-3-8B at one row on an H200: weight 4096 x 4096 x 2 = 33,554,432 B plus one
    # row in and out, 2 x 4096 x 2 = 16,384 B: 33,570,816 B. t = 1.891 us + 33,570,816 /
    # (4.8e12 x 0.846) = 1.891 + 8.267 = 10.158 us (cuBLAS from a CUDA graph measured 9.83 us).
    op = _engine_linear("o_proj", 1, 4096, 4096, Workload(dtype="bf16"))
    assert (op.bytes, op.flops, op.kernels, op.streams_weights) == (33_570_816, 33_554_432, 1, True)
    t = engine_step_time([op], get_gpu("h200"), default_efficiency())
    assert t.kernel_s == pytest.approx(10.158e-6, rel=1e-3)
    assert t.host_s == 0 and t.wall_s == t.kernel_s  # replayed from a CUDA graph: no host term


def test_engine_decode_kernels_are_vllms_llama_layer():
    from llmcalc.speed import engine_forward_ops

    # Per layer: add+norm, qkv, rotary, cache write, attention (split-KV and combine: 2), o,
    # add+norm, gate_up, act, down = 11; then embedding, final norm, lm_head and 3 sampler
    # kernels: 32 x 11 + 6 = 358.
    ops = engine_forward_ops(load_card("llama-3.1-8b"), Workload(batch=8, seq=512), 8, 1, 512, 8)
    assert sum(op.kernels for op in ops) == 358
    names = {op.name for op in ops}
    assert {"qkv_proj", "gate_up_proj"} <= names and not names & {"q_proj", "k_proj", "cache_cat", "attn_out_copy"}


@pytest.mark.parametrize("card, per_token", [
    # GQA: K and V of 8 heads x 128, bf16: 2 x 1024 x 2 = 4,096 B per token and layer, 32 layers
    ("llama-3.1-8b", 32 * 2 * 1024 * 2),
    # MLA under an engine: the latent (512) and the rope key (64), bf16: 1,152 B, 61 layers
    ("deepseek-v3", 61 * (512 + 64) * 2),
])
def test_engine_decode_reads_each_cached_token_once(card, per_token):
    from llmcalc.speed import engine_forward_ops

    c = load_card(card)
    w = Workload(batch=4, seq=1000)

    def moved(context: int) -> float:
        return sum(op.bytes for op in engine_forward_ops(c, w, 4, 1, context, 4))

    # only attention reads depend on the context: 4 sequences x 1,000 more tokens
    assert moved(2000) - moved(1000) == pytest.approx(4 * 1000 * per_token)


@pytest.mark.parametrize("card", ["llama-3.1-8b", "qwen3-30b-a3b", "gemma-3-27b", "deepseek-v3", "gpt-oss-20b"])
def test_engine_step_never_falls_as_batch_or_context_grow(card):
    c, h100 = load_card(card), get_gpu("h100-sxm-80gb")
    eff = default_efficiency()
    steps = [throughput(c, Workload(batch=b, seq=s, gen=16), h100, eff).engine_decode_step_s
             for b in (1, 4, 16) for s in (256, 4096)]
    by_batch = [steps[i::2] for i in range(2)]
    assert all(a <= b for row in by_batch for a, b in zip(row, row[1:]))
    assert all(steps[i] <= steps[i + 1] for i in range(0, len(steps), 2))


def test_engine_gemms_agree_with_the_device_step():
    """The GEMMs of benchmarks/engine_step.py's llama-3.1-8b decode step at batch 1 (512 cached
    tokens; torch.profiler on an H200): 3,979 us of cuBLAS kernels. The op list charges 3,941 us."""
    from llmcalc.speed import engine_forward_ops, engine_step_time

    doc = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "engine-step"
                      / "engine-step-llama-3.1-8b.json").read_text())
    row = next(r for r in doc["rows"] if (r["batch"], r["context"], r.get("phase")) == (1, 512, "decode"))
    gemms = [op for op in engine_forward_ops(load_card("llama-3.1-8b"), Workload(seq=512), 1, 1, 512, 1)
             if op.streams_weights]
    predicted = engine_step_time(gemms, get_gpu("h200"), default_efficiency()).kernel_s * 1e6
    assert predicted == pytest.approx(row["trace"]["gemm"]["us"], rel=0.03)


def test_engine_view_is_faster_than_eager_and_none_on_a_cpu():
    t = throughput(LLAMA7, Workload(batch=8, seq=512, gen=64), get_gpu("h100-sxm-80gb"), default_efficiency())
    assert t.engine_decode is not None and t.engine_decode_step_s < t.decode.kernel_s < t.decode.wall_s
    assert t.engine_decode_tokens_per_s == pytest.approx(8 / t.engine_decode_step_s)
    cpu = get_gpu("epyc-9654")
    c = throughput(LLAMA7, Workload(batch=8, seq=512, gen=64), cpu, efficiency_for(cpu))
    assert c.engine_decode is None and c.engine_decode_step_s == c.decode.kernel_s


def test_engine_decode_attention_has_its_measured_fixed_time():
    from llmcalc import calibration
    from llmcalc.speed import engine_forward_ops, engine_step_time

    # 9.22 us measured for the pair at batch 1 and 512 cached tokens less the 2.1 MB they read at
    # the copy bandwidth (4.8e12 x 2.919 / 3.35 B/s): 9.22 - 0.50 = 8.72 us
    assert calibration.ENGINE_DECODE_ATTENTION_S == pytest.approx(8.718e-6, rel=1e-3)
    ops = engine_forward_ops(load_card("llama-3.1-8b"), Workload(seq=512), 1, 1, 512, 1)
    (attn,) = {op for op in ops if op.name == "attention"}
    # one layer's op scaled by 32 layers: 32 x 8.72 us fixed, plus the cache: 512 x 2 x 1,024 x 2 B a
    # layer read at the copy bandwidth
    t = engine_step_time([attn], get_gpu("h200"), default_efficiency())
    assert t.floor_s == pytest.approx(32 * 8.718e-6, rel=1e-3)
    assert t.memory_s == pytest.approx(32 * (512 * 2 * 1024 * 2 + 2 * 4096 * 2) / (4.8e12 * 2.919 / 3.35), rel=1e-3)
    # a prefill's attention keeps one kernel at the small-kernel time
    pre = [op for op in engine_forward_ops(load_card("llama-3.1-8b"), Workload(seq=512), 512, 512, 512, 1)
           if op.name == "attention"]
    assert pre[0].fixed_s == 0 and pre[0].kernels == 32


def test_grouped_expert_gemms_run_at_the_measured_fused_moe_rate():
    # 1 TFLOP of vLLM's grouped expert GEMM on an H200 (bf16 peak 989.5 TFLOP/s) at the measured
    # 0.438 of peak: 1e12 / (989.5e12 x 0.438) = 2.3073 ms; the same FLOPs as a dense GEMM at
    # cuBLAS's prefill rate (0.7628 x 0.8225 = 0.627): 1.611 ms
    from llmcalc.hardware import get_gpu
    from llmcalc.speed import Op, _compute_s, default_efficiency

    gpu, eff = get_gpu("h200"), default_efficiency()
    grouped = Op("experts_gate_up", 1e12, 0, 1, "bf16", True, grouped=True)
    dense = Op("gate_up_proj", 1e12, 0, 1, "bf16", True)
    assert _compute_s(grouped, gpu, eff) == pytest.approx(2.3073e-3, rel=1e-4)
    assert _compute_s(dense, gpu, eff) == pytest.approx(1.611e-3, rel=1e-3)


def test_a_whole_forwards_expert_gemms_keep_the_grouped_rate():
    # the layer's ops are scaled by the layer count; the grouped flag must survive it, or a model's
    # prefill would time its experts at cuBLAS's dense rate
    from llmcalc.speed import engine_forward_ops

    ops = engine_forward_ops(load_card("qwen3-30b-a3b"), Workload(), 4096, 4096, 4096, 4096)
    experts = [op for op in ops if op.name.startswith("experts_") and op.flops]
    assert len(experts) == 2 and all(op.grouped for op in experts)
    assert all(not op.grouped for op in ops if op.name in ("qkv_proj", "o_proj", "lm_head"))


def test_gated_delta_net_decode_ops_as_transformers_runs_them():
    # tests/assets/families/qwen3_5_text.json: one GDN layer at batch 2, one new token, bf16. Kernels:
    # the four projections (4), the causal conv's update (5), the delta rule and its surroundings
    # (42 + 11, counted from modeling_qwen3_5.py), the gated norm (1), out_proj (1) -> 64.
    # The recurrence passes 14 times over the fp32 state: 2 sequences x 4 value heads x 8 x 12 x 4 B.
    from pathlib import Path

    from llmcalc.speed import _gated_delta_net_ops
    card = load_card(str(Path(__file__).parent / "assets" / "families" / "qwen3_5_text.json"))
    w = Workload(batch=2, seq=16, gen=4)
    ops = _gated_delta_net_ops(card, w, 2, 1, 2, default_efficiency(), 1)
    assert sum(op.kernels for op in ops) == 64
    rule = next(op for op in ops if op.name == "delta_rule")
    state = 2 * 4 * 8 * 12 * 4
    assert rule.bytes == 14 * state + 2 * (80 + 48) * 2  # + q, k, v and z read in bf16
