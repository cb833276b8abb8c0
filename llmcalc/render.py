"""Results -> rich tables. Nothing else in llmcalc prints; the JSON documents are llmcalc/contract.py's."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from llmcalc.cards import ModelCard
from llmcalc.contract import dumps, fit  # noqa: F401  (dumps: the CLI's --json)
from llmcalc.memory import COMPONENTS, MemoryBreakdown

if TYPE_CHECKING:  # the catalog and speed modules load only when a command names a GPU
    from llmcalc.api import EstimateResult
    from llmcalc.capacity import CheckResult
    from llmcalc.charts import Chart
    from llmcalc.hardware import GpuSpec
    from llmcalc.memory import Workload
    from llmcalc.planning import Option
    from llmcalc.scale import ScaledEstimate
    from llmcalc.serving import ServeEstimate, Sizing
    from llmcalc.speed import StepTime, Throughput
    from llmcalc.watch import Comparison, WatchResult

GiB = 2**30


def gib(n: int | float) -> str:
    return f"{n / GiB:,.2f}"


def print_throughput(console: Console, t: Throughput, m: MemoryBreakdown, gpu: GpuSpec) -> None:
    if m.device_total_bytes > gpu.memory_bytes:
        console.print(f"throughput on {gpu.name}: not computed, the workload does not fit")
        return
    table = Table(title=f"throughput on {gpu.name}", title_justify="left")
    table.add_column("")
    table.add_column("GPU kernels ms", justify="right")
    table.add_column("wall ms", justify="right")
    table.add_column("engine ms", justify="right")
    table.add_column("bound", justify="left")
    table.add_row("prefill (time to first token)", f"{t.prefill.kernel_s * 1e3:.2f}", f"{t.prefill.wall_s * 1e3:.2f}",
                  f"{t.engine_ttft_s * 1e3:.2f}", _bound(t.prefill))
    table.add_row(f"decode step (batch {t.seqs}, {t.decode_context} cached)", f"{t.decode.kernel_s * 1e3:.2f}",
                  f"{t.decode.wall_s * 1e3:.2f}", f"{t.engine_decode_step_s * 1e3:.2f}", _bound(t.decode))
    console.print(table)
    console.print(f"decode: {t.decode_tokens_per_s:,.0f} tokens/s in all, {t.per_sequence_tokens_per_s:,.1f} per sequence; "
                  f"MBU {100 * t.mbu:.0f}%, prefill MFU {100 * t.mfu:.0f}%; intensity {t.decode.intensity:.1f} FLOP/B "
                  f"vs ridge {t.ridge:.0f} FLOP/B")
    if t.engine_decode is not None:
        console.print(f"under a serving engine (vLLM's fused kernels from CUDA graphs, docs/engine-speed.md): "
                      f"{t.engine_decode_tokens_per_s:,.0f} tokens/s in all")
    console.print(f"efficiencies: {t.efficiency_source}")


def _bound(step: StepTime) -> str:
    bound = step.bound
    if step.host_s > step.kernel_s:
        bound += ", host-launch limited"
    return bound


def print_sweep(console: Console, rows: list[tuple[int, MemoryBreakdown, Throughput]], gpu: GpuSpec, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("batch", "memory GiB", "TTFT ms", "decode step ms", "tokens/s", "per seq tok/s", "bound", "MBU"):
        table.add_column(col, justify="left" if col == "bound" else "right")
    for batch, m, t in rows:
        if m.device_total_bytes > gpu.memory_bytes:
            table.add_row(str(batch), gib(m.device_total_bytes), "does not fit", "", "", "", "", "")
            continue
        table.add_row(str(batch), gib(m.device_total_bytes), f"{t.ttft_s * 1e3:.1f}", f"{t.decode.wall_s * 1e3:.2f}",
                      f"{t.decode_tokens_per_s:,.0f}", f"{t.per_sequence_tokens_per_s:,.1f}", _bound(t.decode),
                      f"{100 * t.mbu:.0f}%")
    console.print(table)
    console.print(f"{gpu.name}: {gib(gpu.memory_bytes)} GiB, {gpu.bytes_per_s / 1e12:g} TB/s. "
                  f"efficiencies: {rows[0][2].efficiency_source if rows else ''}")


def print_estimate(console: Console, m: MemoryBreakdown, card: ModelCard, gpu: GpuSpec | None, explain: bool) -> None:
    w = m.workload
    what = (f"{card.name} ({m.params / 1e9:.2f}B params) · {w.mode} · weights {w.dtype} · compute {w.compute_dtype}"
            f" · batch {w.batch} · seq {w.seq}" + (f" · gen {w.gen}" if w.mode == "infer" else ""))
    table = Table(title=what, title_justify="left")
    table.add_column("component")
    table.add_column("GiB", justify="right")
    table.add_column("share", justify="right")
    if explain:
        table.add_column("how", overflow="fold")
    for c in COMPONENTS:
        row = [c, gib(m.components[c]), f"{100 * m.components[c] / m.device_total_bytes:.1f}%"]
        if explain:
            row.append(m.explain.get(c, ""))
        table.add_row(*row)
    table.add_section()
    table.add_row("peak allocated", gib(m.peak_allocated_bytes), "", *([f"max over phases, set by {m.peak_phase}"] if explain else []))
    table.add_row("device total", gib(m.device_total_bytes), "100.0%", *(["peak allocated + reserve + CUDA context"] if explain else []))
    console.print(table)
    console.print("phases: " + ", ".join(f"{p.name} {gib(p.total)} GiB" for p in m.phases)
                  + f"  (peak: {m.peak_phase})")
    if gpu is not None:
        verdict = fit(m, gpu)
        word, style = ("fits", "green") if verdict["fits"] else ("does not fit", "red")
        console.print(Text.assemble(f"{gpu.name}: {gib(gpu.memory_bytes)} GiB → ", (word, style),
                                    f" ({gib(abs(verdict['free_bytes']))} GiB {'free' if verdict['fits'] else 'short'})"))


def print_models(console: Console, cards: list[ModelCard]) -> None:
    table = Table(title="model cards")
    for col, justify in (("name", "left"), ("family", "left"), ("params", "right"), ("layers", "right"),
                         ("hidden", "right"), ("heads/kv", "right"), ("vocab", "right"), ("context", "right")):
        table.add_column(col, justify=justify, no_wrap=col == "name")  # type: ignore[arg-type]
    for c in sorted(cards, key=lambda c: (c.family, c.num_params)):
        moe = f" ({c.num_experts}x{c.experts_per_token} MoE)" if c.is_moe else ""
        table.add_row(c.name, c.family + moe, f"{c.num_params:,}", str(c.num_layers), str(c.hidden_size),
                      f"{c.num_heads}/{c.kv_heads}", f"{c.vocab_size:,}", f"{c.max_position_embeddings:,}")
    console.print(table)


def print_gpus(console: Console, gpus: list[GpuSpec]) -> None:
    table = Table(title="GPU and CPU catalog (dense peaks; * = figure not confirmed)")
    for col in ("id", "kind", "name", "memory GiB", "TB/s", "fp32", "bf16/fp16 TFLOP/s", "fp8", "int8"):
        table.add_column(col, justify="left" if col in ("id", "kind", "name") else "right")
    for g in gpus:
        def rate(d: str, g: GpuSpec = g) -> str:
            return f"{g.peak_flops[d] / 1e12:g}" + ("*" if d in g.unconfirmed else "") if d in g.peak_flops else "-"

        table.add_row(g.id, g.kind, g.name, gib(g.memory_bytes), f"{g.bytes_per_s / 1e12:g}", rate("fp32"),
                      rate("bf16") if "bf16" in g.peak_flops else rate("fp16"), rate("fp8"), rate("int8"))
    console.print(table)


def print_calibration(console: Console, gpu_id: str, m: dict[str, Any], path: str) -> None:
    table = Table(title=f"calibration of {m['env'].get('gpu', m['env'].get('cpu', m['device']))} (stored as {gpu_id})",
                  title_justify="left")
    table.add_column("")
    table.add_column("measured", justify="right")
    table.add_row("copy bandwidth", f"{m['bytes_per_s'] / 1e12:.3f} TB/s")
    table.add_row("matrix-vector bandwidth", f"{m['gemv_bytes_per_s'] / 1e12:.3f} TB/s")
    for dtype, rate in m["matmul_flops"].items():
        table.add_row(f"{dtype} matmul", f"{rate / 1e12:.1f} TFLOP/s")
    table.add_row("small kernel (GPU)", f"{m['small_kernel_s'] * 1e6:.2f} us")
    table.add_row("host per kernel", f"{m['launch_s'] * 1e6:.1f} us")
    table.add_row("host per forward", f"{m['forward_s'] * 1e3:.2f} ms")
    if "cuda_context_bytes" in m:
        table.add_row("CUDA context", f"{m['cuda_context_bytes'] / 2**20:.0f} MiB")
    console.print(table)
    console.print(f"saved to {path}; estimates with --gpu {gpu_id} now use these figures")


def print_profile(console: Console, doc: dict[str, Any]) -> None:
    est, meas = doc["estimate"], doc["measured"]
    table = Table(title=f"{doc['model']} on {meas['env'].get('gpu', meas['device'])}: estimate vs measured",
                  title_justify="left")
    for col in ("", "estimate GiB", "measured GiB", "error"):
        table.add_column(col, justify="left" if not col else "right")

    def row(label: str, e: int, m: int) -> None:
        err = f"{100 * (e - m) / m:+.1f}%" if m else "-"
        table.add_row(label, gib(e), gib(m) if m else "-", err)

    if meas["device"] == "cuda":
        row("weights", est["components"]["weights"], meas["weights_bytes"])
        # the profiler reads the context before the workload's kernel modules load (they are in
        # the device total, in both columns)
        row("cuda context (before the workload's kernels)", est.get("cuda_context_base_bytes", est["cuda_context_bytes"]),
            meas["cuda_context_bytes"])
    intervals = est.get("phase_intervals") or est["phases"]
    for p in meas["phases"]:
        row(f"phase {p['name']} (peak allocated)", intervals.get(p["name"].split(" ")[0], 0), p["peak_allocated_bytes"])
    table.add_section()
    row(f"peak allocated (est. {est['peak_phase']}, meas. {meas['peak_phase']})", est["peak_allocated_bytes"],
        meas["peak_allocated_bytes"])
    row("peak reserved", est["peak_allocated_bytes"] + est["allocator_reserve_bytes"], meas["peak_reserved_bytes"])
    row("device total", est["device_total_bytes"], meas["device_total_bytes"])
    console.print(table)
    if meas["timings"]:
        console.print("times: " + ", ".join(f"{k} {v:.4g}" for k, v in meas["timings"].items()))
    for note in doc.get("notes", ()):
        console.print(f"note: {note}", markup=False, soft_wrap=True)


def print_check(console: Console, results: list[CheckResult]) -> None:
    table = Table(title="capacity check", title_justify="left")
    for col in ("deployment", "device", "needs GiB", "budget GiB", "tokens/s", "verdict"):
        table.add_column(col, justify="right" if "GiB" in col or col == "tokens/s" else "left")
    for r in results:
        rate = f"{r.tokens_per_s:,.0f}" if r.tokens_per_s is not None else "-"
        verdict = Text("pass", style="green") if r.ok else Text("FAIL: " + "; ".join(r.reasons), style="red")
        table.add_row(r.deployment.name, r.gpu_name, gib(r.device_total_bytes), gib(r.budget_bytes), rate, verdict)
    console.print(table)
    failed = sum(1 for r in results if not r.ok)
    console.print(f"{len(results) - failed} of {len(results)} deployments pass")


def print_plan(console: Console, options: list[Option], card: ModelCard, w: Workload, target: float | None) -> None:
    goal = f" · target {target:,.0f} tokens/s" if target else ""
    table = Table(title=f"{card.name} · weights {w.dtype} · prompt {w.seq} + output {w.gen}{goal}", title_justify="left")
    for col in ("", "device", "fits", "max batch", "max context", "batch", "TTFT ms", "tokens/s", "per seq",
                "$/h", "$/M tok", "paged seqs"):
        table.add_column(col, justify="left" if col in ("", "device", "fits") else "right")
    for n, o in enumerate(options):
        mark = "best" if n == 0 and o.meets_target else ""
        fits = "yes" if o.fits else (f"{o.devices} GPUs (tp {o.devices})" if o.devices else
                                     f"no (>= {o.min_devices} GPUs)" if o.min_devices > 1 else "no")
        s = o.speed
        cost = o.cost_per_million_tokens
        table.add_row(
            mark, o.gpu.id, fits, str(o.max_batch or "-"), f"{o.max_context:,}" if o.max_context else "-",
            str(s.seqs) if s else "-", f"{s.engine_ttft_s * 1e3:,.1f}" if s else "-",
            f"{s.engine_decode_tokens_per_s:,.0f}" if s else "-",
            f"{s.engine_decode_tokens_per_s / s.seqs:,.1f}" if s else "-",
            f"{o.price_per_hour:g}" if o.price_per_hour is not None else "-", f"{cost:.3f}" if cost is not None else "-",
            f"{o.serving.max_sequences:,}" if o.serving else "-")
    console.print(table)
    if card.is_moe:
        console.print("MoE: the routed experts as vLLM's Triton fused_moe runs them (within -17% to +16% on an H200, "
                      "docs/engine-moe.md); a published small-expert decode at batch 1 ran 2x slower than the whole "
                      "step predicted, not explained by the experts (docs/engine-speed-public.md)")
    console.print("speeds as a serving engine runs them (vLLM's fused kernels replayed from CUDA graphs, "
                  "docs/engine-speed.md); "
                  "paged seqs: sequences of prompt + output a paged KV cache holds at once "
                  f"(utilization {options[0].serving.utilization if options and options[0].serving else 0.9:g}, "
                  f"blocks of {options[0].serving.block_size if options and options[0].serving else 16}). "
                  "Several GPUs: the smallest tensor-parallel group (2, 4, 8) whose per-GPU memory fits, timed with "
                  "two all-reduces per layer at an assumed 80% of the catalog's interconnect; $/h is per GPU, $/M tok "
                  "for the group.")


_STYLES = {"weights": "blue", "gradients": "magenta", "optimizer": "red", "activations": "yellow",
           "kv_cache": "green", "cuda_context": "cyan", "allocator_reserve": "white"}


def print_chart(console: Console, chart: Chart, width: int = 60) -> None:
    """Horizontal bars, one per x value: stacked memory components with the capacity marked `|`,
    or decode tokens/s (engine and eager)."""
    console.print(Text(chart.title, style="bold"))
    label_w = max(len(f"{x:,}") for x in chart.xs)
    if chart.kind == "throughput":
        top = max([v for v in chart.engine_tokens_per_s if v is not None] or [1.0])
        for x, eng, eag in zip(chart.xs, chart.engine_tokens_per_s, chart.eager_tokens_per_s):
            line = Text(f"{x:>{label_w},} ")
            if eng is None:
                line.append("does not fit", style="red")
            else:
                line.append("█" * max(1, round(width * eng / top)), style="green")
                line.append(f" {eng:,.0f} tok/s (eager {eag:,.0f})")
            console.print(line, soft_wrap=True)
        console.print(f"x: {chart.x_label}; bars: serving-engine decode rate; eager: a generate() loop's wall clock")
        return
    totals = [sum(m.values()) for m in chart.memory]
    top = max(totals + [chart.capacity_bytes])
    mark = round(width * chart.capacity_bytes / top)
    for x, m, total in zip(chart.xs, chart.memory, totals):
        line = Text(f"{x:>{label_w},} ")
        cells: list[tuple[str, str]] = []
        for c in _STYLES:
            cells += [("█", _STYLES[c])] * round(width * m[c] / top)
        cells = cells[:width] + [(" ", "")] * (width - len(cells))
        cells.insert(mark, ("|", "bold"))
        for ch, style in cells:
            line.append(ch, style=style)
        line.append(f" {total / 2**30:,.1f} GiB" + ("" if total <= chart.capacity_bytes else "  over"))
        console.print(line, soft_wrap=True)
    legend = Text("legend: ")
    for c, style in _STYLES.items():
        legend.append("█", style=style)
        legend.append(f" {c}  ")
    legend.append(f"| device memory {chart.capacity_bytes / 2**30:,.1f} GiB")
    console.print(legend, soft_wrap=True)
    console.print(f"x: {chart.x_label}")


def print_scaled(console: Console, r: ScaledEstimate, card: ModelCard, w: Workload, gpu: GpuSpec | None) -> None:
    s = r.scale
    how = [f"{s.gpus} GPU{'s' if s.gpus > 1 else ''} (dp {s.dp} x tp {s.tp} x pp {s.pp})"]
    if s.stage:
        how.append(f"{'FSDP ' + (s.fsdp or '') if s.fsdp else 'ZeRO-' + str(s.zero)}")
    if s.lora_rank:
        how.append(f"{'QLoRA' if w.dtype == 'nf4' else 'LoRA'} r={s.lora_rank}")
    if s.offload:
        how.append(f"offload {s.offload}")
    table = Table(title=f"{card.name} · {w.mode} · weights {w.dtype} · micro-batch {w.batch} x accum {s.grad_accum} "
                        f"(global {r.global_batch}) · seq {w.seq} · " + ", ".join(how) + " · per GPU",
                  title_justify="left")
    table.add_column("component")
    table.add_column("GiB per GPU", justify="right")
    for c in COMPONENTS:
        table.add_row(c, gib(r.components[c]))
    table.add_section()
    table.add_row("peak allocated", gib(r.peak_allocated_bytes))
    table.add_row("device total", gib(r.device_total_bytes))
    console.print(table)
    console.print(f"peak phase: {r.peak_phase}; trainable parameters {r.trainable_params:,}"
                  + (f"; CPU memory for offload: {gib(r.cpu_bytes)} GiB per rank" if s.offload else ""))
    for note in r.notes:
        console.print(f"note: {note}")
    if gpu is not None:
        ok = r.device_total_bytes <= gpu.memory_bytes
        console.print(Text.assemble(f"{gpu.name}: {gib(gpu.memory_bytes)} GiB per GPU → ",
                                    ("fits", "green") if ok else ("does not fit", "red")))


def print_serve(console: Console, r: ServeEstimate, card: ModelCard, w: Workload, gpu: GpuSpec | None,
                warnings: list[str], sizing: Sizing | None = None) -> None:
    for warning in warnings:
        console.print(f"warning: {warning}", style="yellow")
    if sizing is not None:
        knob = "gpu_memory_utilization" if r.engine == "vllm" else "mem_fraction_static"
        console.print(f"{sizing.concurrency} requests of {r.max_model_len:,} tokens: TP {sizing.tp}, "
                      f"{knob} {sizing.memory_fraction:.2f}")
    table = Table(title=f"{card.name} on {r.engine} {r.version} · weights {w.dtype} · per GPU rank"
                        + (f" · {gpu.name}" if gpu else ""))
    table.add_column("item")
    table.add_column("value", justify="right")
    graphs = [("CUDA graphs (estimate)", gib(r.cuda_graph_bytes))] if r.cuda_graph_bytes else []
    for label, value in (("budget", gib(r.budget_bytes)), ("weights", gib(r.weights_bytes)),
                         ("non-torch", gib(r.non_torch_bytes)), ("activation peak", gib(r.activation_peak_bytes)),
                         *graphs,
                         ("KV cache", gib(r.kv_cache_bytes)), ("KV cache tokens", f"{r.kv_cache_tokens:,}"),
                         ("block size", str(r.kv_block_size)),
                         (f"max concurrency at {r.max_model_len:,} tokens", f"{r.max_concurrency:.2f}x")):
        table.add_row(label, value)
    console.print(table)
    console.print(f"starts: {'yes' if r.starts else 'no'}" + (f" -- {r.error}" if r.error else ""),
                  style=None if r.starts else "red")


class WatchDisplay:
    """`llmcalc watch`'s live view on stderr: current and peak per device, elapsed time."""

    def __init__(self, console: Console) -> None:
        from rich.live import Live

        self.live = Live(Text("starting"), console=console, refresh_per_second=4, transient=True)
        self.live.start()

    def update(self, result: WatchResult) -> None:
        table = Table(caption=f"llmcalc watch · {' '.join(result.command)[:60]} · {result.elapsed_s:.1f} s",
                      caption_justify="left")
        for col in ("device", "now GiB", "peak GiB", "of GiB"):
            table.add_column(col, justify="left" if col == "device" else "right")
        for d in result.devices:
            table.add_row(f"{d.name} #{d.index}", gib(d.current_process_bytes), gib(d.peak_bytes), gib(d.total_bytes))
        self.live.update(table)

    def stop(self) -> None:
        self.live.stop()


