"""Capacity checks: headroom arithmetic, the check file, exit codes, JSON and JUnit."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmcalc.capacity import Deployment, check, junit_xml, load_check_file, parse_headroom
from llmcalc.cli import app
from llmcalc.errors import InputError
from llmcalc.memory import Workload

ASSETS = Path(__file__).parent / "assets"
runner = CliRunner()


@pytest.mark.parametrize(("text", "fraction"), [("10%", 0.10), ("0.25", 0.25), (0, 0.0), ("0%", 0.0)])
def test_headroom_forms(text, fraction):
    assert parse_headroom(text) == pytest.approx(fraction)


def test_headroom_out_of_range_is_one_line():
    with pytest.raises(InputError) as info:
        parse_headroom("100%")
    assert str(info.value) == "--headroom: must be at least 0% and below 100%, got '100%'"


def test_headroom_sets_the_budget():
    # L4: 23,034 MiB x 1,048,576 = 24,152,899,584 B; 10% headroom leaves
    # int(0.9 x 24,152,899,584) = int(21,737,609,625.6) = 21,737,609,625 B.
    r = check(Deployment("x", "qwen2.5-0.5b", "l4", Workload(), headroom=0.10))
    assert r.memory_bytes == 24_152_899_584
    assert r.budget_bytes == 21_737_609_625
    assert r.ok and r.tokens_per_s > 0


def test_headroom_can_fail_what_fits():
    # llama-3.1-8b bf16 batch 1 needs ~15.9 GiB of the L4's 22.49 (a reserve of 0.6%, simulated):
    # fits bare, not with 30% free (15.75 GiB).
    assert check(Deployment("x", "llama-3.1-8b", "l4", Workload())).ok
    tight = check(Deployment("x", "llama-3.1-8b", "l4", Workload(), headroom=0.30))
    assert not tight.ok and tight.reasons[0].startswith("needs 15.87 GiB")


def test_weights_that_can_never_fit_say_so():
    # 405,853,388,800 parameters x 2 B (bf16) / 2^30 = 755.96 GiB; the H200 has 143,771 MiB = 140.40 GiB.
    r = check(Deployment("big", "llama-3.1-405b", "h200", Workload()))
    assert r.reasons == ("can never fit: the weights alone take 755.96 GiB of the 140.40 GiB NVIDIA H200 (SXM)",)


def test_check_file_loads_and_passes():
    deps = load_check_file(str(ASSETS / "check_ok.yaml"))
    assert [d.name for d in deps] == ["chat-8b-l4", "batch-7b-h100"]
    assert deps[0].headroom == pytest.approx(0.10) and deps[1].min_tokens_per_s == 500
    assert deps[0].workload.seq == 2048
    assert all(check(d).ok for d in deps)


def test_malformed_check_file_names_deployment_and_field():
    with pytest.raises(InputError) as info:
        load_check_file(str(ASSETS / "invalid_check.yaml"))
    assert str(info.value) == (
        f"{ASSETS / 'invalid_check.yaml'}: deployment 'typo': unknown keys: batchsize; "
        "deployment 'bad-batch': batch: must be an integer, got 'four'; "
        "deployments[2]: model: required, a non-empty string")


def test_cli_exit_codes_json_and_junit(tmp_path):
    ok = runner.invoke(app, ["check", "--file", str(ASSETS / "check_ok.yaml")])
    assert ok.exit_code == 0, ok.output
    assert "2 of 2 deployments pass" in ok.output
    junit = tmp_path / "check.xml"
    bad = runner.invoke(app, ["check", "--file", str(ASSETS / "check_fails.yaml"), "--json", "--junit", str(junit)])
    assert bad.exit_code == 1
    doc = json.loads(bad.stdout)
    assert doc["ok"] is False
    assert [d["ok"] for d in doc["deployments"]] == [True, False, False]
    assert doc["deployments"][1]["reasons"][0].endswith("below the floor of 100,000")
    xml = junit.read_text()
    assert 'tests="3" failures="2"' in xml and xml.count("<failure") == 2 and 'name="never"' in xml


def test_cli_bad_input_is_exit_2():
    result = runner.invoke(app, ["check", "llama-2-7b"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: check needs MODEL and --gpu ID, or --file deployments.yaml"
    result = runner.invoke(app, ["check", "--file", str(ASSETS / "invalid_check.yaml")])
    assert result.exit_code == 2 and "deployment 'typo': unknown keys: batchsize" in result.output


def test_junit_escapes_names():
    import xml.etree.ElementTree as ET

    r = check(Deployment('a <b> & "c"', "gpt2", "t4", Workload()))
    case = ET.fromstring(junit_xml([r])).find("testcase")
    assert case.get("name") == 'a <b> & "c"' and case.find("failure") is None


def test_several_gpus_split_inference_tensor_parallel():
    w = Workload(seq=2048)
    assert not check(Deployment("one", "llama-3.1-70b", "h100-sxm-80gb", w)).ok
    two = check(Deployment("two", "llama-3.1-70b", "h100-sxm-80gb", w, gpus=2))
    assert two.ok and two.gpu_name == "NVIDIA H100 80GB HBM3 (SXM) x 2"
    with pytest.raises(InputError) as info:
        check(Deployment("three", "llama-3.1-70b", "h100-sxm-80gb", w, gpus=3))
    assert str(info.value) == "three: --tp 3 does not divide llama-3.1-70b's 64 attention heads"


def test_speed_floor_of_a_tensor_parallel_group():
    w = Workload(seq=2048)
    r = check(Deployment("two", "llama-3.1-70b", "h100-sxm-80gb", w, gpus=2, min_tokens_per_s=1))
    assert r.ok and r.tokens_per_s > 1
    slow = check(Deployment("two", "llama-3.1-70b", "h100-sxm-80gb", w, gpus=2, min_tokens_per_s=1e6))
    assert not slow.ok and "below the floor of 1,000,000" in slow.reasons[0]
