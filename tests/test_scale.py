"""Per-GPU estimates under LoRA/QLoRA, ZeRO/FSDP, tensor and pipeline parallelism and offload,
checked against published figures (sources cited per test) and hand arithmetic."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from llmcalc.cli import app
from llmcalc.errors import InputError
from llmcalc.memory import Workload, estimate, weight_bytes
from llmcalc.resolve import load_card
from llmcalc.scale import (
    Scale,
    lora_params,
    lora_saved_delta,
    model_state_bytes_per_param,
    parse_lora_targets,
    scaled_estimate,
)

LLAMA7 = load_card("llama-2-7b")
TRAIN = Workload(mode="train", dtype="bf16", batch=1, seq=2048, grad_checkpointing=True)
runner = CliRunner()


@pytest.mark.parametrize(("stage", "gb"), [(0, 120.0), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_figure_1(stage, gb):
    # Rajbhandari et al. 2020 (ZeRO, arXiv 1910.02054), Figure 1: a 7.5B-parameter model, Adam
    # (K = 12), 64 data-parallel GPUs: 120 GB, 31.4 GB, 16.6 GB and 1.9 GB of model states per GPU.
    assert model_state_bytes_per_param(stage, 64) * 7.5e9 / 1e9 == pytest.approx(gb, abs=0.05)


# llama-2-7b: P = 6,738,415,616 parameters, every tensor a multiple of 64 elements, the largest
# the 32,000 x 4,096 embedding (and the untied lm_head): E = 131,072,000.
P7, E7 = 6_738_415_616, 131_072_000


@pytest.mark.parametrize(("stage", "expected"), [
    # stages 1/2 over 64 ranks, Pn = P/64 = 105,287,744: the whole 16-bit model 2P =
    # 13,476,831,232, the gradient partition 2Pn = 210,575,488, the master and Adam states 12Pn =
    # 1,263,452,928, and the step's transient: the larger of the flattened gradients with their fp32
    # copy, 6Pn = 631,726,464, and the norm's fp64 copy of the largest gradient piece, 8 min(E, Pn)
    # = 842,301,952: 13,476,831,232 + 210,575,488 + 1,263,452,928 + 842,301,952 = 15,793,161,600.
    (1, 15_793_161_600), (2, 15_793_161_600),
    # stage 3: 2Pn of weights, 2Pn of gradient partition + the 5e8-element bucket (1e9 B), 12Pn, and
    # one sub-group's (all of Pn: under 1e9 elements) 6 B/element: 210,575,488 + 1,210,575,488 +
    # 1,263,452,928 + 631,726,464 = 3,316,330,368.
    (3, 3_316_330_368),
])
def test_deepspeed_model_states_at_the_step(stage, expected):
    r = scaled_estimate(LLAMA7, TRAIN, Scale(gpus=64, zero=stage))
    phases = {p.name: p.components for p in r.phases}
    step = phases["optimizer_step"]
    assert step["weights"] + step["gradients"] + step["optimizer"] == expected
    # stage 3 keeps what backward reuses within stage3_max_reuse_distance (1e9 elements) gathered
    # from forward's end: 2 B x 1e9 above the partition; stages 1/2 gather nothing.
    assert phases["backward"]["weights"] - step["weights"] == (2_000_000_000 if stage == 3 else 0)


def test_deepspeed_step_is_22_bytes_per_parameter_as_measured():
    # ZeRO-2 of llama-3.2-1b on one H200 (benchmarks/results/scale/h200-deepspeed.jsonl): the
    # optimizer step peaked at 25.38 GiB. One rank: 2 (bf16 weights) + 12 (fp32 master, Adam) +
    # 2 (gradients) + 2 + 4 (their flattened copy and its fp32 conversion) = 22 B x 1,235,814,400
    # = 27,187,916,800 B = 25.32 GiB, beside the measured 25.38.
    card = load_card("llama-3.2-1b")
    w = Workload(mode="train", dtype="bf16", batch=4, seq=1024)
    step = next(p for p in scaled_estimate(card, w, Scale(zero=2)).phases if p.name == "optimizer_step").components
    assert step["weights"] + step["gradients"] + step["optimizer"] == 22 * 1_235_814_400
    assert step["activations"] == 0


def test_zero3_bucket_follows_reduce_bucket_size():
    # ZeRO-3 keeps its reduce bucket for good: 5e8 -> 5e7 elements saves 2 B x 4.5e8 = 900,000,000 B
    # in every phase after initialize (measured on the H200: 0.84 GiB = 902 MB less at each phase).
    card = load_card("llama-3.2-1b")
    w = Workload(mode="train", dtype="bf16", batch=4, seq=1024)
    big = {p.name: p.total for p in scaled_estimate(card, w, Scale(zero=3)).phases}
    small = {p.name: p.total for p in scaled_estimate(card, w, Scale(zero=3, reduce_bucket=50_000_000)).phases}
    assert {k: big[k] - small[k] for k in big if k != "load"} == {
        "forward": 900_000_000, "backward": 900_000_000, "backward_layer_0": 1_800_000_000,
        "backward_end": 1_800_000_000, "optimizer_step": 900_000_000}


def test_offloaded_gradients_leave_the_gpu():
    # ZeRO-3 with parameters and optimizer offloaded, llama-2-7b bf16 on 8 GPUs: the GPU keeps only
    # the reduce bucket at the step (1e9 B). Pn = P/8 = 842,301,952. The CPU holds, pinned and so
    # rounded up to a power of two by torch's host allocator: the 16-bit partition (2Pn =
    # 1,684,603,904 -> 2^31) and its gradients (-> 2^31), the fp32 gradients of the one sub-group
    # (4Pn = 3,369,207,808 -> 2^32), the per-parameter blocks zero.Init pinned (per layer 4 x 2^22
    # (q, k, v, o: 4096 x 4096 / 8 x 2 B = 2^22 exactly) + 3 x 2^24 (11008 x 4096 / 8 x 2 B =
    # 11,272,192) + 2 x 2^10 = 67,110,912, x 32 layers, + 2 x 2^25 (embedding, lm_head: 32,768,000 B)
    # + 2^10 = 2,214,659,072); and unpinned the fp32 master and Adam states, 12Pn = 10,107,623,424.
    r = scaled_estimate(LLAMA7, TRAIN, Scale(gpus=8, zero=3, offload="params", cpu_memory_bytes=2**40))
    step = next(p for p in r.phases if p.name == "optimizer_step").components
    assert (step["weights"], step["gradients"], step["optimizer"]) == (0, 1_000_000_000, 0)
    assert r.cpu_bytes == 2 * 2**31 + 2**32 + 2_214_659_072 + 10_107_623_424 == 20_912_217_088


def test_fsdp_offload_keeps_weights_gradients_and_states_on_the_cpu():
    # FSDP2 CPUOffloadPolicy: bf16 shards of weights (2 B), gradients (2 B) and torch AdamW's
    # bf16 moments (4 B) per parameter / 8 ranks = 8 x 6,738,415,616 / 8; none on the GPU at the step.
    r = scaled_estimate(LLAMA7, TRAIN, Scale(gpus=8, fsdp="full", offload="params", cpu_memory_bytes=2**40))
    step = next(p for p in r.phases if p.name == "optimizer_step").components
    assert step["weights"] == step["gradients"] == step["optimizer"] == 0
    assert r.cpu_bytes == P7


def test_zero3_against_deepspeeds_estimator():
    # DeepSpeed's estimate_zero3_model_states_mem_needs (deepspeed/runtime/zero/stage3.py), no
    # offload: 4 x largest_layer_params + 18 x params / gpus = 4 x 131,072,000 + 18 x P/8 =
    # 15,685,723,136 B for llama-2-7b on 8 GPUs. llmcalc's largest model states are at the step:
    # 2Pn weights + 2Pn gradients + 1e9 bucket + 12Pn + 6Pn (one sub-group's flattened gradients
    # and their fp32 copy) = 22 x 842,301,952 + 1e9 = 19,530,642,944, 24.5% above DeepSpeed's
    # estimator, which leaves out the step's transient and the bucket. Measured on one H200
    # (llama-3.2-1b, ZeRO-3): the step peaked at 25.01 GiB, llmcalc's 24.98; the estimator's
    # formula gives 4 x 262,668,288 + 18 x 1,235,814,400 = 23,295,332,352 B = 21.70 GiB there.
    deepspeed = 4 * E7 + 18 * P7 // 8
    r = scaled_estimate(LLAMA7, TRAIN, Scale(gpus=8, zero=3))
    ours = max(p.components["weights"] + p.components["gradients"] + p.components["optimizer"] for p in r.phases)
    assert ours == 19_530_642_944
    assert ours / deepspeed == pytest.approx(1.245, abs=0.001)


def test_lora_trainable_parameters_match_peft():
    # peft's print_trainable_parameters() for Llama-2-7b with LoraConfig(r=8, target_modules=
    # ["q_proj", "v_proj"]): "trainable params: 4,194,304 || all params: 6,742,609,920".
    # 32 layers x 2 modules x 8 x (4096 + 4096) = 4,194,304.
    assert lora_params(LLAMA7, Scale(lora_rank=8)) == 4_194_304
    r = scaled_estimate(LLAMA7, TRAIN, Scale(lora_rank=8))
    assert r.trainable_params == 4_194_304
    assert LLAMA7.num_params + r.trainable_params == 6_742_609_920


def test_qlora_holds_an_nf4_base_and_fp32_adapters():
    w = replace(TRAIN, dtype="nf4", optimizer="adamw-8bit")
    r = scaled_estimate(LLAMA7, w, Scale(lora_rank=16, lora_targets=("q", "k", "v", "o", "gate", "up", "down")))
    # r x (in + out) per module: q, k, v, o 4096 + 4096 each; gate, up, down 4096 + 11008 each:
    # 16 x 32 layers x (4 x 8192 + 3 x 15104) = 16 x 32 x 78,080 = 39,976,960
    adapters = 16 * 32 * (4 * 8192 + 3 * 15104)
    assert r.trainable_params == adapters == 39_976_960
    step = next(p for p in r.phases if p.name == "optimizer_step")
    # peft keeps adapters in fp32 (autocast_adapter_dtype=True): 4 B each, and 4 B gradients
    assert step.components["weights"] == weight_bytes(LLAMA7, w) + adapters * 4
    assert step.components["gradients"] == adapters * 4
    # full fine-tuning in bf16 would not fit a 24 GB card; QLoRA does
    assert r.device_total_bytes < 24 * 2**30 < estimate(LLAMA7, TRAIN).device_total_bytes


def test_tensor_parallel_splits_weights_kv_and_the_split_share_of_activations():
    w = Workload(batch=8, seq=2048, gen=1)
    one, two = scaled_estimate(LLAMA7, w, Scale()), scaled_estimate(LLAMA7, w, Scale(gpus=2, tp=2))
    assert two.components["weights"] == one.components["weights"] // 2
    assert two.components["kv_cache"] == one.components["kv_cache"] // 2
    # Korthikanti et al. 2022 (arXiv 2205.05198), eq. 2 without sequence parallelism: a layer's
    # activations go from 34 sbh to (10 + 24/t) sbh: at t = 2, 22/34 of them.
    p1 = next(p for p in one.phases if p.name == "prefill").components["activations"]
    p2 = next(p for p in two.phases if p.name == "prefill").components["activations"]
    assert p2 / p1 == pytest.approx(22 / 34, rel=1e-6)


def test_more_gpus_never_need_more_per_gpu():
    totals = [scaled_estimate(LLAMA7, TRAIN, Scale(gpus=n, zero=3)).device_total_bytes for n in (1, 2, 4, 8, 16)]
    assert totals == sorted(totals, reverse=True)


def test_offload_moves_the_optimizer_to_cpu():
    s = Scale(gpus=8, zero=2, offload="optimizer", cpu_memory_bytes=64 * 2**30)
    r = scaled_estimate(LLAMA7, TRAIN, s)
    assert r.components["optimizer"] == 0
    # ZeRO-Offload, this rank's Pn = P/8 = 842,301,952: pinned (rounded up to powers of two) the
    # fp32 master 4Pn -> 2^32, the 16-bit copy 2Pn -> 2^31, the fp32 gradients 4Pn -> 2^32 and a
    # 16-bit buffer of the largest gradient 2E = 262,144,000 -> 2^28; Adam's moments 8Pn unpinned.
    assert r.cpu_bytes == 2**32 + 2**31 + 2**32 + 2**28 + 8 * 842_301_952 == 17_744_269_312


def test_pinned_memory_rounds_to_a_power_of_two():
    from llmcalc.calibration import pinned_bytes

    assert [pinned_bytes(n) for n in (0, 1, 4096, 4097, 12_884_901_888)] == [0, 1, 4096, 8192, 2**34]


@pytest.mark.parametrize(("scale", "message"), [
    (Scale(gpus=3, tp=3), "--tp 3 does not divide llama-2-7b's 32 attention heads"),
    (Scale(gpus=3, pp=3), "--pp 3 does not divide llama-2-7b's 32 layers"),
    (Scale(gpus=6, tp=4), "--gpus 6 is not a multiple of --tp 4 x --pp 1"),
    (Scale(lora_rank=5000), "--lora-rank 5000 is larger than q_proj (4096 x 4096) of llama-2-7b"),
    (Scale(gpus=2, zero=2, offload="optimizer"), "--offload optimizer needs --cpu-memory GiB: the CPU memory it may use"),
    (Scale(gpus=2, zero=2, offload="params", cpu_memory_bytes=1), "--offload params needs weights sharded: --zero 3 or --fsdp full"),
    (Scale(gpus=2, fsdp="full", reduce_bucket=10), "--reduce-bucket-size sizes DeepSpeed's buckets: give it with --zero"),
    (Scale(gpus=2, zero=2, reduce_bucket=0), "--reduce-bucket-size must be a positive number of elements, got 0"),
])
def test_bad_splits_are_one_line(scale, message):
    with pytest.raises(InputError) as info:
        scaled_estimate(LLAMA7, TRAIN, scale)
    assert str(info.value) == message


def test_cli_scaled_estimate_json_and_errors():
    result = runner.invoke(app, ["estimate", "llama-2-7b", "--mode", "train", "--gpus", "8", "--fsdp", "full",
                                 "--dtype", "fp32", "--autocast", "bf16", "--grad-checkpointing", "--json"])
    assert result.exit_code == 0, result.output
    import json

    doc = json.loads(result.stdout)
    assert doc["per_gpu"] is True and doc["scale"]["zero_stage"] == 3 and doc["scale"]["engine"] == "fsdp"
    assert doc["memory"]["components"]["optimizer"] == int(8 * 6_738_415_616 / 8)  # fp32 Adam, sharded 8 ways
    bad = runner.invoke(app, ["estimate", "llama-2-7b", "--pp", "5", "--gpus", "5"])
    assert bad.exit_code == 2 and bad.output.strip() == "error: --pp 5 does not divide llama-2-7b's 32 layers"


def test_selective_recomputation_drops_the_saved_scores():
    eager = replace(TRAIN, attention="eager", grad_checkpointing=False, seq=4096)
    full = scaled_estimate(LLAMA7, eager, Scale())
    selective = scaled_estimate(LLAMA7, eager, Scale(selective=True))
    fwd = lambda r: next(p for p in r.phases if p.name == "forward").components["activations"]  # noqa: E731
    # eager saves heads x seq x (4 + 2) B per token per layer of scores: 32 x 4096 x 6 x 4096
    # tokens x 32 layers = 103 GB that selective recomputation does not keep.
    assert fwd(full) - fwd(selective) > 100e9
    assert fwd(selective) == fwd(scaled_estimate(LLAMA7, replace(eager, attention="sdpa"), Scale()))


def test_micro_batch_and_accumulation():
    result = runner.invoke(app, ["estimate", "llama-2-7b", "--mode", "train", "--micro-batch", "2", "--grad-accum", "8",
                                 "--gpus", "4", "--zero", "2", "--json"])
    import json

    scale = json.loads(result.stdout)["scale"]
    assert scale["global_batch"] == 2 * 8 * 4 and json.loads(result.stdout)["workload"]["batch"] == 2


# LoRA's saved set against full fine-tuning, bytes per token per layer (llmcalc.scale.lora_saved_delta).
# Freed: what only a weight's gradient reads (projection inputs, RMSNorm's y.to(dtype)). Saved: what
# lora_A reads and its r outputs.
def test_lora_delta_bf16_peft_casts_each_input_to_fp32():
    # llama-3.2-1b bf16, all 7 targets, r=16. Freed: q/k/v input 2x2048 + MLP input 2x2048 +
    # down input 2x8192 + two norms' y 2x2x2048 = 32,768 (o_proj's input is SDPA's output, which
    # SDPA keeps). Saved: peft's fp32 casts 4 x (2048 x 6 + 8192) = 81,920 + A outputs 7 x 16 x 4
    # = 448. 82,368 - 32,768 = 49,600.
    card = load_card("llama-3.2-1b")
    w = Workload(mode="train", dtype="bf16", batch=4, seq=1024, gen=0)
    assert lora_saved_delta(card, w, Scale(lora_rank=16, lora_targets=parse_lora_targets("all"))) == 49_600


def test_lora_delta_qlora_under_autocast_saves_the_16_bit_inputs_once():
    # nf4 base, bf16 compute under autocast: peft's bitsandbytes layers do not cast, lora_A reads the
    # 16-bit tensor itself, one per input: 2 x (2048 + 2048 + 8192) = 24,576 (o's input, SDPA's
    # output, is saved already) + A outputs 7 x 16 x 2 = 224. 24,800 - 32,768 = -7,968
    # (measured: +0.3% on the H100).
    card = load_card("llama-3.2-1b")
    w = Workload(mode="train", dtype="nf4", batch=4, seq=1024, gen=0)
    assert lora_saved_delta(card, w, Scale(lora_rank=16, lora_targets=parse_lora_targets("all"))) == -7_968


def test_lora_delta_fp32_autocast_copies_the_fp32_norm_output_per_module():
    # tinyllama-1.1b fp32 + autocast bf16, q and v, r=8. Freed: three 16-bit copies for q/k/v
    # 3x2x2048 + two for gate/up 2x2x2048 + down input 2x5632 + two fp32 norms' y 2x4x2048 =
    # 48,128. Saved: autocast's 16-bit copies for q and v 2 x 2x2048 = 8,192 + A outputs 2 x 8 x 2
    # = 32. 8,224 - 48,128 = -39,904 (measured: +0.1%).
    card = load_card("tinyllama-1.1b")
    w = Workload(mode="train", dtype="fp32", autocast="bf16", batch=4, seq=512, gen=0)
    assert lora_saved_delta(card, w, Scale(lora_rank=8, lora_targets=("q", "v"))) == -39_904


def test_offload_counts_the_cpu_steps_transient():
    # FSDP2 CPU offload with torch's foreach AdamW (measured: peak RSS +11.03 GiB on one H200):
    # llama-3.2-1b's 1,235,814,400 bf16 parameters on the CPU as weights, gradients, two AdamW
    # states and the step's sqrt(exp_avg_sq) copy: 5 x 2 B x 1,235,814,400 = 12,358,144,000 B.
    w = Workload(mode="train", dtype="bf16", batch=4, seq=1024, optimizer="adamw-foreach")
    r = scaled_estimate(load_card("llama-3.2-1b"), w, Scale(gpus=1, fsdp="full", offload="params",
                                                             cpu_memory_bytes=64 * 2**30))
    assert r.cpu_bytes == 5 * 2 * 1_235_814_400


def test_cli_reduce_bucket_size():
    import json

    args = ["estimate", "llama-3.2-1b", "--mode", "train", "--batch", "4", "--seq", "1024", "--zero", "3", "--json"]
    default = json.loads(runner.invoke(app, args).stdout)
    small = json.loads(runner.invoke(app, [*args, "--reduce-bucket-size", "50000000"]).stdout)
    assert (default["scale"]["reduce_bucket_size"], small["scale"]["reduce_bucket_size"]) == (500_000_000, 50_000_000)
    # the bucket is held through backward's peak: 2 B x (5e8 - 5e7) less
    assert default["memory"]["peak_allocated_bytes"] - small["memory"]["peak_allocated_bytes"] == 900_000_000
    bad = runner.invoke(app, ["estimate", "llama-3.2-1b", "--mode", "train", "--fsdp", "full", "--gpus", "2",
                              "--reduce-bucket-size", "100"])
    assert bad.exit_code == 2
    assert bad.output.strip() == "error: --reduce-bucket-size sizes DeepSpeed's buckets: give it with --zero"


def test_one_rank_nccl_communicators():
    # benchmarks/results/nccl/h200.jsonl: at world size 1 the first NCCL communicator holds 0.545 GiB
    # and a second process group's 0.379 GiB; DeepSpeed runs its collectives even on one rank (one
    # communicator for ZeRO-1/2, two for ZeRO-3), FSDP2 on one rank none.
    card = load_card("llama-3.2-1b")
    w = Workload(mode="train", dtype="bf16", batch=4, seq=1024)
    plain = estimate(card, w).components["cuda_context"]
    contexts = {name: scaled_estimate(card, w, s).components["cuda_context"] - plain
                for name, s in {"zero2": Scale(zero=2), "zero3": Scale(zero=3), "fsdp": Scale(fsdp="full")}.items()}
    assert contexts == {"zero2": int(0.545 * 2**30), "zero3": int(0.545 * 2**30) + int(0.379 * 2**30), "fsdp": 0}


_DS_CARD = load_card("llama-3.2-1b")


@settings(max_examples=40, deadline=None)
@given(stage=st.sampled_from([1, 2, 3]), batch=st.integers(1, 8), seq=st.sampled_from([256, 512, 1024, 2048]),
       ckpt=st.booleans(), offload=st.sampled_from([None, "optimizer", "params"]))
def test_deepspeed_properties(stage, batch, seq, ckpt, offload):
    # For any DeepSpeed run: more batch or sequence never needs less GPU memory; offloading never
    # needs more GPU memory than not (it may need more CPU); every phase is non-negative.
    if offload == "params" and stage != 3:
        offload = "optimizer"
    w = Workload(mode="train", dtype="bf16", batch=batch, seq=seq, grad_checkpointing=ckpt)

    def est(w, off=offload):
        return scaled_estimate(_DS_CARD, w, Scale(zero=stage, offload=off, cpu_memory_bytes=2**40 if off else None))

    base = est(w)
    assert all(v >= 0 for p in base.phases for v in p.components.values())
    assert est(replace(w, batch=batch + 1)).peak_allocated_bytes >= base.peak_allocated_bytes
    assert est(replace(w, seq=seq * 2)).peak_allocated_bytes >= base.peak_allocated_bytes
    if offload:
        plain = est(w, None)
        assert base.peak_allocated_bytes <= plain.peak_allocated_bytes
        assert base.cpu_bytes > plain.cpu_bytes == 0


def test_zero3_initialize_holds_partition_master_gradients_bucket_and_the_gathered_embedding():
    # qwen2.5-3b, ZeRO-3 on one H200 (memory history of deepspeed.initialize,
    # benchmarks/results/offload/deepspeed-h200-zero3-init-trace.tar.gz): at its peak the 16-bit
    # partition (2P), the fp32 master (4P, four sub-groups), the gradient buffer (2P), the bucket
    # (2 x 5e8) and the gathered embedding (2 x 151,936 x 2,048): 8 x 3,085,938,688 + 1e9 +
    # 622,329,856 = 26,309,839,360 B, measured 26,310,749,696.
    w = Workload(mode="train", dtype="bf16", batch=4, seq=1024, grad_checkpointing=True)
    load = next(p for p in scaled_estimate(load_card("qwen2.5-3b"), w, Scale(zero=3)).phases if p.name == "load")
    assert load.total == 26_309_839_360
