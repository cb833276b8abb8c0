"""Hugging Face Hub IDs: config.json through huggingface_hub and its cache, and the checkpoint's
own parameter count from its safetensors metadata where the Hub answers.

Imported only when MODEL is a Hub ID (`org/name`): a card estimate never pays for
huggingface_hub. The library reads HF_TOKEN (gated repositories), HF_HOME / HF_HUB_CACHE (the
cache) and HF_HUB_OFFLINE=1 (the cache alone) itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from llmcalc.errors import EnvironmentProblem, InputError

# owner/name as the Hub spells repository ids (huggingface_hub.utils.validate_repo_id's rule)
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def is_hub_id(model: str) -> bool:
    return bool(HUB_ID.match(model)) and ".." not in model and not model.endswith((".json", ".yaml", ".yml"))


def _hub() -> Any:
    try:
        import huggingface_hub
    except ImportError:
        raise EnvironmentProblem("Hub IDs need huggingface_hub (reinstall llmcalc from source: pip install .)") from None
    return huggingface_hub


def fetch_config(repo_id: str, revision: str | None = None) -> tuple[dict[str, Any], str]:
    """config.json of a Hub repository (from the cache when offline) and the path it was read
    from. Every failure is one InputError naming the repository."""
    hub = _hub()
    from huggingface_hub import errors

    at = f"{repo_id}" + (f"@{revision}" if revision else "")
    try:
        path = hub.hf_hub_download(repo_id, "config.json", revision=revision)
    except errors.GatedRepoError:
        raise InputError(f"{at}: gated repository; accept its terms on the Hub and set HF_TOKEN") from None
    except errors.RepositoryNotFoundError:
        raise InputError(f"{at}: no such repository on the Hub (or it is private: set HF_TOKEN)") from None
    except errors.RevisionNotFoundError:
        raise InputError(f"{at}: no such revision") from None
    except errors.LocalEntryNotFoundError:
        raise InputError(f"{at}: config.json is not in the Hugging Face cache ({hub.constants.HF_HUB_CACHE}) and "
                         "the Hub cannot be reached (HF_HUB_OFFLINE=1 or no network)") from None
    except errors.EntryNotFoundError:
        raise InputError(f"{at}: the repository has no config.json") from None
    except (errors.HfHubHTTPError, OSError) as exc:
        raise InputError(f"{at}: the Hub did not answer ({type(exc).__name__})") from None
    try:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"{at}: config.json is not valid JSON ({exc})") from None
    return config, str(path)


def fetch_optional(repo_id: str, filename: str, revision: str | None = None) -> str | None:
    """A small file of the repository (cache first), or None where it has none or the Hub cannot
    say (ModelOpt's hf_quant_config.json)."""
    hub = _hub()
    try:
        path = hub.hf_hub_download(repo_id, filename, revision=revision)
        return Path(path).read_text(encoding="utf-8")
    except Exception:  # absent, offline and not cached, unreachable: the file is optional
        return None


def checkpoint_parameters(repo_id: str, revision: str | None = None) -> dict[str, int] | None:
    """Stored elements per dtype from the safetensors headers (huggingface_hub's
    get_safetensors_metadata: two small range requests), or None offline or without them."""
    hub = _hub()
    if hub.constants.HF_HUB_OFFLINE:
        return None
    try:
        meta = hub.get_safetensors_metadata(repo_id, revision=revision)
    except Exception:  # no safetensors, no network, a gated file: the cross-check is optional
        return None
    return {str(k): int(v) for k, v in meta.parameter_count.items()}


def parameter_note(card_params: int, stored: dict[str, int] | None) -> str | None:
    """Compare the card's count with the checkpoint's: equal, or the difference said."""
    if not stored:
        return None
    total = sum(stored.values())
    dtypes = ", ".join(f"{k} {v:,}" for k, v in sorted(stored.items()))
    if total == card_params:
        return None
    return (f"the checkpoint stores {total:,} elements ({dtypes}), the model as transformers builds it has "
            f"{card_params:,} parameters ({100 * (card_params - total) / total:+.2f}%): packed quantized weights, "
            "a vision tower or extra prediction layers in the checkpoint, or buffers, differ")
