"""MODEL -> ModelCard: a card name, a card file (.yaml), a config.json (the file or its
directory), or a Hugging Face Hub ID. Above cards.py and hf.py, which do not import each other."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from llmcalc.cards import ModelCard, card_names, cards_dir, load_card_file
from llmcalc.errors import InputError, close_names
from llmcalc.hf import card_from_hf_config


def load_card(model: str, revision: str | None = None, as_family: str | None = None) -> ModelCard:
    """The card MODEL names. `revision` applies to Hub IDs; `as_family` reads a config.json
    (local or from the Hub) as that family's, with a warning saying so."""
    path = Path(model)
    if path.is_dir():
        if (path / "config.json").is_file():
            return load_config_file(path / "config.json", as_family)
        raise InputError(f"{model}: a directory without a config.json")
    if path.is_file():
        if path.suffix == ".json":
            return load_config_file(path, as_family)
        if path.suffix in (".yaml", ".yml"):
            return _no_family(load_card_file(path), as_family)
        raise InputError(f"{model}: not a model card (.yaml) or a Hugging Face config.json")
    if path.suffix in (".json", ".yaml", ".yml"):
        raise InputError(f"{model}: no such file")
    if "/" in model:  # not a local path: a Hub ID (owner/name), or a mistyped path
        from llmcalc import hub  # only here: a card name never imports it (nor huggingface_hub)

        if hub.is_hub_id(model) and not model.startswith("."):
            return load_hub_card(model, revision, as_family)
        raise InputError(f"{model}: no such file, and not a Hub ID (owner/name)")
    card_path = cards_dir() / f"{model.lower()}.yaml"
    if card_path.is_file():
        card = load_card_file(card_path)
        if card.name != card_path.stem:
            raise InputError(f"{card_path}: name: '{card.name}' differs from the file name '{card_path.stem}'")
        return _no_family(card, as_family)
    hint = close_names(model.lower(), card_names())
    raise InputError(f"unknown model '{model}'" + (f"; closest: {hint}" if hint else "; see `llmcalc models`"))


def load_config_file(path: Path, as_family: str | None = None) -> ModelCard:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        line = f"line {exc.lineno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else "not text"
        raise InputError(f"{path}: not valid JSON ({line})") from None
    modelopt = path.parent / "hf_quant_config.json"
    if isinstance(config, dict) and modelopt.is_file():
        config = with_modelopt_config(config, modelopt.read_text(encoding="utf-8"), str(modelopt))
    return _with_family_note(card_from_hf_config(config, str(path), as_family), config, as_family)


def with_modelopt_config(config: dict, text: str, where: str) -> dict:
    """ModelOpt's first exports kept their quantization in hf_quant_config.json beside
    config.json ({"quantization": {"quant_algo": "NVFP4", "exclude_modules": [...]}}): read it as
    the quantization_config it later became."""
    if config.get("quantization_config"):
        return config
    try:
        block = json.loads(text).get("quantization") or {}
    except (json.JSONDecodeError, AttributeError):
        raise InputError(f"{where}: not valid JSON") from None
    return config | {"quantization_config": {"quant_method": "modelopt"} | dict(block)}


def load_hub_card(repo_id: str, revision: str | None = None, as_family: str | None = None) -> ModelCard:
    from llmcalc import hub

    config, where = hub.fetch_config(repo_id, revision)
    modelopt = hub.fetch_optional(repo_id, "hf_quant_config.json", revision)
    if modelopt is not None:
        config = with_modelopt_config(config, modelopt, f"{repo_id}/hf_quant_config.json")
    config = {"_name_or_path": repo_id} | {k: v for k, v in config.items() if k != "_name_or_path"}
    source = f"https://huggingface.co/{repo_id}" + (f"/tree/{revision}" if revision else "")
    card = _with_family_note(card_from_hf_config(config, source, as_family), config, as_family)
    card = replace(card, name=repo_id, path=where)
    note = hub.parameter_note(card.num_params, hub.checkpoint_parameters(repo_id, revision))
    return replace(card, notes=card.notes + (note,)) if note else card


def _with_family_note(card: ModelCard, config: dict, as_family: str | None) -> ModelCard:
    if as_family is None:
        return card
    return replace(card, notes=card.notes + (
        f"read model_type {config.get('model_type')!r} as family {as_family!r} (--as-family): its layers are "
        f"assumed to be {as_family}'s",))


def _no_family(card: ModelCard, as_family: str | None) -> ModelCard:
    if as_family is not None:
        raise InputError("--as-family applies to a config.json or a Hub ID, not to a card")
    return card
