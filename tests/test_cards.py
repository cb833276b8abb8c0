"""Cards: every card loads, parameter counts are exact, bad cards are rejected with one message."""

from pathlib import Path

import pytest

from llmcalc.cards import card_from_mapping, cards_dir, load_card_file
from llmcalc.errors import InputError
from llmcalc.hf import to_hf_config
from llmcalc.resolve import load_card

ASSETS = Path(__file__).parent / "assets"
CARD_FILES = sorted(Path(cards_dir()).rglob("*.yaml"))


def test_there_are_enough_cards():
    assert len(CARD_FILES) >= 15


@pytest.mark.parametrize("path", CARD_FILES, ids=lambda p: p.stem)
def test_every_card_loads(path):
    card = load_card_file(path)
    assert card.name == path.stem
    assert card.source.startswith("https://huggingface.co/")
    assert card.num_params > 0


def test_llama_2_7b_parameter_count():
    # embed 32000*4096 = 131,072,000; per layer attention 4*4096^2 = 67,108,864,
    # MLP 3*4096*11008 = 135,266,304, 2 norms 8,192 -> 202,383,360 x 32 = 6,476,267,520;
    # final norm 4,096; untied lm_head 131,072,000. Total 6,738,415,616 (Meta's "7B").
    assert load_card("llama-2-7b").num_params == 6_738_415_616


def test_gpt2_parameter_count():
    # wte 50257*768 = 38,597,376; wpe 1024*768 = 786,432; per layer: 2 LayerNorms 3,072,
    # c_attn 768*2304+2304 = 1,771,776, attn c_proj 768*768+768 = 590,592,
    # c_fc 768*3072+3072 = 2,362,368, mlp c_proj 3072*768+768 = 2,360,064 -> 7,087,872 x 12 =
    # 85,054,464; ln_f 1,536; lm_head tied. Total 124,439,808 (HF num_parameters()).
    assert load_card("gpt2").num_params == 124_439_808


def test_falcon_7b_is_multi_query():
    card = load_card("falcon-7b")
    assert card.kv_heads == 1 and card.dim_head == 64
    # fused qkv: 4544 x (71 + 2) * 64 = 21,229,568 per layer
    qkv = next(p for p in card.parameters() if p.name == "layers.0.qkv_proj")
    assert qkv.numel == 21_229_568


def test_moe_card_counts_every_expert():
    card = load_card("mixtral-8x7b")
    assert card.num_experts == 8 and card.experts_per_token == 2
    # 46,702,792,704: Mistral AI's "46.7B total parameters"
    assert card.num_params == 46_702_792_704


def test_unknown_model_suggests_close_names():
    with pytest.raises(InputError, match=r"unknown model 'llama2-7b'; closest: llama-2-7b"):
        load_card("llama2-7b")


def test_unknown_keys_are_listed_sorted():
    with pytest.raises(InputError) as exc:
        load_card_file(ASSETS / "invalid_unknown_keys.yaml")
    assert str(exc.value) == f"{ASSETS / 'invalid_unknown_keys.yaml'}: unknown keys: n_embd, rope_theta"


def test_every_bad_field_in_one_message():
    with pytest.raises(InputError) as exc:
        load_card_file(ASSETS / "invalid_types.yaml")
    assert str(exc.value) == (
        f"{ASSETS / 'invalid_types.yaml'}: hidden_size: must be a positive integer, got -64; "
        "intermediate_size: must be a positive integer, got '128'; "
        "tie_word_embeddings: must be true or false, got 'yes'; "
        "norm: must be one of rmsnorm, rmsnorm_fp32, layernorm, layernorm_nobias, got 'batchnorm'"
    )


def test_inconsistent_shapes():
    with pytest.raises(InputError) as exc:
        load_card_file(ASSETS / "invalid_shapes.yaml")
    assert str(exc.value) == (
        f"{ASSETS / 'invalid_shapes.yaml'}: num_heads: 3 does not divide hidden_size 100 (set head_dim); "
        "num_kv_heads: 2 does not divide num_heads 3; "
        "num_experts and experts_per_token: give both or neither"
    )


def test_malformed_yaml():
    with pytest.raises(InputError, match=r"invalid_yaml.yaml: not valid YAML \(line 3\)"):
        load_card_file(ASSETS / "invalid_yaml.yaml")


def test_missing_keys():
    with pytest.raises(InputError, match=r"x.yaml: missing keys: source, hidden_size"):
        card_from_mapping({"name": "x", "family": "llama", "intermediate_size": 1, "num_layers": 1,
                           "num_heads": 1, "vocab_size": 1, "max_position_embeddings": 1}, "x.yaml")


def test_missing_file():
    with pytest.raises(InputError, match=r"nowhere/config.json: no such file"):
        load_card("nowhere/config.json")


@pytest.mark.parametrize("path", CARD_FILES, ids=lambda p: p.stem)
def test_parameter_count_matches_transformers(path):
    """The card's count equals what transformers builds on the meta device."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    card = load_card_file(path)
    kwargs = to_hf_config(card)
    config = transformers.AutoConfig.for_model(kwargs.pop("model_type"), **kwargs)
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    assert sum(p.numel() for p in model.parameters()) == card.num_params


def test_softcapping_must_be_a_positive_number():
    card = load_card("gemma-2-2b")
    data = {k: getattr(card, k) for k in ("name", "family", "source", "hidden_size", "intermediate_size", "num_layers",
                                           "num_heads", "vocab_size", "max_position_embeddings")}
    with pytest.raises(InputError) as exc:
        card_from_mapping(data | {"final_logit_softcapping": -30}, "x.yaml")
    assert str(exc.value) == "x.yaml: final_logit_softcapping: must be a positive number, got -30"
    assert card_from_mapping(data | {"final_logit_softcapping": 30}, "x.yaml").final_logit_softcapping == 30
