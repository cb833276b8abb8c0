"""`llmcalc watch -- CMD`: run the user's own command and measure its memory (docs/watch.md).

GPU memory comes from NVML: every process of the command's tree (the command, its children and
theirs: each rank of a torchrun job), per GPU, sampled every `interval` seconds. NVML's
per-process figure is what nvidia-smi shows for the process: the CUDA context, the caching
allocator's segments and any other driver allocation, i.e. the estimate's device total. With the
opt-in hook (llmcalc/watch_hook/sitecustomize.py on the child's PYTHONPATH) each Python process
that used CUDA through torch also reports torch's own peak allocated and reserved at exit: the
estimate's peak allocated and peak allocated + allocator reserve.

On the CPU (`--device cpu`) the same loop sums the resident set (RSS) of the tree from /proc.

No torch, no rich here: the CLI renders, the API can call `run` directly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llmcalc.errors import EnvironmentProblem, InputError

if TYPE_CHECKING:
    from llmcalc.api import EstimateResult

HOOK_DIR = Path(__file__).resolve().parent / "watch_hook"
NO_GPU = "no NVIDIA GPU here: NVML found none (use --device cpu to watch the process's CPU memory)"


@dataclass(frozen=True)
class DeviceSample:
    index: int
    name: str
    total_bytes: int
    process_bytes: int  # summed over the command's processes on this device (NVML per process, or RSS)
    used_bytes: int  # the whole device's used memory (every process, and the driver's own)
    matched: bool  # whether any of the command's processes was seen on this device
    per_process: dict[int, int] = field(default_factory=dict)  # pid -> bytes, the command's processes


@dataclass
class DevicePeak:
    index: int
    name: str
    total_bytes: int
    baseline_used_bytes: int  # the device's used memory before the command started
    peak_process_bytes: int = 0
    current_process_bytes: int = 0
    peak_used_bytes: int = 0
    matched: bool = False
    process_peaks: dict[int, int] = field(default_factory=dict)  # pid -> its own peak on this device

    @property
    def peak_bytes(self) -> int:
        """The command's peak on this device: its processes' own figure where NVML names them,
        else the device's used memory above what it was before the command (a container whose
        PIDs NVML cannot see)."""
        return self.peak_process_bytes if self.matched else max(0, self.peak_used_bytes - self.baseline_used_bytes)


@dataclass
class WatchResult:
    command: list[str]
    device: str  # cuda or cpu
    exit_code: int | None = None
    elapsed_s: float = 0.0
    samples: int = 0
    interrupted: bool = False
    devices: list[DevicePeak] = field(default_factory=list)
    torch: list[dict[str, Any]] = field(default_factory=list)  # one per process, from the hook

    def to_dict(self) -> dict[str, Any]:
        return {"command": self.command, "device": self.device, "exit_code": self.exit_code,
                "elapsed_s": round(self.elapsed_s, 3), "samples": self.samples, "interrupted": self.interrupted,
                "devices": [asdict(d) | {"peak_bytes": d.peak_bytes} for d in self.devices], "torch": self.torch}


class Sampler(Protocol):
    device: str

    def sample(self, pids: set[int]) -> list[DeviceSample]: ...

    def close(self) -> None: ...


class NvmlSampler:
    """Per-process GPU memory from NVML (what nvidia-smi lists)."""

    device = "cuda"

    def __init__(self) -> None:
        try:
            import pynvml
        except ImportError:
            raise EnvironmentProblem("llmcalc watch needs NVML's Python binding: pip install nvidia-ml-py") from None
        self.nvml = pynvml
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
        except pynvml.NVMLError:
            raise EnvironmentProblem(NO_GPU) from None
        if count == 0:
            pynvml.nvmlShutdown()
            raise EnvironmentProblem(NO_GPU)
        self.handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        self.names = [_text(pynvml.nvmlDeviceGetName(h)) for h in self.handles]

    def sample(self, pids: set[int]) -> list[DeviceSample]:
        nvml, out = self.nvml, []
        for index, handle in enumerate(self.handles):
            info = nvml.nvmlDeviceGetMemoryInfo(handle)
            per: dict[int, int] = {}
            try:
                procs = list(nvml.nvmlDeviceGetComputeRunningProcesses(handle))
            except nvml.NVMLError:
                procs = []
            for p in procs:
                if p.pid in pids:
                    per[p.pid] = per.get(p.pid, 0) + (p.usedGpuMemory or 0)
            out.append(DeviceSample(index, self.names[index], int(info.total), sum(per.values()), int(info.used),
                                    bool(per), per))
        return out

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except self.nvml.NVMLError:
            pass


class RssSampler:
    """The command's CPU memory: the resident set of every process of the tree (/proc)."""

    device = "cpu"

    def __init__(self) -> None:
        if not Path("/proc/self/statm").exists():
            raise EnvironmentProblem("--device cpu reads /proc: Linux only")
        self.page = os.sysconf("SC_PAGE_SIZE")
        self.total = os.sysconf("SC_PHYS_PAGES") * self.page

    def sample(self, pids: set[int]) -> list[DeviceSample]:
        per = {}
        for pid in pids:
            try:
                per[pid] = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * self.page
            except (OSError, IndexError, ValueError):  # the process has just ended
                pass
        rss = sum(per.values())
        return [DeviceSample(0, "cpu", self.total, rss, rss, bool(per), per)]

    def close(self) -> None:
        pass


