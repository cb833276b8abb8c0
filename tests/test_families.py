"""The 2025-26 families: config.json readers, parameter counts, the mechanisms' memory terms."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from llmcalc.cards import card_from_mapping
from llmcalc.errors import InputError
from llmcalc.hf import card_from_hf_config, to_hf_config
from llmcalc.memory import Workload, estimate, inference_phases, kv_cache_bytes
from llmcalc.resolve import load_card

FAMILY_CONFIGS = sorted((Path(__file__).parent / "assets" / "families").glob("*.json"))


def test_every_new_family_has_a_tiny_config():
    assert {p.stem for p in FAMILY_CONFIGS} >= {
        "qwen3", "qwen2_moe", "qwen3_moe", "gemma3_text", "llama4_text", "deepseek_v2", "deepseek_v3", "gpt_oss",
        "glm4_moe", "olmo2", "olmo3", "granite", "granitemoe", "smollm3", "phimoe", "cohere2", "ernie4_5",
        "ernie4_5_moe", "lfm2"}


@pytest.mark.parametrize("path", FAMILY_CONFIGS, ids=lambda p: p.stem)
def test_family_parameters_equal_transformers_and_round_trip(path):
    """The card read from the config counts what transformers builds from that config, and the
    config rebuilt from the card (the profiler's) builds the same model."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    config = json.loads(path.read_text())

    def count(kwargs):
        kwargs = dict(kwargs)
        built = transformers.AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
        with torch.device("meta"):
            return sum(p.numel() for p in transformers.AutoModelForCausalLM.from_config(built).parameters())

    card = load_card(str(path))
    assert count(config) == card.num_params
    assert count(to_hf_config(card)) == card.num_params


def test_mla_parameters_by_hand():
    # tests/assets/families/deepseek_v3.json: h 64, 4 heads, q rank 40, kv rank 24, rope 8, nope 16, v 12.
    # Attention per layer: q_a 40x64 = 2,560; q_a norm 40; q_b (4 x 24) x 40 = 3,840; kv_a (24 + 8) x 64 =
    # 2,048; kv_a norm 24; kv_b 4 x (16 + 12) x 24 = 2,688; o 64 x (4 x 12) = 3,072 -> 14,272.
    # Layer 0 dense (intermediate 96): 3 x 64 x 96 = 18,432. Layers 1-2 MoE: router 4 x 64 = 256; 4
    # experts of width 48: 4 x 3 x 64 x 48 = 36,864; one shared expert of width 48: 9,216 -> 46,336.
    # Norms 2 x 64 per layer. Embeddings and lm_head 2 x 128 x 64 = 16,384; final norm 64.
    card = load_card(str(Path(__file__).parent / "assets" / "families" / "deepseek_v3.json"))
    layers = 3 * (14_272 + 128) + 18_432 + 2 * 46_336
    assert card.num_params == layers + 16_384 + 64 == 170_752
    assert [(n, g.layer_specs[0].moe) for n, g in card.layer_groups] == [(1, False), (2, True)]


def test_gpt_oss_parameters_by_hand():
    # tests/assets/families/gpt_oss.json: h 64, 4 heads x 16, 2 kv heads, 4 experts of width 96, biases.
    # Attention: sinks 4; q 64x64 + 64 = 4,160; k, v 32x64 + 32 = 2,080 each; o 64x64 + 64 = 4,160 ->
    # 12,484. Router 4x64 + 4 = 260; experts 4 x (2 x 96 x 64 + 192 + 64 x 96 + 64) = 4 x 18,688 =
    # 74,752; norms 128 -> 87,624 per layer; 2 layers, embeddings and lm_head 2 x 128 x 64, final
    # norm 64: 191,696.
    card = load_card(str(Path(__file__).parent / "assets" / "families" / "gpt_oss.json"))
    assert card.num_params == 2 * 87_624 + 16_384 + 64 == 191_696
    assert [s.mixer for s in card.layer_specs] == ["sliding", "full"]


# Published totals, each from its model card or paper (the card's source comment names it).
PUBLISHED = {
    "qwen3-8b": 8.2e9, "qwen3-30b-a3b": 30.5e9, "qwen3-235b-a22b": 235e9, "gemma-3-27b": 27e9,
    "llama-4-maverick": 400e9, "deepseek-v3": 671e9, "deepseek-v2-lite": 15.7e9, "gpt-oss-20b": 20.9e9,
    "gpt-oss-120b": 116.8e9, "glm-4.5-air": 106e9, "qwen1.5-moe-a2.7b": 14.3e9, "ernie-4.5-0.3b": 0.36e9,
    "lfm2-1.2b": 1_170_340_608,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_cards_match_their_published_sizes(name):
    # the published figures are rounded to the digits given: within 1% (LFM2's card gives it exactly)
    assert load_card(name).num_params == pytest.approx(PUBLISHED[name], rel=0.01)
    assert load_card("lfm2-1.2b").num_params == 1_170_340_608


def test_mla_caches_the_latent():
    # transformers 5 caches DeepSeek's normalised latent (kv_lora_rank 512) and rotary key (64) per
    # token and layer, as a serving engine does: 4 x 1,024 positions x 27 layers x 576 x 2 B.
    card = load_card("deepseek-v2-lite")
    w = Workload(batch=4, seq=1024, gen=1)
    assert card.cache_widths == (512, 64)
    assert kv_cache_bytes(card, w, 1024) == 4 * 1024 * 27 * 576 * 2 == 127_401_984


def test_conv_layers_keep_a_fixed_state():
    # lfm2-1.2b: 10 conv layers hold hidden 2,048 x kernel 3 per sequence in bf16; 6 attention layers
    # hold 8 kv heads x 64 per token for K and V.
    card = load_card("lfm2-1.2b")
    w = Workload(batch=2)
    conv = 10 * 2 * 2048 * 3 * 2
    assert kv_cache_bytes(card, w, 100) == conv + 6 * 2 * 100 * 2 * 512 * 2
    assert kv_cache_bytes(card, w, 1000) - kv_cache_bytes(card, w, 100) == 6 * 2 * 900 * 2 * 512 * 2


def test_sliding_layers_hold_the_prompt_until_the_first_decode_step():
    # gemma-3-1b: 22 sliding layers (window 512) and 4 global, 1 kv head x 256 in bf16. Right after the
    # prefill of 2,048 tokens every layer holds all of them; after a decode step a sliding layer holds
    # its window (measured on the H200: 22 x 16 MiB sliding caches at the prefill's peak, 16 sequences).
    card = load_card("gemma-3-1b")
    w = Workload(batch=16, seq=2048, gen=64)
    per_position = 16 * 2 * 256 * 2
    assert kv_cache_bytes(card, w, 2048, windowed=False) == 26 * 2048 * per_position
    assert kv_cache_bytes(card, w, 2111) == (4 * 2111 + 22 * 512) * per_position
    # the decode phase spans the first step, whose sliding caches still hold the prompt until each
    # layer's own update: the larger of the two
    phases, _ = inference_phases(card, w)
    assert [p.components.get("kv_cache") for p in phases[1:]] == [26 * 2048 * per_position] * 2


def test_gpt_oss_runs_eager_and_says_so():
    est = estimate(load_card("gpt-oss-20b"), Workload(batch=1, seq=256, gen=8))
    assert est.workload.attention == "eager"
    assert est.warnings[0] == "transformers has no SDPA attention for gpt_oss: estimated with eager attention"


def test_llama4_runs_every_expert():
    # Llama 4's experts are batched matmuls over all 16 experts for every token: the MoE's transient
    # grows with the experts, not with the one routed per token: 15 more copies x 2 B x (5,120 +
    # 4 x 8,192) per token x 1,024 tokens = 1,163,919,360 B.
    card = load_card("benchmarks/cards/llama-4-scout-2l.yaml")
    w = Workload(batch=1, seq=1024, gen=1)
    routed_only = replace(card, moe_all_experts=False)
    extra = estimate(card, w).peak_allocated_bytes - estimate(routed_only, w).peak_allocated_bytes
    assert extra == 15 * 2 * (5120 + 4 * 8192) * 1024 == 1_163_919_360


def test_unknown_model_type_names_as_family():
    with pytest.raises(InputError) as exc:
        card_from_hf_config({"model_type": "my_llama"}, "cfg")
    assert str(exc.value).startswith("cfg: model_type 'my_llama' is not supported; supported: llama, ")
    assert str(exc.value).endswith(" (--as-family NAME reads it as one of them)")


def test_as_family_reads_a_renamed_architecture(tmp_path):
    config = json.loads((Path(__file__).parent / "assets" / "families" / "qwen3.json").read_text())
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config | {"model_type": "my_qwen3_finetune"}))
    card = load_card(str(path), as_family="qwen3")
    assert card.num_params == 102_848
    assert card.notes == ("read model_type 'my_qwen3_finetune' as family 'qwen3' (--as-family): its layers are "
                          "assumed to be qwen3's",)
    with pytest.raises(InputError, match=r"^--as-family: unknown family 'qwen9'; supported: llama, "):
        load_card(str(path), as_family="qwen9")
    with pytest.raises(InputError, match=r"^--as-family applies to a config.json or a Hub ID, not to a card$"):
        load_card("qwen3-8b", as_family="qwen3")


