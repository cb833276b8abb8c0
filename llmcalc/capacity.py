"""Capacity checks: does a deployment fit its hardware, with headroom, at a speed floor?

A deployment is a model on one or more GPUs (or a CPU) of the catalog with a workload. It fits
when the estimate's device total per GPU (what nvidia-smi would show) leaves at least `headroom`
of the device's memory free: device_total <= memory x (1 - headroom). Inference on several GPUs
is tensor parallel, training data parallel (scale.py). With `min_tokens_per_s` it must also reach
that aggregate decode rate (the throughput model's wall clock).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from llmcalc.diskcache import YamlError, load_yaml
from llmcalc.errors import InputError
from llmcalc.memory import Workload, estimate
from llmcalc.resolve import load_card

_WORKLOAD_KEYS = {f.name for f in fields(Workload)}
_DEPLOYMENT_KEYS = {"name", "model", "gpu", "gpus", "headroom", "min_tokens_per_s"} | _WORKLOAD_KEYS


@dataclass(frozen=True)
class Deployment:
    """One line of a check: what runs, where, and the margins it must keep."""

    name: str
    model: str
    gpu: str
    workload: Workload
    gpus: int = 1
    headroom: float = 0.0  # fraction of the device's memory that must stay free
    min_tokens_per_s: float | None = None


@dataclass(frozen=True)
class CheckResult:
    """The verdict for one deployment, with the numbers behind it."""

    deployment: Deployment
    gpu_name: str
    memory_bytes: int
    budget_bytes: int  # memory x (1 - headroom)
    device_total_bytes: int
    weights_bytes: int
    peak_phase: str
    tokens_per_s: float | None
    reasons: tuple[str, ...]  # empty when it passes

    @property
    def ok(self) -> bool:
        return not self.reasons


def parse_headroom(value: str | float | int, where: str = "--headroom") -> float:
    """'10%', '0.1' or 0.1 -> 0.1; must be in [0, 1)."""
    text = str(value).strip()
    try:
        fraction = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise InputError(f"{where}: expected a percentage such as 10% or a fraction such as 0.1, got '{value}'") from None
    if not 0 <= fraction < 1:
        raise InputError(f"{where}: must be at least 0% and below 100%, got '{value}'")
    return fraction


def check(dep: Deployment) -> CheckResult:
    from llmcalc.hardware import get_gpu
    from llmcalc.speed import calibrated_context, efficiency_for, throughput

    card = load_card(dep.model)
    spec = get_gpu(dep.gpu)
    if dep.gpus < 1:
        raise InputError(f"{dep.name}: gpus must be a positive integer, got {dep.gpus}")
    if dep.gpus > 1:
        # Inference splits the model tensor-parallel over the GPUs; training replicates it (data
        # parallel). Per-GPU memory from scale.py.
        from llmcalc.scale import Scale, scaled_estimate

        split = Scale(gpus=dep.gpus, tp=dep.gpus) if dep.workload.mode == "infer" else Scale(gpus=dep.gpus)
        try:
            mem = scaled_estimate(card, dep.workload, split, calibrated_context(spec))
        except InputError as exc:
            raise InputError(f"{dep.name}: {exc}") from None
    else:
        mem = estimate(card, dep.workload, calibrated_context(spec))
    budget = int(spec.memory_bytes * (1 - dep.headroom))
    reasons = []
    weights = mem.components["weights"]
    if weights > spec.memory_bytes:
        reasons.append(f"can never fit: the weights alone take {weights / 2**30:.2f} GiB of the "
                       f"{spec.memory_bytes / 2**30:.2f} GiB {spec.name}")
    elif mem.device_total_bytes > budget:
        reasons.append(f"needs {mem.device_total_bytes / 2**30:.2f} GiB, over the {budget / 2**30:.2f} GiB budget "
                       f"({spec.memory_bytes / 2**30:.2f} GiB less {dep.headroom:.0%} headroom)")
    rate = None
    if dep.workload.mode == "infer" and not reasons:
        try:
            rate = throughput(card, dep.workload, spec, efficiency_for(spec), dep.gpus).decode_tokens_per_s
        except InputError as exc:  # no interconnect figure for a tensor-parallel group
            raise InputError(f"{dep.name}: {exc}") from None
        if dep.min_tokens_per_s is not None and rate < dep.min_tokens_per_s:
            reasons.append(f"decodes {rate:,.0f} tokens/s, below the floor of {dep.min_tokens_per_s:,.0f}")
    elif dep.min_tokens_per_s is not None and dep.workload.mode != "infer":
        raise InputError(f"{dep.name}: min_tokens_per_s applies to inference only")
    return CheckResult(deployment=dep, gpu_name=spec.name + (f" x {dep.gpus}" if dep.gpus > 1 else ""),
                       memory_bytes=spec.memory_bytes, budget_bytes=budget,
                       device_total_bytes=mem.device_total_bytes, weights_bytes=weights, peak_phase=mem.peak_phase,
                       tokens_per_s=rate, reasons=tuple(reasons))


def load_check_file(path: str) -> list[Deployment]:
    """A YAML file: `deployments:`, a list of mappings with name, model, gpu and optionally gpus,
    headroom, min_tokens_per_s and any workload option (mode, dtype, batch, seq, gen, ...).
    Every bad field of every deployment is named in one error."""
    file = Path(path)
    try:
        data = load_yaml(file)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    except YamlError as exc:
        raise InputError(f"{path}: not valid YAML ({exc})") from None
    items = data.get("deployments") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise InputError(f"{path}: expected a non-empty 'deployments' list")
    problems: list[str] = []
    deployments: list[Deployment] = []
    for n, item in enumerate(items):
        where = f"deployments[{n}]"
        if not isinstance(item, dict):
            problems.append(f"{where}: must be a mapping")
            continue
        if isinstance(item.get("name"), str):
            where = f"deployment '{item['name']}'"
        bad = _deployment_problems(item)
        if bad:
            problems += [f"{where}: {b}" for b in bad]
            continue
        try:
            deployments.append(deployment_from_mapping(item, n))
        except InputError as exc:
            problems.append(f"{where}: {exc}")
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))
    return deployments


def _deployment_problems(item: dict[str, Any]) -> list[str]:
    bad = []
    unknown = sorted(set(item) - _DEPLOYMENT_KEYS)
    if unknown:
        bad.append(f"unknown keys: {', '.join(unknown)}")
    for key in ("model", "gpu"):
        if not isinstance(item.get(key), str) or not item.get(key):
            bad.append(f"{key}: required, a non-empty string")
    for key in ("batch", "seq", "gen", "beams", "gpus"):
        value = item.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            bad.append(f"{key}: must be an integer, got {value!r}")
    floor = item.get("min_tokens_per_s")
    if floor is not None and (isinstance(floor, bool) or not isinstance(floor, (int, float)) or floor <= 0):
        bad.append(f"min_tokens_per_s: must be a positive number, got {floor!r}")
    return bad


def deployment_from_mapping(item: dict[str, Any], index: int = 0) -> Deployment:
    from llmcalc.memory import validate_workload

    options = {k: v for k, v in item.items() if k in _WORKLOAD_KEYS}
    for key in ("dtype", "autocast", "kv_dtype", "optimizer", "attention", "mode", "allocator"):
        if isinstance(options.get(key), str):
            options[key] = options[key].lower()
    if options.get("mode", "infer") == "train":
        options["gen"] = 0
    workload = Workload(**options)
    validate_workload(workload)
    return Deployment(
        name=str(item.get("name") or f"{item['model']} on {item['gpu']}"),
        model=item["model"], gpu=item["gpu"], workload=workload, gpus=item.get("gpus", 1),
        headroom=parse_headroom(item.get("headroom", 0), "headroom"),
        min_tokens_per_s=item.get("min_tokens_per_s"),
    )


def junit_xml(results: list[CheckResult]) -> str:
    """JUnit XML: one testcase per deployment, a <failure> for each that does not pass."""
    from xml.sax.saxutils import escape, quoteattr

    failures = sum(1 for r in results if not r.ok)
    lines = ['<?xml version="1.0" encoding="UTF-8"?>',
             f'<testsuite name="llmcalc check" tests="{len(results)}" failures="{failures}">']
    for r in results:
        name = quoteattr(r.deployment.name)
        lines.append(f'  <testcase classname="llmcalc.check" name={name}>')
        if not r.ok:
            message = "; ".join(r.reasons)
            lines.append(f"    <failure message={quoteattr(message)}>{escape(message)}</failure>")
        lines.append("  </testcase>")
    lines.append("</testsuite>")
    return "\n".join(lines) + "\n"
