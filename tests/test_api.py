"""The library (llmcalc/api.py, docs/api.md): the same numbers as the CLI's --json, typed
results, errors as exceptions with the CLI's message, and no torch, typer or rich imported."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import llmcalc
from llmcalc.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def cli_json(*args: str) -> dict:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code in (0, 1), result.output
    return json.loads(result.stdout)


def test_estimate_equals_the_cli_json():
    r = llmcalc.estimate("llama-3.1-8b", dtype="bf16", batch=8, seq=2048, gen=128)
    doc = cli_json("estimate", "llama-3.1-8b", "--dtype", "bf16", "--batch", "8", "--seq", "2048", "--gen", "128")
    assert r.to_dict() == doc
    assert r.peak_allocated_bytes == doc["memory"]["peak_allocated_bytes"]
    # weights: 8,030,261,248 parameters x 2 bytes (bf16)
    assert r.components["weights"] == 16_060_522_496
    # prefill peak: the cache holds 8 prompts of 2048 tokens, 32 layers x K and V x 8 heads x 128 x 2 B
    assert r.peak_phase == "prefill"
    assert r.components["kv_cache"] == 8 * 2048 * 32 * 2 * 8 * 128 * 2 == 2_147_483_648
    assert r.fits is None and not r.per_gpu


@pytest.mark.parametrize("args,kwargs", [
    (["--gpu", "l4", "--batch", "4", "--seq", "4096"], {"gpu": "l4", "batch": 4, "seq": 4096}),
    (["--mode", "train", "--batch", "2", "--seq", "1024", "--gpus", "8", "--zero", "3", "--grad-checkpointing"],
     {"mode": "train", "batch": 2, "seq": 1024, "gpus": 8, "zero": 3, "grad_checkpointing": True}),
    (["--mode", "train", "--dtype", "nf4", "--lora-rank", "16", "--lora-targets", "all"],
     {"mode": "train", "dtype": "nf4", "lora_rank": 16, "lora_targets": "all"}),
])
def test_estimate_variants_equal_the_cli(args, kwargs):
    assert llmcalc.estimate("llama-3.1-8b", **kwargs).to_dict() == cli_json("estimate", "llama-3.1-8b", *args)


def test_a_gpu_adds_fit_and_speed():
    r = llmcalc.estimate("llama-3.1-8b", gpu="l4", batch=4, seq=4096)
    assert r.fits is True and r.gpu.id == "l4"
    assert r.throughput.decode_tokens_per_s == r.to_dict()["throughput"]["decode_tokens_per_s"]
    t = llmcalc.estimate("llama-3.1-8b", mode="train", batch=2, seq=1024, gpus=8, zero=3)
    assert t.per_gpu and t.to_dict()["scale"]["zero_stage"] == 3


def test_throughput_plan_check_serve_equal_the_cli():
    sweep = llmcalc.throughput("llama-3.1-8b", "h100-sxm-80gb", batches=[1, 8, 64])
    assert sweep.to_dict() == cli_json("throughput", "llama-3.1-8b", "--gpu", "h100-sxm-80gb", "--batches", "1,8,64")
    assert [r.batch for r in sweep.rows] == [1, 8, 64] and all(r.fits for r in sweep.rows)

    p = llmcalc.plan("llama-3.1-8b", gpu=["l4", "h100-sxm-80gb"], seq=2048, gen=256, concurrency=8,
                     price={"h100-sxm-80gb": 2.49, "l4": 0.7})
    assert p.to_dict() == cli_json("plan", "llama-3.1-8b", "--gpu", "l4", "--gpu", "h100-sxm-80gb", "--seq", "2048",
                                   "--gen", "256", "--concurrency", "8", "--price", "h100-sxm-80gb=2.49",
                                   "--price", "l4=0.7")
    assert p.best is not None and p.best.gpu.id == p.to_dict()["options"][0]["gpu"]

    c = llmcalc.check("llama-3.1-8b", "l4", batch=4, seq=4096, headroom="10%")
    assert c.to_dict() == cli_json("check", "llama-3.1-8b", "--gpu", "l4", "--batch", "4", "--seq", "4096",
                                   "--headroom", "10%")
    # 20.42 GiB needed against 22.49 GiB x 0.9 = 20.24 GiB: fails on the headroom alone
    assert not c.ok and "10% headroom" in c.results[0].reasons[0]
    listed = llmcalc.check(deployments=[{"name": "a", "model": "llama-3.1-8b", "gpu": "h100-sxm-80gb"}])
    assert listed.ok and listed.results[0].deployment.name == "a"
    assert "<testsuite" in listed.junit_xml()

    s = llmcalc.serve("llama-3.1-8b", gpu="h100-sxm-80gb", max_model_len=32768)
    assert s.to_dict() == cli_json("serve", "llama-3.1-8b", "--gpu", "h100-sxm-80gb", "--max-model-len", "32768")
    assert s.starts and s.kv_cache_tokens == s.serve.kv_cache_tokens > 32768


def test_a_card_object_is_a_model():
    card = llmcalc.models()[0]
    assert llmcalc.estimate(card).model is card
    assert any(g.id == "h100-sxm-80gb" for g in llmcalc.gpus())


def test_errors_are_exceptions_with_the_cli_message():
    with pytest.raises(llmcalc.InputError, match=r"^unknown dtype 'fp12'; choose one of fp32"):
        llmcalc.estimate("llama-3.1-8b", dtype="fp12")
    with pytest.raises(llmcalc.InputError, match=r"^--batches must be positive integers, got '0'$"):
        llmcalc.throughput("llama-3.1-8b", "l4", batches=[0])
    with pytest.raises(llmcalc.InputError, match=r"^check needs MODEL and --gpu ID, or --file deployments.yaml$"):
        llmcalc.check("llama-3.1-8b")
    with pytest.raises(AttributeError, match="has no attribute 'nonsense'"):
        llmcalc.nonsense  # noqa: B018


def test_the_api_imports_neither_torch_nor_the_cli_libraries():
    code = ("import sys, llmcalc\n"
            "assert not any(m in sys.modules for m in ('llmcalc.api', 'torch')), 'import llmcalc loaded too much'\n"
            "llmcalc.estimate('llama-3.1-8b', gpu='h100-sxm-80gb'); llmcalc.throughput('llama-3.1-8b', 'l4')\n"
            "llmcalc.plan('llama-3.1-8b', gpu='l4'); llmcalc.check('llama-3.1-8b', 'l4')\n"
            "llmcalc.serve('llama-3.1-8b', gpu='h100-sxm-80gb')\n"
            "print(sorted(m for m in ('torch', 'typer', 'rich', 'transformers') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_the_cli_is_a_layer_over_the_api():
    """No command reaches past llmcalc.api into the core's estimate functions itself."""
    source = (ROOT / "llmcalc" / "cli.py").read_text()
    for core in ("from llmcalc.memory import", "from llmcalc.speed import", "from llmcalc.planning import",
                 "from llmcalc.serving import", "from llmcalc.capacity import", "from llmcalc.scale import"):
        assert core not in source


API_EXAMPLES = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), flags=re.S)


def test_docs_api_has_examples():
    assert len(API_EXAMPLES) >= 4


@pytest.mark.parametrize("index", range(len(API_EXAMPLES)))
def test_docs_api_example_runs(index, capsys):
    exec(compile(API_EXAMPLES[index], f"docs/api.md example {index}", "exec"), {})
