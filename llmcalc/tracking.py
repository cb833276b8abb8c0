"""`llmcalc.track()`: the peak memory of each phase of the user's own loop, against the estimate.

    with llmcalc.track(model="llama-3.2-1b", mode="train", batch=4, seq=1024) as tracker:
        for batch in loader:
            with tracker.phase("forward"):
                loss = model(**batch).loss
            with tracker.phase("backward"):
                loss.backward()
            with tracker.phase("optimizer"):
                opt.step(); opt.zero_grad(set_to_none=True)
    print(tracker.report())

A phase is an interval: its peak is torch.cuda.max_memory_allocated() over it (the peak
statistics are reset when it opens), the largest over every time it ran. The estimate's phases
are moments; each interval is compared with the largest moment it holds (llmcalc.profile.compare
.INTERVALS, the profiler's own mapping), so "backward" is compared with the estimate's backward
start, first layer and end. Phases with other names are measured and shown without an estimate.

torch is imported when the tracker starts, not when llmcalc is.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from llmcalc.errors import EnvironmentProblem, InputError

if TYPE_CHECKING:
    from llmcalc.api import EstimateResult

# The names a loop is likely to use for the profiler's intervals.
ALIASES = {"optimizer": "optimizer_step", "step": "optimizer_step", "optim": "optimizer_step",
           "generate": "decode", "model_load": "load"}
GiB = 2**30
# device -> (peak allocated, peak reserved) of this process, carried over every tracker's resets
# of torch's peak statistics: `llmcalc watch --torch-hook` reads it at exit (llmcalc/watch_hook).
PROCESS_PEAKS: dict[int, tuple[int, int]] = {}


@dataclass
class PhasePeak:
    name: str
    runs: int = 0
    peak_allocated_bytes: int = 0
    peak_reserved_bytes: int = 0
    estimate_bytes: int | None = None

    @property
    def error_pct(self) -> float | None:
        if self.estimate_bytes is None or not self.peak_allocated_bytes:
            return None
        return 100.0 * (self.estimate_bytes - self.peak_allocated_bytes) / self.peak_allocated_bytes


@dataclass
class TrackReport:
    phases: list[PhasePeak]
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    estimate_peak_allocated_bytes: int | None = None
    estimate_reserved_bytes: int | None = None  # peak allocated + allocator reserve
    device: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"device": self.device, "peak_allocated_bytes": self.peak_allocated_bytes,
                "peak_reserved_bytes": self.peak_reserved_bytes,
                "estimate_peak_allocated_bytes": self.estimate_peak_allocated_bytes,
                "estimate_reserved_bytes": self.estimate_reserved_bytes,
                "phases": [{"name": p.name, "runs": p.runs, "peak_allocated_bytes": p.peak_allocated_bytes,
                            "peak_reserved_bytes": p.peak_reserved_bytes, "estimate_bytes": p.estimate_bytes,
                            "error_pct": p.error_pct} for p in self.phases],
                "notes": list(self.notes)}

    def __str__(self) -> str:
        def pct(e: int | None, m: int) -> str:
            return f"{100 * (e - m) / m:+.1f}%" if e is not None and m else "-"

        def g(n: int | None) -> str:
            return "-" if n is None else f"{n / GiB:.2f}"

        lines = [f"{'phase':<22}{'runs':>6}{'measured GiB':>14}{'estimate GiB':>14}{'error':>9}"]
        for p in self.phases:
            lines.append(f"{p.name:<22}{p.runs:>6}{g(p.peak_allocated_bytes):>14}{g(p.estimate_bytes):>14}"
                         f"{pct(p.estimate_bytes, p.peak_allocated_bytes):>9}")
        lines.append(f"{'peak allocated':<28}{g(self.peak_allocated_bytes):>14}{g(self.estimate_peak_allocated_bytes):>14}"
                     f"{pct(self.estimate_peak_allocated_bytes, self.peak_allocated_bytes):>9}")
        lines.append(f"{'peak reserved':<28}{g(self.peak_reserved_bytes):>14}{g(self.estimate_reserved_bytes):>14}"
                     f"{pct(self.estimate_reserved_bytes, self.peak_reserved_bytes):>9}")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


class Tracker:
    """Records per-phase peaks on one CUDA device; see the module docstring."""

    def __init__(self, estimate: EstimateResult | None = None, device: Any = None) -> None:
        self.estimate = estimate
        self.device = device
        self.phases: dict[str, PhasePeak] = {}
        self._open: str | None = None
        self._torch: Any = None
        self._overall_allocated = 0
        self._overall_reserved = 0
        self._index = 0

    # -- lifetime
    def start(self) -> Tracker:
        try:
            import torch
        except ImportError:
            raise EnvironmentProblem("llmcalc.track needs torch: pip install '.[profile]'") from None
        if not torch.cuda.is_available():
            raise EnvironmentProblem("llmcalc.track measures a CUDA device, and torch sees none here")
        self._torch = torch
        if self.device is None:
            self.device = torch.cuda.current_device()
        index = self.device if isinstance(self.device, int) else torch.device(self.device).index
        self._index = torch.cuda.current_device() if index is None else index
        return self

    def __enter__(self) -> Tracker:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self._open is not None:
            self.end()
        self._fold()

    def _fold(self) -> None:
        """Carry the peak statistics into the overall peaks before they are reset."""
        cuda = self._torch.cuda
        self._overall_allocated = max(self._overall_allocated, cuda.max_memory_allocated(self.device))
        self._overall_reserved = max(self._overall_reserved, cuda.max_memory_reserved(self.device))
        alloc, reserved = PROCESS_PEAKS.get(self._index, (0, 0))
        PROCESS_PEAKS[self._index] = (max(alloc, self._overall_allocated), max(reserved, self._overall_reserved))

    # -- phases
    def begin(self, name: str) -> None:
        """Open a phase (closing the open one): for callbacks that cannot use `with`."""
        if self._torch is None:
            raise InputError("the tracker is not started: use `with llmcalc.track(...) as tracker:`")
        if self._open is not None:
            self.end()
        cuda = self._torch.cuda
        cuda.synchronize(self.device)
        self._fold()
        cuda.reset_peak_memory_stats(self.device)
        self._open = name

    def end(self) -> None:
        if self._open is None:
            return
        cuda = self._torch.cuda
        cuda.synchronize(self.device)
        p = self.phases.setdefault(self._open, PhasePeak(self._open))
        p.runs += 1
        p.peak_allocated_bytes = max(p.peak_allocated_bytes, cuda.max_memory_allocated(self.device))
        p.peak_reserved_bytes = max(p.peak_reserved_bytes, cuda.max_memory_reserved(self.device))
        self._open = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.begin(name)
        try:
            yield
        finally:
            self.end()

    # -- the comparison
    def report(self) -> TrackReport:
        if self._torch is not None:
            self._fold()
        phases = list(self.phases.values())
        est_peak = est_reserved = None
        notes = []
        if self.estimate is not None:
            from llmcalc.profile.compare import phase_intervals

            intervals = phase_intervals(self.estimate.memory)  # type: ignore[arg-type]
            for p in phases:
                p.estimate_bytes = intervals.get(ALIASES.get(p.name, p.name))
            est_peak = self.estimate.peak_allocated_bytes
            est_reserved = est_peak + self.estimate.components.get("allocator_reserve", 0)
            unknown = [p.name for p in phases if p.estimate_bytes is None]
            if unknown:
                notes.append(f"no estimate for {', '.join(unknown)}: the estimate's phases are "
                             f"{', '.join(sorted(intervals))}")
        name = self._torch.cuda.get_device_name(self.device) if self._torch is not None else ""
        return TrackReport(phases, self._overall_allocated, self._overall_reserved, est_peak, est_reserved, name, notes)


def track(model: Any = None, *, device: Any = None, **workload: Any) -> Tracker:
    """A tracker for a `with` block; given a model and the workload options of
    `llmcalc.estimate`, its report compares each phase with the estimate."""
    estimate = None
    if model is not None:
        from llmcalc.api import estimate as run_estimate

        estimate = run_estimate(model, **workload)
    elif workload:
        raise InputError("workload options need model=: llmcalc.track(model='llama-3.1-8b', batch=8, ...)")
    return Tracker(estimate, device)


def _callback_class() -> type:
    """transformers' TrainerCallback, marking each step's forward, backward and optimizer step
    (built on first use so that llmcalc does not import transformers)."""
    try:
        from transformers import TrainerCallback
    except ImportError:
        raise EnvironmentProblem("TrackerCallback needs transformers: pip install '.[profile]'") from None

    class TrackerCallback(TrainerCallback):  # type: ignore[misc, valid-type]
        """`Trainer(..., callbacks=[llmcalc.TrackerCallback(tracker)])`: the model's forward ends
        the "forward" phase (a forward hook) and opens "backward"; the optimizer step is its own
        phase; evaluation is "eval". The tracker starts with training if it is not started."""

        def __init__(self, tracker: Tracker | None = None) -> None:
            self.tracker = tracker or Tracker()
            self._hook: Any = None
            self._training = False

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, **kw: Any) -> None:
            if self.tracker._torch is None:
                self.tracker.start()
            if model is not None and self._hook is None:
                self._hook = model.register_forward_hook(self._forward_done)

        def _forward_done(self, module: Any, inputs: Any, output: Any) -> None:
            if self._training and self.tracker._open == "forward":
                self.tracker.begin("backward")

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self._training = True
            self.tracker.begin("forward")

        def on_substep_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.tracker.begin("forward")  # the next micro-batch of gradient accumulation

        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.tracker.begin("optimizer_step")

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.tracker.end()
            self._training = False

        def on_evaluate(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.tracker.end()

        def on_prediction_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.tracker._open != "eval":
                self.tracker.begin("eval")

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.tracker.end()
            if self._hook is not None:
                self._hook.remove()
                self._hook = None
            self.tracker._fold()

    return TrackerCallback


_CALLBACK: type | None = None


def __getattr__(name: str) -> Any:
    global _CALLBACK
    if name == "TrackerCallback":
        if _CALLBACK is None:
            _CALLBACK = _callback_class()
        return _CALLBACK
    raise AttributeError(f"module 'llmcalc.tracking' has no attribute '{name}'")