def test_a_file_that_is_no_card_says_so(tmp_path):
    other = tmp_path / "passwd"
    other.write_text("root:x:0:0\n")
    with pytest.raises(InputError) as exc:
        load_card(str(other))
    assert str(exc.value) == f"{other}: not a model card (.yaml) or a Hugging Face config.json"


def test_layer_types_are_validated():
    card = load_card("gemma-3-1b")
    data = {k: getattr(card, k) for k in ("name", "family", "source", "hidden_size", "intermediate_size",
                                           "num_layers", "num_heads", "vocab_size", "max_position_embeddings")}
    with pytest.raises(InputError) as exc:
        card_from_mapping(data | {"layer_types": ["sliding", "mamba"]}, "x.yaml")
    assert str(exc.value) == ("x.yaml: layer_types: entries must be among full, sliding, chunked, nope, conv, linear, "
                              "got ['sliding', 'mamba']")
    with pytest.raises(InputError) as exc:
        card_from_mapping(data | {"layer_types": ["sliding", "full"]}, "x.yaml")
    assert str(exc.value) == "x.yaml: layer_types: sliding layers need sliding_window"


@pytest.mark.parametrize("path", FAMILY_CONFIGS, ids=lambda p: p.stem)
def test_profiler_builds_every_family_on_the_cpu(path):
    """The profiler runs each family (tiny, fp32, on the CPU) and trains exactly the card's parameters."""
    pytest.importorskip("transformers")
    from llmcalc.profile.runner import run_profile

    card = load_card(str(path))
    m = run_profile(card, Workload(mode="train", dtype="fp32", batch=2, seq=16), device="cpu")
    frozen = sum(p.numel for p in card.parameters() if p.kind == "frozen")  # ERNIE's score-correction bias
    assert m.trainable_params == card.num_params - frozen
    assert [p.name for p in m.phases] == ["load", "forward", "backward", "optimizer_step"]
    m = run_profile(card, Workload(mode="infer", dtype="fp32", batch=2, seq=16, gen=4), device="cpu")
    assert [p.name for p in m.phases] == ["load", "prefill", "decode"]


