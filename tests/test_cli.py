"""The CLI through typer's CliRunner: exit codes, output, JSON contract."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmcalc.cli import app

ASSETS = Path(__file__).parent / "assets"
runner = CliRunner()


def run(*args):
    return runner.invoke(app, list(args))


def test_estimate_table():
    result = run("estimate", "llama-6b", "--dtype", "int8")
    assert result.exit_code == 0
    assert "llama-6b (6.74B params)" in result.output
    assert "weights" in result.output and "peak allocated" in result.output
    assert "(peak: decode)" in result.output


def test_estimate_json_contract():
    result = run("estimate", "llama-2-7b", "--dtype", "bf16", "--seq", "4096", "--gen", "1", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["model"]["params"] == 6_738_415_616
    comps = doc["memory"]["components"]
    assert set(comps) == {"weights", "gradients", "optimizer", "activations", "kv_cache", "cuda_context",
                          "allocator_reserve"}
    assert all(isinstance(v, int) for v in comps.values())
    assert comps["weights"] == 2 * 6_738_415_616
    assert comps["kv_cache"] == 2**31  # 4096 positions x 32 layers x 2 x 4096 x 2 B
    assert doc["memory"]["peak_phase"] == "prefill"
    assert doc["memory"]["peak_allocated_bytes"] == sum(comps[c] for c in ("weights", "gradients", "optimizer", "activations", "kv_cache"))
    assert doc["memory"]["device_total_bytes"] == doc["memory"]["peak_allocated_bytes"] + comps["cuda_context"] + comps["allocator_reserve"]


def test_estimate_gpu_verdict():
    result = run("estimate", "llama-3.1-70b", "--gpu", "h100-sxm-80gb", "--json")
    doc = json.loads(result.stdout)
    assert result.exit_code == 0
    assert doc["gpu"]["fits"] is False and doc["gpu"]["free_bytes"] < 0
    table = run("estimate", "llama-3.1-70b", "--gpu", "h100-sxm-80gb")
    assert "does not fit" in table.output


def test_explain_shows_formulas():
    result = run("estimate", "llama-6b", "--mode", "train", "--explain")
    assert result.exit_code == 0
    assert "6738415616 params x 2 B (bf16)" in result.output


def test_config_json_model():
    result = run("estimate", str(ASSETS / "tiny-qwen2"), "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["model"]["params"] == 125_504


def test_unknown_model_exit_2():
    result = run("estimate", "lama-6b")
    assert result.exit_code == 2
    assert result.output.strip() == "error: unknown model 'lama-6b'; closest: llama-6b, llama-3-8b, llama-2-7b"


def test_bad_sizes_exit_2():
    result = run("estimate", "llama-6b", "--batch", "0")
    assert result.exit_code == 2
    assert result.output.strip() == "error: --batch must be a positive integer, got 0"


def test_allocator_option():
    # fp32 training: no generated allocation order, so each allocator's measured fraction applies
    train = ("--mode", "train", "--dtype", "fp32", "--batch", "1", "--seq", "256")
    default = json.loads(run("estimate", "llama-6b", *train, "--json").stdout)["memory"]
    expandable = json.loads(run("estimate", "llama-6b", *train, "--allocator", "expandable", "--json").stdout)["memory"]
    assert expandable["peak_allocated_bytes"] == default["peak_allocated_bytes"]
    assert expandable["device_total_bytes"] < default["device_total_bytes"]
    result = run("estimate", "llama-6b", "--allocator", "native")
    assert result.exit_code == 2
    assert result.output.strip() == "error: --allocator must be one of default, expandable, got 'native'"


def test_int8_outliers_option():
    # olmo-2-7b in LLM.int8 at 4 x 1,024: every column decomposed adds 296,419,328 B at the prefill
    # (tests/test_memory.py has the arithmetic)
    w = ("--dtype", "int8", "--batch", "4", "--seq", "1024", "--gen", "32", "--json")
    few = json.loads(run("estimate", "olmo-2-7b", *w).stdout)
    every = json.loads(run("estimate", "olmo-2-7b", *w, "--int8-outliers", "all").stdout)
    assert (few["workload"]["int8_outliers"], every["workload"]["int8_outliers"]) == ("few", "all")
    assert every["memory"]["phases"]["prefill"] - few["memory"]["phases"]["prefill"] == 296_419_328
    result = run("estimate", "olmo-2-7b", "--dtype", "int8", "--int8-outliers", "most")
    assert result.exit_code == 2
    assert result.output.strip() == "error: --int8-outliers must be one of few, all, got 'most'"


def test_a_cpu_target_has_no_cuda_context():
    doc = json.loads(run("estimate", "tinyllama-1.1b", "--gpu", "epyc-9654", "--json").stdout)
    assert doc["memory"]["components"]["cuda_context"] == 0


def test_unknown_gpu_exit_2():
    result = run("estimate", "llama-6b", "--gpu", "h100")
    assert result.exit_code == 2
    assert result.output.strip() == "error: unknown GPU 'h100'; closest: h100-nvl-94gb, h100-pcie-80gb, h100-sxm-80gb"


def test_malformed_card_exit_2():
    result = run("estimate", str(ASSETS / "invalid_unknown_keys.yaml"))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {ASSETS / 'invalid_unknown_keys.yaml'}: unknown keys: n_embd, rope_theta"
    assert "Traceback" not in result.output


def test_context_overflow_warns_exit_0():
    result = run("estimate", "gpt2", "--seq", "1000", "--gen", "100")
    assert result.exit_code == 0
    assert "warning: sequence of 1100 tokens exceeds gpt2's context of 1024" in result.output


def test_models_lists_every_card():
    result = run("models", "--json")
    names = {m["name"] for m in json.loads(result.stdout)}
    assert {"llama-6b", "llama-3.1-405b", "mixtral-8x7b", "qwen2.5-72b", "falcon-7b", "gpt2"} <= names
    assert "6,738,415,616" in run("models").output


def test_gpus_lists_catalog():
    result = run("gpus")
    assert result.exit_code == 0 and "h100-sxm-80gb" in result.output


def test_estimate_never_imports_torch():
    code = ("import sys; from typer.testing import CliRunner; from llmcalc.cli import app; "
            "r = CliRunner().invoke(app, ['estimate', 'llama-6b', '--json']); assert r.exit_code == 0; "
            "print(sorted(m for m in ('torch', 'transformers', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "llmcalc", "estimate", "gpt2", "--json"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["model"]["name"] == "gpt2"


def test_estimate_with_gpu_adds_throughput():
    result = run("estimate", "llama-2-7b", "--gpu", "h100-sxm-80gb", "--batch", "16", "--json")
    assert result.exit_code == 0, result.output
    t = json.loads(result.stdout)["throughput"]
    assert t["fits"] is True and t["bound"] == "memory"
    for key in ("prefill_ms", "decode_step_ms", "decode_tokens_per_s", "ttft_ms", "mbu", "mfu"):
        assert t[key] > 0
    # one step serves the whole batch: 16 tokens per step
    assert t["decode_tokens_per_s"] == pytest.approx(16 / (t["decode_step_ms"] / 1e3))
    table = run("estimate", "llama-2-7b", "--gpu", "h100-sxm-80gb")
    assert "throughput on NVIDIA H100 80GB HBM3 (SXM)" in table.output and "decode step" in table.output


def test_estimate_that_does_not_fit_prints_no_throughput():
    result = run("estimate", "llama-3.1-70b", "--gpu", "l4", "--json")
    assert result.exit_code == 0
    doc = json.loads(result.stdout)
    assert doc["gpu"]["fits"] is False
    assert "decode_step_ms" not in doc["throughput"] and doc["throughput"]["fits"] is False
    table = run("estimate", "llama-3.1-70b", "--gpu", "l4")
    assert "throughput on NVIDIA L4: not computed, the workload does not fit" in table.output


def test_training_estimate_has_no_throughput_object():
    result = run("estimate", "gpt2", "--mode", "train", "--gpu", "a100-sxm-80gb", "--json")
    assert json.loads(result.stdout)["throughput"] is None


def test_throughput_sweep_stops_at_memory():
    result = run("throughput", "llama-2-7b", "--gpu", "l4", "--batches", "1,4,64", "--json")
    assert result.exit_code == 0, result.output
    sweep = json.loads(result.stdout)["sweep"]
    assert [row["batch"] for row in sweep] == [1, 4, 64]
    assert sweep[0]["throughput"]["fits"] and sweep[1]["throughput"]["fits"]
    assert sweep[2]["throughput"] == {"fits": False, "bound": "memory", "prefill_bound": "compute",
                                      "efficiency_source": sweep[2]["throughput"]["efficiency_source"]}
    assert sweep[1]["throughput"]["decode_tokens_per_s"] > sweep[0]["throughput"]["decode_tokens_per_s"]
    table = run("throughput", "llama-2-7b", "--gpu", "l4", "--batches", "1,64")
    assert "does not fit" in table.output


def test_throughput_bad_batches_and_unknown_gpu():
    result = run("throughput", "llama-2-7b", "--gpu", "l4", "--batches", "1,x")
    assert result.exit_code == 2
    assert result.output.strip() == "error: --batches must be comma-separated integers, got '1,x'"
    result = run("throughput", "llama-2-7b", "--gpu", "h100")
    assert result.exit_code == 2
    assert result.output.strip() == "error: unknown GPU 'h100'; closest: h100-nvl-94gb, h100-pcie-80gb, h100-sxm-80gb"


def test_gpus_lists_gpus_and_cpus():
    doc = json.loads(run("gpus", "--json").stdout)
    kinds = {g["id"]: g["kind"] for g in doc}
    assert len([k for k in kinds.values() if k == "gpu"]) >= 16
    assert kinds["epyc-9654"] == "cpu" and kinds["apple-m2-ultra"] == "cpu"


def test_cpu_calibration_needs_a_catalog_id():
    result = run("calibrate", "--device", "cpu")
    assert result.exit_code == 2
    assert result.output.strip() == "error: --device cpu needs --gpu ID: the catalog CPU to store the figures under"


def test_main_dispatches_one_command_and_keeps_the_group():
    # main() builds only the named command (faster start); the command line behaves the same.
    ok = subprocess.run([sys.executable, "-m", "llmcalc", "estimate", "llama-6b", "--dtype", "int8", "--json"],
                        capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["model"]["name"] == "llama-6b"
    typo = subprocess.run([sys.executable, "-m", "llmcalc", "estimat"], capture_output=True, text=True)
    assert typo.returncode == 2 and "No such command 'estimat'" in typo.stderr
    helped = subprocess.run([sys.executable, "-m", "llmcalc", "plan", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "llmcalc plan" in helped.stdout
