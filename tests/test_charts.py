"""Charts: the series, the terminal rendering, the PNG, bad input."""

import pytest
from typer.testing import CliRunner

from llmcalc.charts import STACK, build, to_png
from llmcalc.cli import app
from llmcalc.errors import EnvironmentProblem
from llmcalc.hardware import get_gpu
from llmcalc.memory import Workload, estimate
from llmcalc.resolve import load_card

runner = CliRunner()
LLAMA8 = load_card("llama-3.1-8b")
L4 = get_gpu("l4")


def test_memory_series_are_the_estimates_and_never_fall():
    w = Workload(seq=2048)
    chart = build("memory-batch", LLAMA8, w, L4, (1, 4, 16))
    assert chart.capacity_bytes == L4.memory_bytes
    for b, parts in zip(chart.xs, chart.memory):
        assert sum(parts.values()) == estimate(LLAMA8, Workload(seq=2048, batch=b)).device_total_bytes
        assert set(parts) == set(STACK)
    totals = [sum(p.values()) for p in build("memory-context", LLAMA8, w, L4).memory]
    assert totals == sorted(totals)


def test_throughput_series_stop_where_memory_runs_out():
    chart = build("throughput", LLAMA8, Workload(seq=2048, gen=256), L4, (1, 8, 64))
    assert chart.engine_tokens_per_s[2] is None and chart.eager_tokens_per_s[2] is None
    assert chart.engine_tokens_per_s[1] > chart.engine_tokens_per_s[0] > 0


def test_terminal_chart_marks_capacity_and_overflow():
    result = runner.invoke(app, ["chart", "llama-3.1-8b", "--gpu", "l4", "--seq", "2048", "--points", "1,64"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    one = next(line for line in lines if line.startswith(" 1 "))
    many = next(line for line in lines if line.startswith("64 "))
    assert "|" in one and not one.endswith("over") and many.endswith("over")
    assert "device memory 22.5 GiB" in result.output


def test_png_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "memory.png"
    result = runner.invoke(app, ["chart", "llama-3.1-8b", "--gpu", "l4", "--out", str(path)])
    assert result.exit_code == 0, result.output
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = runner.invoke(app, ["chart", "llama-3.1-8b", "--gpu", "l4", "--what", "throughput", "--out",
                                 str(tmp_path / "speed.png")])
    assert result.exit_code == 0 and (tmp_path / "speed.png").stat().st_size > 1000


def test_png_without_matplotlib_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_mpl(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    with pytest.raises(EnvironmentProblem) as info:
        to_png(build("memory-batch", LLAMA8, Workload(), L4, (1,)), "x.png")
    assert str(info.value).startswith("PNG charts need matplotlib: pip install '.[charts]'")


def test_bad_chart_input():
    result = runner.invoke(app, ["chart", "gpt2", "--gpu", "l4", "--what", "speed"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --what must be one of memory-batch, memory-context, throughput, got 'speed'"
    result = runner.invoke(app, ["chart", "gpt2", "--gpu", "l4", "--points", "1,0"])
    assert result.output.strip() == "error: --points must be positive integers, got '1,0'"
