"""config.json -> card."""

from pathlib import Path

import pytest

from llmcalc.errors import InputError
from llmcalc.hf import card_from_hf_config
from llmcalc.resolve import load_card

ASSETS = Path(__file__).parent / "assets"


def test_config_directory_loads():
    card = load_card(str(ASSETS / "tiny-qwen2"))
    assert (card.name, card.family, card.kv_heads, card.qkv_bias, card.tie_word_embeddings) == (
        "tiny-qwen2", "qwen2", 2, True, True)
    assert card.sliding_window is None  # use_sliding_window: false
    # embed 512*64 = 32,768; per layer q 64*64+64, k 32*64+32, v 32*64+32, o 64*64 -> 12,416;
    # MLP 3*64*176 = 33,792; norms 128 -> 46,336 x 2 = 92,672; final norm 64. Tied: 125,504.
    assert card.num_params == 125_504


def test_config_file_path_loads():
    assert load_card(str(ASSETS / "tiny-qwen2" / "config.json")).num_layers == 2


def test_unsupported_model_type():
    with pytest.raises(InputError, match=r"unsupported_config.json: model_type 't5' is not supported; supported: llama, "):
        load_card(str(ASSETS / "unsupported_config.json"))


def test_malformed_json():
    with pytest.raises(InputError, match=r"malformed_config.json: not valid JSON \(line 2: "):
        load_card(str(ASSETS / "malformed_config.json"))


def test_missing_required_key():
    with pytest.raises(InputError, match=r"^cfg: missing key 'hidden_size' for model_type 'llama'$"):
        card_from_hf_config({"model_type": "llama"}, "cfg")


def test_gpt2_config_defaults():
    card = card_from_hf_config({"model_type": "gpt2"}, "gpt2/config.json")
    assert card.num_params == 124_439_808


def test_old_falcon_model_type():
    card = card_from_hf_config({"model_type": "RefinedWebModel", "hidden_size": 4544, "n_layer": 32,
                                "num_attention_heads": 71, "vocab_size": 65024, "multi_query": True,
                                "parallel_attn": True}, "falcon/config.json")
    assert card.num_params == 6_921_720_704