def print_watch(console: Console, result: WatchResult, rows: list[Comparison], est: EstimateResult | None) -> None:
    what = "peak RSS" if result.device == "cpu" else "peak (NVML, every process of the command)"
    console.print(f"{' '.join(result.command)[:100]} · {result.elapsed_s:.1f} s · exit {result.exit_code}"
                  + (" (interrupted)" if result.interrupted else ""), soft_wrap=True)
    table = Table()
    for col in ("device", what, "of GiB"):
        table.add_column(col, justify="left" if col == "device" else "right")
    for d in result.devices:
        table.add_row(f"{d.name} #{d.index}", gib(d.peak_bytes) + ("" if d.matched or not d.peak_bytes else " *"),
                      gib(d.total_bytes))
    console.print(table)
    if any(d.peak_bytes and not d.matched for d in result.devices):
        console.print("* NVML did not list the command's processes (a container's PIDs?): the device's used memory "
                      "above what it was before the command")
    for report in result.torch:
        who = f"rank {report['rank']}" if report.get("rank") is not None else f"pid {report.get('pid')}"
        for dev in report.get("devices", []):
            console.print(f"torch, {who}, cuda:{dev['index']}: peak allocated {gib(dev['peak_allocated_bytes'])} GiB, "
                          f"peak reserved {gib(dev['peak_reserved_bytes'])} GiB")
    if est is None:
        return
    table = Table(title=f"estimate ({est.model.name}, {est.workload.mode}, batch {est.workload.batch}, "
                        f"seq {est.workload.seq}{', per GPU' if est.per_gpu else ''}) vs measured", title_justify="left")
    for col in ("", "estimate GiB", "measured GiB", "error"):
        table.add_column(col, justify="left" if not col else "right")
    for r in rows:
        table.add_row(r.label, gib(r.estimate_bytes), gib(r.measured_bytes),
                      f"{r.error_pct:+.1f}%" if r.error_pct is not None else "-")
    console.print(table)
    if not result.torch:
        console.print("(--torch-hook adds PyTorch's own peak allocated and reserved per process)")
