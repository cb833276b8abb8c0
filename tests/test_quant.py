"""Pre-quantized checkpoints: quantization_config -> the stored bytes of every weight."""

import json
from pathlib import Path

import pytest

from llmcalc.errors import InputError
from llmcalc.hf import card_from_hf_config, quantization_from_config
from llmcalc.memory import Workload, estimate, weight_bytes
from llmcalc.precision import PRECISIONS
from llmcalc.resolve import load_card

QWEN3 = json.loads((Path(__file__).parent / "assets" / "families" / "qwen3.json").read_text())
# tiny qwen3: h 64, 4 heads x 32 (q 128), 2 kv heads (k, v 64), MLP 96, 2 layers, vocab 128, untied.
# Linear shapes (out, in) per layer: q (128, 64), k (64, 64), v (64, 64), o (64, 128), gate/up (96, 64),
# down (64, 96). Unquantized in bf16: embed + lm_head 2 x 128 x 64, norms 2 x (64 + 64 + 32 + 32) + 64
# = 16,384 + 448 elements x 2 B = 33,664 B.
LINEARS = [(128, 64), (64, 64), (64, 64), (64, 128), (96, 64), (96, 64), (64, 96)]
OTHERS = 33_664


def quantized_card(qc):
    return card_from_hf_config(QWEN3 | {"quantization_config": qc}, "cfg")