def process_tree(root: int) -> set[int]:
    """root and every descendant, from /proc/*/stat's parent ids."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        if pid not in tree:
            tree.add(pid)
            todo.extend(children.get(pid, ()))
    return tree


def run(command: Sequence[str], sampler: Sampler, interval: float = 0.2, torch_hook: bool = False,
        on_sample: Callable[[WatchResult], None] | None = None, stdout: Any = None) -> WatchResult:
    """Run `command`, sample it until it ends, and return the peaks. Ctrl-C stops the command
    (SIGINT, then SIGTERM and SIGKILL if it lingers) and still returns what was measured."""
    if not command:
        raise InputError("watch needs a command after --, e.g. llmcalc watch -- python train.py")
    if interval <= 0:
        raise InputError(f"--interval must be a positive number of seconds, got {interval}")
    result = WatchResult(command=list(command), device=sampler.device)
    baseline = sampler.sample(set())
    result.devices = [DevicePeak(s.index, s.name, s.total_bytes, s.used_bytes, peak_used_bytes=s.used_bytes)
                      for s in baseline]
    with tempfile.TemporaryDirectory(prefix="llmcalc-watch-") as hook_out:
        env = dict(os.environ)
        if torch_hook:
            env["PYTHONPATH"] = os.pathsep.join([str(HOOK_DIR), *filter(None, [env.get("PYTHONPATH")])])
            env["LLMCALC_WATCH_DIR"] = hook_out
        # A Ctrl-C while Popen runs would lose the child (forked, not yet returned) and leave it
        # holding our stdout; until Popen returns, SIGINT is only noted, then acted on.
        state = {"started": False, "pending": False}

        def on_sigint(signum: int, frame: Any) -> None:
            if state["started"]:
                raise KeyboardInterrupt
            state["pending"] = True

        # (not where Python's own handler is off: another thread, or SIGINT ignored by the caller)
        main = (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
        previous = signal.signal(signal.SIGINT, on_sigint) if main else None
        try:
            start = time.monotonic()
            try:
                child = subprocess.Popen(list(command), env=env, stdout=stdout)
            except FileNotFoundError:
                raise InputError(f"command not found: {command[0]}") from None
            except PermissionError:
                raise InputError(f"command is not executable: {command[0]}") from None
            state["started"] = True
            try:
                if state["pending"]:
                    raise KeyboardInterrupt
                while True:
                    _record(result, sampler.sample(process_tree(child.pid)))
                    result.elapsed_s = time.monotonic() - start
                    if on_sample:
                        on_sample(result)
                    if child.poll() is not None:
                        break
                    time.sleep(interval)
            except KeyboardInterrupt:
                result.interrupted = True
                _stop(child)
            finally:
                sampler.close()
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)
        result.elapsed_s = time.monotonic() - start
        code = child.returncode
        result.exit_code = 128 - code if code is not None and code < 0 else code  # a signal: the shell's 128+n
        result.torch = _hook_reports(Path(hook_out))
    return result


def _record(result: WatchResult, samples: list[DeviceSample]) -> None:
    result.samples += 1
    for s, peak in zip(samples, result.devices):
        peak.current_process_bytes = s.process_bytes
        peak.peak_process_bytes = max(peak.peak_process_bytes, s.process_bytes)
        peak.peak_used_bytes = max(peak.peak_used_bytes, s.used_bytes)
        peak.matched = peak.matched or s.matched
        for pid, used in s.per_process.items():
            if used:
                peak.process_peaks[pid] = max(peak.process_peaks.get(pid, 0), used)


def _stop(child: subprocess.Popen) -> None:
    """The terminal's Ctrl-C already reached the child (same process group); send it anyway for
    a SIGINT that came another way, then escalate."""
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        if child.poll() is not None:
            return
        try:
            child.send_signal(sig)
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except KeyboardInterrupt:  # a second Ctrl-C: escalate at once
            continue


def _hook_reports(folder: Path) -> list[dict[str, Any]]:
    reports = []
    for path in sorted(folder.glob("torch-*.json")):
        try:
            reports.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return sorted(reports, key=lambda r: (str(r.get("rank") or ""), r.get("pid", 0)))


@dataclass(frozen=True)
class Comparison:
    label: str
    estimate_bytes: int
    measured_bytes: int

    @property
    def error_pct(self) -> float | None:
        return 100.0 * (self.estimate_bytes - self.measured_bytes) / self.measured_bytes if self.measured_bytes else None


def compare(result: WatchResult, est: EstimateResult) -> list[Comparison]:
    """The estimate (per GPU, i.e. per rank) against each GPU's and each process's measurements.
    Where several of the command's processes share a GPU (ranks placed on one device), each GPU
    process is compared with the estimate on its own; the CPU's resident set is the tree's sum."""
    rows = []
    what = "peak RSS" if result.device == "cpu" else "device total (NVML, peak)"
    for d in result.devices:
        gpu_procs = d.process_peaks if result.device == "cuda" else {}
        # processes the hook saw on this device, where NVML gave no per-process figures
        on_device = sum(1 for r in result.torch for dev in r.get("devices", []) if dev.get("name") == d.name
                        and dev.get("index") == d.index) if result.device == "cuda" else 0
        if len(gpu_procs) > 1:
            for pid, peak in sorted(gpu_procs.items()):
                rows.append(Comparison(f"{what}, {d.name} #{d.index}, pid {pid}", est.device_total_bytes, peak))
        elif d.peak_bytes and not gpu_procs and on_device > 1:
            rows.append(Comparison(f"{what}, {d.name} #{d.index}, {on_device} processes (estimate x {on_device})",
                                   on_device * est.device_total_bytes, d.peak_bytes))
        elif d.peak_bytes:
            rows.append(Comparison(f"{what}, {d.name} #{d.index}", est.device_total_bytes, d.peak_bytes))
    reserve = est.components.get("allocator_reserve", 0)
    for report in result.torch:
        who = f"rank {report['rank']}" if report.get("rank") is not None else f"pid {report.get('pid')}"
        for dev in report.get("devices", []):
            rows.append(Comparison(f"peak allocated (torch), {who}, cuda:{dev['index']}", est.peak_allocated_bytes,
                                   dev["peak_allocated_bytes"]))
            rows.append(Comparison(f"peak reserved (torch), {who}, cuda:{dev['index']}",
                                   est.peak_allocated_bytes + reserve, dev["peak_reserved_bytes"]))
    return rows


def _text(name: Any) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)

