"""The profiler end to end on the CPU with a tiny card; OOM handling by a forced failure."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from llmcalc.cli import app  # noqa: E402
from llmcalc.memory import Workload  # noqa: E402
from llmcalc.profile import runner  # noqa: E402
from llmcalc.resolve import load_card  # noqa: E402

TINY = str(Path(__file__).parent / "assets" / "tiny-llama.yaml")


def test_cpu_inference_phases():
    m = runner.run_profile(load_card(TINY), Workload(batch=2, seq=16, gen=4), device="cpu")
    assert [p.name for p in m.phases] == ["load", "prefill", "decode"]
    assert m.oom_phase is None
    assert m.timings["decode_tokens_per_s"] > 0
    assert m.device_total_bytes > 0  # process RSS


def test_cpu_training_runs_three_steps():
    m = runner.run_profile(load_card(TINY), Workload(mode="train", dtype="fp32", autocast="bf16", batch=2, seq=16, gen=0),
                           device="cpu")
    assert [p.name for p in m.phases] == ["load", "forward", "backward", "optimizer_step"]
    assert m.timings["train_step_s"] > 0


def test_cli_profile_json_on_cpu():
    result = CliRunner().invoke(app, ["profile", TINY, "--device", "cpu", "--seq", "8", "--gen", "2", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["model"] == "tiny-llama"
    assert doc["estimate"]["peak_phase"] in ("load", "prefill", "decode")
    assert doc["measured"]["device"] == "cpu"


def test_out_of_memory_is_a_result(monkeypatch):
    def explode(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (forced by the test)")

    monkeypatch.setattr(runner, "_run_inference", explode)
    m = runner.run_profile(load_card(TINY), Workload(seq=8, gen=2), device="cpu")
    assert m.oom_phase == "load"
    assert m.phases[-1].name == "load (out of memory)"


def test_cli_out_of_memory_exit_3(monkeypatch):
    def explode(*args, **kwargs):
        raise torch.OutOfMemoryError("forced")

    monkeypatch.setattr(runner, "_run_training", explode)
    result = CliRunner().invoke(app, ["profile", TINY, "--device", "cpu", "--mode", "train", "--seq", "8"])
    assert result.exit_code == 3
    assert "error: out of memory in phase load; GPU memory released" in result.output


def test_no_gpu_is_one_line_exit_4():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    result = CliRunner().invoke(app, ["profile", TINY, "--seq", "8"])
    assert result.exit_code == 4
    assert result.output.strip() == "error: no CUDA GPU is visible (torch.cuda.is_available() is False); try --device cpu"


def test_quantized_profile_needs_cuda():
    result = CliRunner().invoke(app, ["profile", TINY, "--device", "cpu", "--dtype", "int8", "--seq", "8"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: int8 weights run on cuda only (bitsandbytes' kernels)"


def test_missing_bitsandbytes_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_bnb(name, *args, **kwargs):
        if name == "bitsandbytes":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_bnb)
    with pytest.raises(runner.EnvironmentProblem) as info:
        runner._import_bnb()
    assert str(info.value) == ("int8, nf4 and adamw-8bit run through bitsandbytes, which is not installed: "
                               "pip install bitsandbytes")
    assert info.value.exit_code == 4


def test_unwired_precision_is_refused():
    result = CliRunner().invoke(app, ["profile", TINY, "--device", "cpu", "--dtype", "fp8", "--seq", "8"])
    assert result.exit_code == 2
    assert result.output.strip() == ("error: the profiler runs weights in fp32, fp16, bf16, int8, nf4; "
                                     "fp8 has no reference implementation wired in")


def test_cpu_rss_peak_is_sampled_during_the_phase():
    # A phase that allocates 200 MiB and frees it before returning: an end-of-phase reading
    # would miss it, the sampled peak must not.
    probe = runner._Probe(torch, "cpu")
    before = probe.process_bytes()
    watch = probe.watch()
    import time

    block = torch.ones(200 * 2**20, dtype=torch.uint8)
    time.sleep(0.05)
    del block
    peak = watch.stop()
    assert peak - before >= 190 * 2**20
    assert probe.process_bytes() - before < 100 * 2**20


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_profile_within_five_percent():
    from llmcalc.memory import estimate

    card, w = load_card("qwen2.5-0.5b"), Workload(batch=8, seq=512, gen=16)
    m = runner.run_profile(card, w, device="cuda")
    est = estimate(card, w)
    assert abs(est.peak_allocated_bytes - m.peak_allocated_bytes) / m.peak_allocated_bytes < 0.05


def test_calibrate_on_cpu_stores_figures_the_estimate_then_uses(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCALC_CONFIG_DIR", str(tmp_path))
    result = CliRunner().invoke(app, ["calibrate", "--device", "cpu", "--gpu", "ryzen-9-7950x", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    cal = doc["calibration"]
    assert doc["gpu"] == "ryzen-9-7950x" and Path(doc["path"]) == tmp_path / "calibration.json"
    assert cal["bytes_per_s"] > 1e9 and cal["matmul_flops"]["fp32"] > 1e9 and cal["launch_s"] > 0
    assert cal["decode_kernels"]["8"] > cal["decode_kernels"]["2"]  # more layers, more ops
    est = CliRunner().invoke(app, ["estimate", TINY, "--gpu", "ryzen-9-7950x", "--json"])
    assert json.loads(est.stdout)["throughput"]["efficiency_source"].startswith("calibrated on this machine")


def test_lora_profile_on_cpu_trains_exactly_the_estimated_adapters():
    pytest.importorskip("peft")
    from llmcalc.scale import Scale, lora_params

    result = CliRunner().invoke(app, ["profile", TINY, "--device", "cpu", "--mode", "train", "--dtype", "fp32",
                                      "--seq", "16", "--batch", "2", "--lora-rank", "4", "--lora-targets", "all",
                                      "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    targets = ("q", "k", "v", "o", "gate", "up", "down")
    assert doc["measured"]["trainable_params"] == lora_params(load_card(TINY), Scale(lora_rank=4, lora_targets=targets))
    assert [p["name"] for p in doc["measured"]["phases"]] == ["load", "forward", "backward", "optimizer_step"]


def test_quantized_training_without_lora_is_refused():
    with pytest.raises(runner.InputError) as info:
        runner._run_training(torch, None, Workload(mode="train", dtype="nf4"), None, None, None, "cuda")
    assert str(info.value) == "nf4 weights are frozen: train LoRA adapters on them with --lora-rank (QLoRA)"


def test_int8_outlier_columns_are_counted_from_bitsandbytes_state():
    # bitsandbytes' MatMul8bitLt leaves the last call's outlier columns in module.state.idx; the
    # profiler counts the Linear8bitLt modules whose every input column was one (stand-ins here:
    # bitsandbytes runs on CUDA only).
    class Linear8bitLt(torch.nn.Module):
        def __init__(self, k: int, outliers: int | None) -> None:
            super().__init__()
            self.in_features = k
            self.state = type("State", (), {"idx": None if outliers is None else torch.arange(outliers)})()

    model = torch.nn.Sequential(Linear8bitLt(8, 8), Linear8bitLt(8, 3), Linear8bitLt(16, None), torch.nn.Linear(4, 4))
    assert runner._outlier_columns(model) == (3, 1)


def test_profile_notes_when_the_run_decomposed_what_the_estimate_did_not():
    from llmcalc.profile.compare import outlier_notes

    seen = {"int8_outliers": {"linears": 224, "all_columns": 32}}
    assert outlier_notes(Workload(dtype="int8"), seen) == [
        "bitsandbytes found an outlier in every input column of 32 of 224 int8 linears and multiplied their "
        "weights in 16 bits; --int8-outliers all estimates that"]
    assert outlier_notes(Workload(dtype="int8", int8_outliers="all"), seen) == []
    assert outlier_notes(Workload(dtype="int8", int8_outliers="all"), {"int8_outliers": {"linears": 7, "all_columns": 0}}) == [
        "no int8 linear had an outlier in every input column (7 linears); --int8-outliers few estimates that"]
    assert outlier_notes(Workload(dtype="bf16"), seen) == []
