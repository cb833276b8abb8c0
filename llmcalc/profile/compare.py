"""Estimate vs measurement: one record per case, shared by `llmcalc profile` and the validation
script. Pure data; no torch."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from llmcalc.memory import MemoryBreakdown

if TYPE_CHECKING:
    from llmcalc.scale import ScaledEstimate


def pct_error(estimate: int, measured: int) -> float | None:
    """Signed error of the estimate, in percent of the measurement."""
    return None if not measured else 100.0 * (estimate - measured) / measured


def record(case: str, model: str, est: MemoryBreakdown | ScaledEstimate, measured: dict[str, Any]) -> dict[str, Any]:
    phases = {p.name: p.total for p in est.phases}
    est_doc = {
        "peak_allocated_bytes": est.peak_allocated_bytes,
        "device_total_bytes": est.device_total_bytes,
        "cuda_context_bytes": est.components["cuda_context"],
        "allocator_reserve_bytes": est.components["allocator_reserve"],
        "peak_phase": est.peak_phase,
        "components": est.components,
        "phases": phases,
    }
    errors = {
        "peak_allocated_pct": pct_error(est.peak_allocated_bytes, measured["peak_allocated_bytes"]),
        "device_total_pct": pct_error(est.device_total_bytes, measured["device_total_bytes"]),
    }
    return {
        "case": case,
        "model": model,
        "workload": asdict(est.workload),
        "env": measured.get("env", {}),
        "estimate": est_doc,
        "measured": measured,
        "error": errors,
    }
