"""typer commands: parse, call the core, hand the result to render.

Exit codes: 0 success, 1 a capacity check failed, 2 bad input, 3 profiler out of memory,
4 the environment cannot run the command (see llmcalc/errors.py and docs/cli.md).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from llmcalc.errors import LlmcalcError

app = typer.Typer(
    help="How much GPU memory an LLM workload takes, how fast it runs, and which hardware it fits.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No markup: model names and paths print as given (a path may hold "[...]"); styles are set
# explicitly in render.
out = Console(highlight=False, markup=False, emoji=False)
err = Console(stderr=True, highlight=False, markup=False, emoji=False)


@contextmanager
def _reported() -> Iterator[None]:
    """Core errors become one line on stderr and a documented exit code."""
    try:
        yield
    except LlmcalcError as exc:
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(code=exc.exit_code) from None


def _workload(mode: str, dtype: str, autocast: str | None, batch: int, seq: int, gen: int, beams: int,
              kv_dtype: str | None, grad_checkpointing: bool, optimizer: str, attention: str) -> Any:
    """The options shared by estimate and profile, as a core Workload (validated by the core)."""
    from llmcalc.memory import Workload

    return Workload(
        mode=mode, dtype=dtype.lower(), autocast=autocast.lower() if autocast else None, batch=batch, seq=seq,
        gen=gen if mode == "infer" else 0, beams=beams, kv_dtype=kv_dtype.lower() if kv_dtype else None,
        grad_checkpointing=grad_checkpointing, optimizer=optimizer.lower(), attention=attention.lower(),
    )


Model = Annotated[str, typer.Argument(help="A card name (see `llmcalc models`), a card .yaml, or a config.json (file or directory).")]
Mode = Annotated[str, typer.Option(help="infer or train.")]
Dtype = Annotated[str, typer.Option(help="How weights are stored: fp32, fp16, bf16, fp8, int8, int4, nf4.")]
Autocast = Annotated[Optional[str], typer.Option(help="torch autocast dtype (bf16 or fp16): mixed precision over the stored weights.")]
Batch = Annotated[int, typer.Option(help="Sequences per batch.")]
Seq = Annotated[int, typer.Option(help="Prompt tokens (infer) or sequence length (train).")]
Gen = Annotated[int, typer.Option(help="New tokens generated (infer).")]
Beams = Annotated[int, typer.Option(help="Beams per sequence (infer).")]
KvDtype = Annotated[Optional[str], typer.Option("--kv-dtype", help="KV cache dtype (default: the compute dtype).")]
Ckpt = Annotated[bool, typer.Option("--grad-checkpointing", help="Gradient checkpointing (train).")]
Optim = Annotated[str, typer.Option(help="adamw, adamw-8bit or sgd (train).")]
Attention = Annotated[str, typer.Option(help="sdpa (flash / memory-efficient kernels) or eager (materialises seq x seq scores).")]
Gpu = Annotated[Optional[str], typer.Option(help="GPU id from `llmcalc gpus`: adds a fit verdict.")]
Explain = Annotated[bool, typer.Option("--explain", help="Show the formula and numbers behind each row.")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON (the documented contract in docs/json.md).")]


@app.command()
def estimate(
    model: Model,
    mode: Mode = "infer",
    dtype: Dtype = "bf16",
    autocast: Autocast = None,
    batch: Batch = 1,
    seq: Seq = 512,
    gen: Gen = 128,
    beams: Beams = 1,
    kv_dtype: KvDtype = None,
    grad_checkpointing: Ckpt = False,
    optimizer: Optim = "adamw",
    attention: Attention = "sdpa",
    gpu: Gpu = None,
    explain: Explain = False,
    json: Json = False,
) -> None:
    """Estimate the GPU memory of a workload, per component, at its peak phase."""
    from llmcalc import render
    from llmcalc.cards import load_card
    from llmcalc.memory import estimate as run_estimate

    with _reported():
        card = load_card(model)
        workload = _workload(mode, dtype, autocast, batch, seq, gen, beams, kv_dtype, grad_checkpointing,
                             optimizer, attention)
        spec = None
        if gpu:
            from llmcalc.hardware import get_gpu  # the catalog loads only when asked for

            spec = get_gpu(gpu)
        result = run_estimate(card, workload)
    for line in result.warnings:
        err.print(f"warning: {line}", markup=False, soft_wrap=True)
    if json:
        print(render.estimate_json(result, card, spec))
    else:
        render.print_estimate(out, result, card, spec, explain)


Device = Annotated[str, typer.Option(help="cuda or cpu.")]
Weights = Annotated[Optional[str], typer.Option(help="Load a local checkpoint (safetensors directory) instead of random weights.")]
Snapshot = Annotated[Optional[str], typer.Option(help="Write PyTorch's memory-history snapshot here (view at pytorch.org/memory_viz).")]


@app.command()
def profile(
    model: Model,
    mode: Mode = "infer",
    dtype: Dtype = "bf16",
    autocast: Autocast = None,
    batch: Batch = 1,
    seq: Seq = 512,
    gen: Gen = 128,
    beams: Beams = 1,
    kv_dtype: KvDtype = None,
    grad_checkpointing: Ckpt = False,
    optimizer: Optim = "adamw",
    attention: Attention = "sdpa",
    device: Device = "cuda",
    weights: Weights = None,
    snapshot: Snapshot = None,
    json: Json = False,
) -> None:
    """Run the real model (random weights unless --weights) and compare with the estimate."""
    from llmcalc import render
    from llmcalc.cards import load_card
    from llmcalc.errors import EXIT_OOM
    from llmcalc.memory import estimate as run_estimate
    from llmcalc.profile.compare import record
    from llmcalc.profile.runner import run_profile

    with _reported():
        card = load_card(model)
        workload = _workload(mode, dtype, autocast, batch, seq, gen, beams, kv_dtype, grad_checkpointing,
                             optimizer, attention)
        est = run_estimate(card, workload)
        with err.status("profiling") as status:
            measured = run_profile(card, workload, device=device, weights=weights, snapshot=snapshot,
                                   progress=lambda p: status.update(f"profiling: {p}"))
    doc = record(model, card.name, est, measured.to_dict())
    if json:
        print(render.dumps(doc))
    else:
        render.print_profile(out, doc)
    if measured.oom_phase:
        err.print(f"error: out of memory in phase {measured.oom_phase}; GPU memory released", soft_wrap=True)
        raise typer.Exit(code=EXIT_OOM)


@app.command()
def models(json: Json = False) -> None:
    """List the model cards with their exact parameter counts."""
    from llmcalc import render
    from llmcalc.cards import load_all_cards

    with _reported():
        cards = load_all_cards()
    if json:
        print(render.models_json(cards))
    else:
        render.print_models(out, cards)


@app.command()
def gpus() -> None:
    """List the GPU catalog: memory, bandwidth and dense peak rates."""
    from llmcalc import render
    from llmcalc.hardware import catalog

    with _reported():
        specs = list(catalog().values())
    render.print_gpus(out, specs)


def main() -> None:
    app(prog_name="llmcalc")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