GDN = Path(__file__).parent / "assets" / "families" / "qwen3_5_text.json"


def test_gated_delta_net_parameters_by_hand():
    # tests/assets/families/qwen3_5_text.json: h 64, layers [linear, full] x 2, 4 heads x 16 (2 kv),
    # Gated DeltaNet with 2 key heads x 8 and 4 value heads x 12: key dim 16, value dim 48, conv dim
    # 2 x 16 + 48 = 80. Linear layer: in_proj_qkv 80 x 64 = 5,120; in_proj_z 48 x 64 = 3,072; in_proj_b
    # and in_proj_a 4 x 64 = 256 each; conv1d 80 x 1 x 4 = 320; dt_bias, A_log 4 each; the gated norm 12;
    # out_proj 64 x 48 = 3,072 -> 12,116. Full layer: q_proj with its gate 2 x 64 x 64 = 8,192; k, v
    # 32 x 64 = 2,048 each; o 64 x 64 = 4,096; q/k norms 16 each -> 16,416. MLP 3 x 64 x 96 = 18,432;
    # norms 128. Embeddings and lm_head 2 x 128 x 64 = 16,384; final norm 64.
    card = load_card(str(GDN))
    assert [s.mixer for s in card.layer_specs] == ["linear", "full", "linear", "full"]
    layers = 2 * (12_116 + 18_432 + 128) + 2 * (16_416 + 18_432 + 128)
    assert card.num_params == layers + 16_384 + 64 == 147_752


