"""GpuSpec: the GPU and CPU catalog, loaded from data and validated on load."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from llmcalc.diskcache import YamlError, load_yaml
from llmcalc.errors import InputError, close_names

MiB = 2**20
RATE_DTYPES = ("fp32", "tf32", "fp16", "bf16", "fp8", "int8")
_KEYS = {"id", "name", "match", "memory_mib", "cuda_total_mib", "bandwidth_tbs", "link_gbs", "tflops", "unconfirmed",
         "source"}
KINDS = ("gpu", "cpu")
CATALOG = Path(__file__).parent / "data" / "gpus.yaml"


@dataclass(frozen=True)
class GpuSpec:
    """One catalog device: memory, memory bandwidth and dense peak rates, with their sources.
    A CPU's memory is a typical installed RAM; its bandwidth is the DRAM channels'."""

    id: str
    name: str
    memory_bytes: int
    bytes_per_s: float  # peak memory bandwidth (HBM/GDDR for a GPU, DRAM for a CPU)
    peak_flops: dict[str, float]  # dense peak, FLOP/s (OP/s for int8), per dtype
    unconfirmed: tuple[str, ...]
    source: str
    kind: str = "gpu"
    match: tuple[str, ...] = ()  # substrings of the driver's device name
    link_bytes_per_s: float = 0.0  # GPU-to-GPU bandwidth, one direction (NVLink, else PCIe); 0: unknown
    # The total that CUDA reports (torch.cuda.mem_get_info), below nvidia-smi's: what serving
    # engines size their budgets from. 0: not known (the catalog then offers memory_bytes).
    cuda_total_bytes: int = 0


def _gpu_from_mapping(entry: Any, where: str, kind: str = "gpu") -> tuple[GpuSpec | None, list[str]]:
    if not isinstance(entry, dict):
        return None, [f"{where}: must be a mapping"]
    problems = []
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        problems.append(f"{where}: unknown keys: {', '.join(unknown)}")
    for key in ("id", "name", "source"):
        if not isinstance(entry.get(key), str) or not entry.get(key):
            problems.append(f"{where}.{key}: must be a non-empty string")
    memory = entry.get("memory_mib")
    if isinstance(memory, bool) or not isinstance(memory, int) or memory <= 0:
        problems.append(f"{where}.memory_mib: must be a positive integer, got {memory!r}")
    bandwidth = entry.get("bandwidth_tbs")
    if isinstance(bandwidth, bool) or not isinstance(bandwidth, (int, float)) or bandwidth <= 0:
        problems.append(f"{where}.bandwidth_tbs: must be a positive number, got {bandwidth!r}")
    rates = entry.get("tflops", {})
    if not isinstance(rates, dict):
        problems.append(f"{where}.tflops: must be a mapping of dtype to TFLOP/s")
        rates = {}
    for dtype, value in rates.items():
        if dtype not in RATE_DTYPES:
            problems.append(f"{where}.tflops.{dtype}: unknown dtype (one of {', '.join(RATE_DTYPES)})")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            problems.append(f"{where}.tflops.{dtype}: must be a positive number, got {value!r}")
    cuda_total = entry.get("cuda_total_mib", 0)
    if isinstance(cuda_total, bool) or not isinstance(cuda_total, (int, float)) or cuda_total < 0:
        problems.append(f"{where}.cuda_total_mib: must be a non-negative number, got {cuda_total!r}")
    link = entry.get("link_gbs", 0)
    if isinstance(link, bool) or not isinstance(link, (int, float)) or link < 0:
        problems.append(f"{where}.link_gbs: must be a non-negative number, got {link!r}")
    if not rates and not problems:
        problems.append(f"{where}.tflops: needs at least one dtype's rate")
    if problems:
        return None, problems
    return GpuSpec(
        id=entry["id"], name=entry["name"], memory_bytes=memory * MiB,
        bytes_per_s=float(bandwidth) * 1e12,
        peak_flops={k: float(v) * 1e12 for k, v in rates.items()},
        unconfirmed=tuple(entry.get("unconfirmed", ())), source=entry["source"], kind=kind,
        match=tuple(entry.get("match", ())), link_bytes_per_s=float(entry.get("link_gbs", 0)) * 1e9,
        cuda_total_bytes=int(float(entry.get("cuda_total_mib", 0)) * MiB),
    ), []


def load_catalog(path: Path = CATALOG) -> dict[str, GpuSpec]:
    try:
        data = load_yaml(path)
    except (OSError, YamlError) as exc:
        raise InputError(f"{path}: cannot load the GPU catalog ({exc})") from None
    entries = data.get("gpus") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InputError(f"{path}: expected a 'gpus' list")
    cpus = data.get("cpus", [])
    if not isinstance(cpus, list):
        raise InputError(f"{path}: 'cpus' must be a list")
    gpus: dict[str, GpuSpec] = {}
    problems: list[str] = []
    for key, kind, items in (("gpus", "gpu", entries), ("cpus", "cpu", cpus)):
        for n, entry in enumerate(items):
            gpu, bad = _gpu_from_mapping(entry, f"{key}[{n}]", kind)
            problems += bad
            if gpu is not None:
                if gpu.id in gpus:
                    problems.append(f"{key}[{n}].id: duplicate id '{gpu.id}'")
                gpus[gpu.id] = gpu
    if problems:
        raise InputError(f"{path}: " + "; ".join(problems))
    return gpus


@cache
def catalog() -> dict[str, GpuSpec]:
    return load_catalog()


def get_gpu(gpu_id: str) -> GpuSpec:
    gpus = catalog()
    try:
        return gpus[gpu_id.lower()]
    except KeyError:
        hint = close_names(gpu_id.lower(), gpus)
        raise InputError(f"unknown GPU '{gpu_id}'" + (f"; closest: {hint}" if hint else "; see `llmcalc gpus`")) from None


def gpu_for_device_name(device_name: str) -> GpuSpec | None:
    """The catalog GPU whose longest `match` string occurs in the driver's device name."""
    import re

    hits = [(len(m), g) for g in catalog().values() for m in g.match
            if re.search(re.escape(m) + r"(?![A-Za-z0-9])", device_name)]  # "L4" is not "L40S"
    return max(hits, key=lambda hit: hit[0])[1] if hits else None
