"""The one exception type of the core, and the exit codes the CLI maps it to.

Exit codes (documented in docs/cli.md):
  0  success (and, for `estimate --gpu`, the verdict is printed, fit or not)
  1  a capacity check failed (reserved for `check`)
  2  bad input: unknown model, dtype or GPU, bad sizes, malformed card or config.json
  3  the profiler ran out of GPU memory (the result is still reported)
  4  the environment cannot run the command: no GPU, a missing extra, a driver problem
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_OOM = 3
EXIT_ENVIRONMENT = 4


class LlmcalcError(Exception):
    """Any error llmcalc reports to the user as one line."""

    exit_code = EXIT_BAD_INPUT


class InputError(LlmcalcError):
    """Bad input: the message names what is wrong."""

    exit_code = EXIT_BAD_INPUT


class EnvironmentProblem(LlmcalcError):
    """The machine cannot run this (no GPU, missing optional dependency, driver)."""

    exit_code = EXIT_ENVIRONMENT


def close_names(name: str, choices: Iterable[str], n: int = 3) -> str:
    """Up to n close matches, comma separated, or '' when nothing is close: names that start
    with `name` first (a prefix like 'h100' means the H100 ids), then difflib's ratio order."""
    choices = sorted(choices)
    prefixed = [c for c in choices if c.startswith(name)]
    similar = [c for c in difflib.get_close_matches(name, choices, n=n, cutoff=0.5) if c not in prefixed]
    return ", ".join((prefixed + similar)[:n])
