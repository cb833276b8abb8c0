"""llmcalc: GPU memory, speed and hardware fit for LLM workloads.

The library (docs/api.md): llmcalc.estimate, throughput, plan, check, serve, models, gpus
(llmcalc/api.py), and llmcalc.track (llmcalc/tracking.py). Importing llmcalc loads none of them,
nor torch: each loads on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = ("estimate", "throughput", "plan", "check", "serve", "models", "gpus")
_ERRORS = ("LlmcalcError", "InputError", "EnvironmentProblem")
__all__ = [*_API, *_ERRORS, "track", "TrackerCallback"]


def __getattr__(name: str) -> Any:
    if name in _API:
        from llmcalc import api

        return getattr(api, name)
    if name in _ERRORS:
        from llmcalc import errors

        return getattr(errors, name)
    if name in ("track", "TrackerCallback"):
        from llmcalc import tracking

        return getattr(tracking, name)
    raise AttributeError(f"module 'llmcalc' has no attribute '{name}'")
