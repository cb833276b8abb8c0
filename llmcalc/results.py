"""The result types of llmcalc.api's throughput, plan, check and serve (docs/api.md), in their
own module so that `llmcalc estimate` does not pay for building them at start-up. Import them
from llmcalc.api (which forwards) or from here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmcalc.capacity import CheckResult
    from llmcalc.cards import ModelCard
    from llmcalc.hardware import GpuSpec
    from llmcalc.memory import MemoryBreakdown
    from llmcalc.planning import Option
    from llmcalc.serving import ServeEstimate, Sizing
    from llmcalc.speed import Throughput
    from llmcalc.workload import Workload


@dataclass(frozen=True)
class SweepRow:
    batch: int
    memory: MemoryBreakdown
    throughput: Throughput  # its numbers mean something only where `fits`
    fits: bool  # the device total fits the device's memory


@dataclass(frozen=True)
class ThroughputResult:
    """`throughput`: per batch size, the memory and the speed on one device."""

    model: ModelCard
    gpu: GpuSpec
    rows: tuple[SweepRow, ...]

    def to_dict(self) -> dict[str, Any]:
        from llmcalc import contract

        return contract.sweep_doc([(r.batch, r.memory, r.throughput) for r in self.rows], self.gpu, self.model)


@dataclass(frozen=True)
class PlanResult:
    """`plan`: one option per device, best first (fits, meets the target, cost, speed)."""

    model: ModelCard
    workload: Workload
    options: tuple[Option, ...]
    target_tokens_per_s: float | None = None

    @property
    def best(self) -> Option | None:
        return self.options[0] if self.options and self.options[0].fits else None

    def to_dict(self) -> dict[str, Any]:
        from llmcalc import contract

        return contract.plan_doc(list(self.options), self.model, self.workload, self.target_tokens_per_s)


@dataclass(frozen=True)
class CheckReport:
    """`check`: a verdict per deployment; `ok` when every one passes."""

    results: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.results)

    def to_dict(self) -> dict[str, Any]:
        from llmcalc import contract

        return contract.check_doc(list(self.results))

    def junit_xml(self) -> str:
        from llmcalc.capacity import junit_xml

        return junit_xml(list(self.results))


@dataclass(frozen=True)
class ServeResult:
    """`serve`: a serving engine's start-up accounting per rank (docs/serve.md); with
    `concurrency`, the sizing that holds it."""

    model: ModelCard
    workload: Workload
    serve: ServeEstimate
    gpu: GpuSpec | None = None
    sizing: Sizing | None = None
    warnings: tuple[str, ...] = ()

    @property
    def starts(self) -> bool:
        return self.serve.starts

    @property
    def error(self) -> str | None:
        return self.serve.error

    @property
    def kv_cache_tokens(self) -> int:
        return self.serve.kv_cache_tokens

    @property
    def max_concurrency(self) -> float:
        return self.serve.max_concurrency

    def to_dict(self) -> dict[str, Any]:
        from llmcalc import contract

        return contract.serve_doc(self.serve, self.model, self.workload, self.gpu, list(self.warnings), self.sizing)