def test_gated_delta_net_state_and_prefill_peak_by_hand():
    from llmcalc.memory import _layer_peak, linear_state_bytes
    card = load_card(str(GDN))
    linear = next(g for _, g in card.layer_groups if g.layer_specs[0].mixer == "linear")
    w = Workload(batch=2, seq=128, gen=1)
    # state per sequence and layer: conv 80 channels x kernel 4 x 2 B = 640; recurrent fp32
    # 4 value heads x 8 x 12 x 4 B = 1,536
    assert linear_state_bytes(linear, w) == 640 + 1_536
    # cache: 2 sequences x (2 linear layers x 2,176 + 2 full layers x 128 positions x (32 + 32) x 2 B)
    assert kv_cache_bytes(card, w, 128) == 2 * (2 * 2_176 + 2 * 128 * 64 * 2) == 74_240
    # per token beside the layer's input (bf16): z 48, the conv's output 80, b, a, beta 3 x 4 -> 140 x 2 B;
    # g 4 x 4 B; q and k repeated to the 4 value heads 2 x 4 x 8 x 2 B = 128 -> 424. The chunked delta
    # rule in fp32 per value head: 6 key-wide (8), 4 value-wide (12), 3 chunk-wide (64) and 4 scalars:
    # 4 x 4 x (48 + 48 + 192 + 4) = 4,672. Held: 2 residual copies (256), the residual and the norm's
    # output (128 + 128), less the one the layer works on (128): 5,480.
    assert _layer_peak(linear, w) == 424 + 4_672 + 256 + 128 == 5_480
    # 100 tokens pad to two chunks of 64: the fp32 part scales by 128 / 100 (ceil(4,672 x 1.28) = 5,981)
    assert _layer_peak(linear, replace(w, seq=100)) == 424 + 5_981 + 384


def test_qwen3_5_multimodal_config_reads_its_text_model():
    nested = {"model_type": "qwen3_5", "tie_word_embeddings": False,
              "text_config": json.loads(GDN.read_text()) | {"model_type": "qwen3_5_text"}}
    assert card_from_hf_config(nested, "x").num_params == 147_752


def test_linear_layers_need_their_shape():
    card = load_card("gemma-3-1b")
    data = {k: getattr(card, k) for k in ("name", "family", "source", "hidden_size", "intermediate_size",
                                           "num_layers", "num_heads", "vocab_size", "max_position_embeddings")}
    with pytest.raises(InputError) as exc:
        card_from_mapping(data | {"layer_types": ["linear", "full"], "conv_kernel": 4}, "x.yaml")
    assert str(exc.value) == ("x.yaml: layer_types: linear layers need conv_kernel, linear_key_heads, "
                              "linear_value_heads, linear_key_head_dim, linear_value_head_dim")
    shape = {"conv_kernel": 4, "linear_key_heads": 3, "linear_value_heads": 4, "linear_key_head_dim": 8,
             "linear_value_head_dim": 8}
    with pytest.raises(InputError) as exc:
        card_from_mapping(data | {"layer_types": ["linear", "full"]} | shape, "x.yaml")
    assert str(exc.value) == "x.yaml: linear_key_heads: 3 does not divide linear_value_heads 4"


