"""Per-GPU estimates under LoRA/QLoRA, ZeRO/FSDP, tensor and pipeline parallelism and offload,
checked against published figures (sources cited per test) and hand arithmetic."""

from dataclasses import replace

import pytest
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


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_model_states_follow_zero(stage):
    # weights + gradients + optimizer per GPU at the optimizer step = (ZeRO's bytes per parameter)
    # x params: no layer is gathered then (stage 3 gathers two while layers run:
    # 2 x (6,738,415,616 - 32,000 x 4,096) x 2 B / 32 layers in the backward).
    r = scaled_estimate(LLAMA7, TRAIN, Scale(gpus=64, zero=stage))
    phases = {p.name: p for p in r.phases}
    step = phases["optimizer_step"].components
    assert step["weights"] + step["gradients"] + step["optimizer"] == pytest.approx(
        model_state_bytes_per_param(stage, 64) * 6_738_415_616, rel=1e-6)
    gathered = 2 * (6_738_415_616 - 32_000 * 4096) * 2 / 32 if stage == 3 else 0
    assert phases["backward"].components["weights"] - step["weights"] == pytest.approx(gathered, abs=1)


def test_offloaded_gradients_leave_the_gpu():
    # FSDP2 CPUOffloadPolicy / ZeRO-Offload: the optimizer steps on the CPU, so each reduced
    # gradient shard moves there; the GPU holds none at the step (measured: 0.06 GiB on an H200).
    # llama-2-7b bf16 on 8 GPUs, ZeRO-3 with params offloaded: the CPU holds weights (2 B), the
    # gradient shard (2 B) and the optimizer (12 B, the fp32 master copy and Adam's moments) per
    # parameter / 8 = 16 x 6,738,415,616 / 8 = 13,476,831,232 B.
    r = scaled_estimate(LLAMA7, TRAIN, Scale(gpus=8, zero=3, offload="params", cpu_memory_bytes=2**40))
    step = next(p for p in r.phases if p.name == "optimizer_step").components
    assert step["weights"] == step["gradients"] == step["optimizer"] == 0
    assert r.cpu_bytes == 16 * 6_738_415_616 // 8


def test_zero3_against_deepspeeds_estimator():
    # DeepSpeed's estimate_zero3_model_states_mem_needs (deepspeed/runtime/zero/stage3.py), no
    # offload: 4 x largest_layer_params + 18 x params / gpus. llama-2-7b's largest module is the
    # 32000 x 4096 embedding: 4 x 131,072,000 + 18 x 6,738,415,616 / 8 = 15,685,723,136 B. Its
    # 18 B/param is 2 more than the ZeRO paper's 16, which llmcalc follows. Compared at llmcalc's
    # largest model states (the end of backward: 16 x params / 8 = 13.48 GB, two layers gathered,
    # 0.83 GB, and the 5e8-element reduce bucket, 1.0 GB: 15.30 GB), 2.4% below DeepSpeed's.
    deepspeed = 4 * 131_072_000 + 18 * 6_738_415_616 // 8
    r = scaled_estimate(LLAMA7, TRAIN, Scale(gpus=8, zero=3))
    ours = max(p.components["weights"] + p.components["gradients"] + p.components["optimizer"] for p in r.phases)
    assert 0.97 < ours / deepspeed < 0.98


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
    # fp32 master + Adam states (12 B) and the 16-bit gradient shard (2 B) the CPU step reads,
    # this rank's 1/8: 14 x 6,738,415,616 / 8
    assert r.cpu_bytes == int(12 * 6_738_415_616 / 8) + int(2 * 6_738_415_616 / 8)


@pytest.mark.parametrize(("scale", "message"), [
    (Scale(gpus=3, tp=3), "--tp 3 does not divide llama-2-7b's 32 attention heads"),
    (Scale(gpus=3, pp=3), "--pp 3 does not divide llama-2-7b's 32 layers"),
    (Scale(gpus=6, tp=4), "--gpus 6 is not a multiple of --tp 4 x --pp 1"),
    (Scale(lora_rank=5000), "--lora-rank 5000 is larger than q_proj (4096 x 4096) of llama-2-7b"),
    (Scale(gpus=2, zero=2, offload="optimizer"), "--offload optimizer needs --cpu-memory GiB: the CPU memory it may use"),
    (Scale(gpus=2, zero=2, offload="params", cpu_memory_bytes=1), "--offload params needs weights sharded: --zero 3 or --fsdp full"),
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