def test_awq_bytes_by_hand():
    # AWQ GEMM, group 32: qweight n/2, qzeros (in/g) x out/2, fp16 scales (in/g) x out x 2. Per layer:
    # q 4,096 + 128 + 512 = 4,736; k and v 2,048 + 64 + 256 = 2,368 each; o 4,096 + 128 + 512 = 4,736;
    # gate, up and down 3,072 + 96 + 384 = 3,552 each: 24,864.
    card = quantized_card({"quant_method": "awq", "bits": 4, "group_size": 32, "version": "gemm", "zero_point": True})
    assert card.quantization == "awq-int4-g32"
    expected = sum(o * i // 2 + (i // 32) * o // 2 + 2 * (i // 32) * o for o, i in LINEARS)
    assert expected == 24_864
    assert weight_bytes(card, Workload(dtype=card.quantization)) == 2 * expected + OTHERS


def test_gptq_adds_g_idx():
    # GPTQ, group 32: the AWQ-like packing plus int32 g_idx per input column (4 x in).
    card = quantized_card({"quant_method": "gptq", "bits": 4, "group_size": 32, "desc_act": True, "sym": True})
    per_layer = sum(o * i // 2 + (i // 32) * o // 2 + 2 * (i // 32) * o + 4 * i for o, i in LINEARS)
    assert weight_bytes(card, Workload(dtype="gptq-int4-g32")) == 2 * per_layer + OTHERS


def test_bitsandbytes_double_quantization_is_its_own_format():
    plain = quantized_card({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4"})
    dq = quantized_card({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_use_double_quant": True})
    assert (plain.quantization, dq.quantization) == ("nf4", "nf4-dq")
    # 4096 x 4096: 8,388,608 B of nibbles; without DQ 262,144 fp32 absmax (1,048,576 B); with DQ uint8
    # absmax (262,144 B), 1,024 fp32 second-level absmax (4,096 B) and the two code books (1,088 B).
    assert PRECISIONS["nf4"].matrix_bytes(4096, 4096) == 8_388_608 + 1_048_576
    assert PRECISIONS["nf4-dq"].matrix_bytes(4096, 4096) == 8_388_608 + 262_144 + 4_096 + 1_088
    assert quantized_card({"quant_method": "bitsandbytes", "load_in_8bit": True}).quantization == "int8"


def test_block_fp8_and_its_skipped_modules():
    # fp8 with 128 x 128 tiles: every linear here is one tile: n + 4 B; layer 1's attention left in bf16.
    card = quantized_card({"quant_method": "fp8", "weight_block_size": [128, 128], "activation_scheme": "dynamic",
                           "modules_to_not_convert": ["lm_head", "model.layers.1.self_attn"]})
    assert (card.quantization, card.quant_skip) == ("fp8-block", ("lm_head", "model.layers.1.self_attn"))
    attention = [(128, 64), (64, 64), (64, 64), (64, 128)]
    fp8 = sum(o * i + 4 for o, i in LINEARS)
    fp8_mlp = sum(o * i + 4 for o, i in LINEARS[4:])
    bf16_attention = sum(2 * o * i for o, i in attention)
    assert weight_bytes(card, Workload(dtype="fp8-block")) == fp8 + fp8_mlp + bf16_attention + OTHERS


def test_mxfp4_covers_the_experts_only():
    # gpt-oss-20b: 24 layers x 32 experts x (gate_up 5,760 x 2,880 + down 2,880 x 2,880) in MXFP4 at
    # 17/32 B per weight; everything else (attention, routers, embeddings, lm_head) in bf16.
    card = load_card("gpt-oss-20b")
    experts = 24 * 32 * (5760 * 2880 + 2880 * 2880)  # 19,110,297,600 weights -> 10,152,345,600 B
    expected = experts * 17 // 32 + 2 * (card.num_params - experts)  # + 2 x 1,804,459,584
    card = card_from_hf_config({**json.loads(json.dumps(to_config("gpt-oss-20b"))),
                                "quantization_config": {"quant_method": "mxfp4",
                                                        "modules_to_not_convert": ["model.layers.*.self_attn",
                                                                                   "model.layers.*.mlp.router",
                                                                                   "model.embed_tokens", "lm_head"]}},
                               "gpt-oss-20b")
    assert card.quantization == "mxfp4"
    assert weight_bytes(card, Workload(dtype="mxfp4")) == expected == 13_761_264_768


def to_config(name):
    from llmcalc.hf import to_hf_config
    return to_hf_config(load_card(name))


def test_compressed_tensors_w4a16_matches_llm_compressors_checkpoint():
    # llm-compressor's W4A16 Llama-3.1-8B-Instruct: 5,700,595,200 bytes of tensors (vllm-project/llm-compressor
    # issue 1215): per linear n/2 + 2 B per group of 128 + the 16 B weight_shape; embeddings, lm_head, norms bf16.
    qc = {"quant_method": "compressed-tensors", "format": "pack-quantized", "ignore": ["lm_head"],
          "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
              "num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True}}}}
    card = card_from_hf_config(to_config("llama-3.1-8b") | {"quantization_config": qc}, "w4a16")
    assert card.quantization == "w4a16-g128"
    assert weight_bytes(card, Workload(dtype=card.quantization)) == 5_700_595_200


def test_compressed_tensors_fp8_matches_the_transformers_docs():
    # nm-testing/Meta-Llama-3.1-8B-Instruct-FP8-hf: 8.4575 GiB of tensors (transformers' compressed-tensors
    # docs): fp8 weights with one bf16 weight scale and one bf16 input scale each (n + 4 B).
    qc = {"quant_method": "compressed-tensors", "format": "naive-quantized", "ignore": ["lm_head"],
          "config_groups": {"group_0": {"targets": ["Linear"], "weights": {
              "num_bits": 8, "type": "float", "strategy": "tensor", "symmetric": True}}}}
    card = card_from_hf_config(to_config("llama-3.1-8b") | {"quantization_config": qc}, "fp8")
    assert card.quantization == "fp8"
    assert weight_bytes(card, Workload(dtype="fp8")) / 2**30 == pytest.approx(8.4575, abs=5e-5)


def test_nvfp4_from_modelopt_and_its_globs(tmp_path):
    # ModelOpt's hf_quant_config.json beside config.json; the routers and layer 0's attention excluded by glob.
    (tmp_path / "config.json").write_text(json.dumps(QWEN3))
    (tmp_path / "hf_quant_config.json").write_text(json.dumps({"producer": {"name": "modelopt"}, "quantization": {
        "quant_algo": "NVFP4", "group_size": 16, "exclude_modules": ["lm_head", "model.layers.0.self_attn*"]}}))
    card = load_card(str(tmp_path))
    assert card.quantization == "nvfp4"
    nv = [o * i // 2 + o * i // 16 + 8 for o, i in LINEARS]  # fp4 pairs, an fp8 scale per 16, two fp32
    expected = sum(nv) + sum(nv[4:]) + sum(2 * o * i for o, i in LINEARS[:4]) + OTHERS
    assert weight_bytes(card, Workload(dtype="nvfp4")) == expected


def test_the_checkpoints_format_is_the_default_dtype(tmp_path):
    from typer.testing import CliRunner

    from llmcalc.cli import app

    path = tmp_path / "config.json"
    path.write_text(json.dumps(QWEN3 | {"quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 32}}))
    runner = CliRunner()
    doc = json.loads(runner.invoke(app, ["estimate", str(path), "--seq", "64", "--gen", "8", "--json"]).output)
    assert doc["workload"]["dtype"] == "awq-int4-g32"
    assert doc["memory"]["components"]["weights"] == 2 * 24_864 + OTHERS
    doc = json.loads(runner.invoke(app, ["estimate", str(path), "--dtype", "bf16", "--seq", "64", "--json"]).output)
    assert doc["workload"]["dtype"] == "bf16"


def test_an_unmodelled_quantization_is_one_line():
    with pytest.raises(InputError) as exc:
        quantization_from_config({"quant_method": "hqq", "bits": 3}, "cfg")
    assert str(exc.value) == ("cfg: quantization_config 'hqq' (bits=3) is not modelled; pass --dtype to say how the "
                              "weights are stored")


def test_estimates_run_on_quantized_cards():
    card = quantized_card({"quant_method": "gptq", "bits": 8, "group_size": 128})
    est = estimate(card, Workload(dtype=card.quantization, batch=2, seq=64, gen=4))
    assert est.components["weights"] == weight_bytes(card, Workload(dtype="gptq-int8-g128"))