# The text models of Qwen3.5/3.6 (benchmarks/serve/qwen35-configs.md: the Hub's safetensors totals less
# the vision tower and the one MTP layer, e.g. Qwen3.5-0.8B 873,438,784 - 100,592,896 - 20,452,864).
QWEN35_TEXT = {"qwen3.5-0.8b": 752_393_024, "qwen3.5-2b": 1_881_825_088, "qwen3.5-4b": 4_205_751_296,
               "qwen3.5-9b": 8_953_803_264, "qwen3.5-27b": 26_895_998_464, "qwen3.6-27b": 26_895_998_464,
               "qwen3.5-35b-a3b": 34_660_610_688, "qwen3.6-35b-a3b": 34_660_610_688,
               "qwen3.5-122b-a10b": 122_111_526_912, "qwen3.5-397b-a17b": 396_346_350_336}


@pytest.mark.parametrize("name", sorted(QWEN35_TEXT))
def test_qwen3_5_cards_count_the_published_text_models_exactly(name):
    assert load_card(name).num_params == QWEN35_TEXT[name]


def test_gated_delta_net_saved_for_backward_by_hand():
    from llmcalc.memory import _dtypes, _gated_delta_net_saved
    card = load_card(str(GDN))
    linear = next(g for _, g in card.layer_groups if g.layer_specs[0].mixer == "linear")
    w = Workload(mode="train", batch=2, seq=128)
    # bf16, per token: the projection output and the conv's output (2 x 80), beta (4) and out_proj's
    # input (48) x 2 B = 424; the decay's fp32 terms 8 x 4 = 32; the gated norm's fp32 input, gate and
    # SiLU(gate) and two bf16 products 48 x (12 + 4) = 768 -> 1,224. The delta rule in fp32 per value
    # head (4): eight key-wide (8) and three value-wide (12) tensors, five chunk-wide (64), a state
    # per 64 positions (8 x 12 / 64 = 1.5) and six scalars: 4 x 4 x 427.5 = 6,840.
    assert _gated_delta_net_saved(linear, w, _dtypes(w)) == 1_224 + 6_840 == 8_064
    # training through a hybrid is estimated (and larger with a longer prompt)
    assert estimate(card, w).peak_allocated_bytes < estimate(card, replace(w, seq=256)).peak_allocated_bytes


def test_qwen3_5_hub_config_counts_its_vision_tower_and_reads_autoround():
    # Qwen3.6-27B's multimodal config: the vision tower (27 blocks of 1,152, merger to 5,120) is
    # 460,730,096 parameters (benchmarks/serve/qwen35-configs.md: patch 1,770,624 + positions 2,654,208
    # + blocks 411,466,608 + merger 44,838,656), which serving loads beside the text model
    text = {"model_type": "qwen3_5_text", "hidden_size": 5120, "intermediate_size": 17408, "num_hidden_layers": 64,
            "num_attention_heads": 24, "num_key_value_heads": 4, "head_dim": 256, "linear_num_value_heads": 48}
    autoround = {"quant_method": "auto-round", "bits": 4, "group_size": 128, "sym": True,
                 "packing_format": "auto_round:auto_gptq", "block_name_to_quantize": "model.language_model.layers",
                 "extra_config": {r".*linear_attn\.in_proj_a.*": {"bits": 16}, "model.language_model.layers.0.mlp.down_proj": {"bits": 16}}}
    card = card_from_hf_config({"model_type": "qwen3_5", "tie_word_embeddings": False, "text_config": text,
                                "vision_config": {"out_hidden_size": 5120}, "quantization_config": autoround}, "x")
    assert card.num_params == 26_895_998_464 and card.vision_params == 460_730_096
    # AutoRound's GPTQ packing: int4 in groups of 128; the modules extra_config keeps at 16 bits skipped
    assert card.quantization == "gptq-int4-g128"
    assert card.quant_skip == ("re:.*linear_attn\\.in_proj_a.*", "model.language_model.layers.0.mlp.down_proj", "lm_head")
    from llmcalc.cards import skipped
    names = {p.name: p for p in card.parameters()}
    assert skipped(names["layers.5.linear_attn.in_proj_a"], card.quant_skip)
    assert not skipped(names["layers.5.linear_attn.in_proj_qkv"], card.quant_skip)
    assert skipped(names["layers.0.down_proj"], card.quant_skip) and not skipped(names["layers.1.down_proj"], card.quant_skip)
