"""`llmcalc watch` and `llmcalc.track` on a machine without a GPU: the CPU path of watch runs real
commands (their resident set from /proc), the GPU path's refusal, exit codes, Ctrl-C, the opt-in
hook's chaining; track's comparison arithmetic. The GPU measurements are in docs/watch.md."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import llmcalc
from llmcalc import watch
from llmcalc.cli import app
from llmcalc.errors import EnvironmentProblem
from llmcalc.tracking import PhasePeak, Tracker

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()
HAS_GPU = False
try:
    watch.NvmlSampler().close()
    HAS_GPU = True
except EnvironmentProblem:
    pass


@pytest.mark.skipif(HAS_GPU, reason="this machine has a GPU")
def test_without_a_gpu_watch_says_so_and_exits_4():
    result = runner.invoke(app, ["watch", "--", sys.executable, "-c", "pass"])
    assert result.exit_code == 4
    assert result.stderr.strip() == ("error: no NVIDIA GPU here: NVML found none "
                                     "(use --device cpu to watch the process's CPU memory)")


def test_cpu_watch_measures_the_childs_memory_and_keeps_its_exit_code():
    # the child holds 300 MiB for half a second, then exits 3
    code = "import sys, time; x = bytearray(300 * 2**20); time.sleep(0.5); sys.exit(3)"
    result = runner.invoke(app, ["watch", "--device", "cpu", "--interval", "0.05", "--json", "--",
                                 sys.executable, "-c", code])
    assert result.exit_code == 3
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 3 and doc["device"] == "cpu" and not doc["interrupted"]
    peak = doc["devices"][0]["peak_bytes"]
    assert 300 * 2**20 < peak < 300 * 2**20 + 200 * 2**20  # the buffer plus an interpreter


def test_children_of_children_are_counted():
    # a shell that starts python: the memory is the grandchild's
    code = "import time; x = bytearray(200 * 2**20); time.sleep(0.5)"
    r = watch.run(["sh", "-c", f"{sys.executable} -c '{code}'"], watch.RssSampler(), interval=0.05)
    assert r.exit_code == 0 and r.devices[0].peak_bytes > 200 * 2**20


def test_the_comparison_with_an_estimate():
    est = llmcalc.estimate("tinyllama-1.1b", dtype="fp32")
    r = watch.WatchResult(command=["x"], device="cuda",
                          devices=[watch.DevicePeak(0, "GPU", 80 * 2**30, 0, peak_process_bytes=5 * 2**30,
                                                    matched=True)],
                          torch=[{"pid": 7, "rank": "0", "devices": [
                              {"index": 0, "peak_allocated_bytes": 4 * 2**30, "peak_reserved_bytes": 4 * 2**30}]}])
    rows = watch.compare(r, est)
    assert [row.label for row in rows] == ["device total (NVML, peak), GPU #0", "peak allocated (torch), rank 0, cuda:0",
                                           "peak reserved (torch), rank 0, cuda:0"]
    assert rows[0].estimate_bytes == est.device_total_bytes and rows[0].measured_bytes == 5 * 2**30
    assert rows[1].error_pct == pytest.approx(100 * (est.peak_allocated_bytes - 4 * 2**30) / (4 * 2**30))
    assert rows[2].estimate_bytes == est.peak_allocated_bytes + est.components["allocator_reserve"]


def test_unmatched_processes_fall_back_to_the_device_delta():
    d = watch.DevicePeak(0, "GPU", 80, baseline_used_bytes=10, peak_process_bytes=0, peak_used_bytes=25)
    assert d.peak_bytes == 15  # NVML listed none of the command's processes
    d.matched, d.peak_process_bytes = True, 12
    assert d.peak_bytes == 12


def test_bad_input():
    result = runner.invoke(app, ["watch", "--device", "cpu", "--", "no-such-command-here"])
    assert result.exit_code == 2 and result.stderr.strip() == "error: command not found: no-such-command-here"
    result = runner.invoke(app, ["watch", "--device", "tpu", "--", "true"])
    assert result.exit_code == 2 and result.stderr.strip() == "error: --device must be cuda or cpu, got 'tpu'"
    result = runner.invoke(app, ["watch", "--device", "cpu", "--model", "nonsense-model", "--", "true"])
    assert result.exit_code == 2 and "nonsense-model" in result.stderr


def test_ctrl_c_stops_the_child_and_still_reports():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = "import time; x = bytearray(100 * 2**20); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-m", "llmcalc", "watch", "--device", "cpu", "--json", "--",
                             sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    time.sleep(2.5)
    proc.send_signal(signal.SIGINT)  # to watch only: it must pass it on
    out, err = proc.communicate(timeout=30)
    doc = json.loads(out)
    assert doc["interrupted"] and doc["exit_code"] == 130 == proc.returncode  # the child died of SIGINT: 128 + 2
    assert doc["devices"][0]["peak_bytes"] > 100 * 2**20
    assert doc["elapsed_s"] < 20


def test_ctrl_c_while_the_child_starts_still_stops_it(monkeypatch):
    """A SIGINT that lands inside Popen (the child forked, Popen not yet returned) used to escape
    as KeyboardInterrupt and leave the child running: now it is held until the child exists."""
    real = subprocess.Popen

    def popen_interrupted(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # delivered at once, while "Popen" runs
        return real(*args, **kwargs)

    monkeypatch.setattr(watch.subprocess, "Popen", popen_interrupted)
    caller = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal (a background job ignores it)
    try:
        t0 = time.monotonic()
        result = watch.run([sys.executable, "-c", "import time; time.sleep(60)"], watch.RssSampler(), interval=0.05)
        assert result.interrupted and result.exit_code == 130  # the child got the SIGINT: 128 + 2
        assert time.monotonic() - t0 < 20
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    finally:
        signal.signal(signal.SIGINT, caller)


def test_the_hook_neither_imports_torch_nor_hides_another_sitecustomize(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "sitecustomize.py").write_text("import os\nos.environ['THEIRS_RAN'] = '1'\n")
    code = "import os, sys; print('torch' in sys.modules, os.environ.get('THEIRS_RAN'), os.environ['LLMCALC_WATCH_DIR'] != '')"
    out = subprocess.run([sys.executable, "-m", "llmcalc", "watch", "--device", "cpu", "--torch-hook", "--json", "--",
                          sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(theirs)])))
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines()[-1] == "False 1 True"  # the child's stdout goes to stderr under --json
    assert json.loads(out.stdout)["torch"] == []  # no CUDA used: nothing reported


def test_track_needs_a_gpu():
    pytest.importorskip("torch")
    if HAS_GPU:
        pytest.skip("this machine has a GPU")
    with pytest.raises(EnvironmentProblem, match="torch sees none here"):
        with llmcalc.track():
            pass
    with pytest.raises(llmcalc.InputError, match="workload options need model="):
        llmcalc.track(batch=4)


def test_track_compares_each_interval_with_the_estimate():
    tracker = llmcalc.track(model="llama-3.2-1b", mode="train", batch=4, seq=1024)
    est = tracker.estimate
    tracker.phases = {name: PhasePeak(name, 1, 10 * 2**30, 11 * 2**30)
                      for name in ("forward", "backward", "optimizer", "data")}
    report = tracker.report()
    by = {p.name: p for p in report.phases}
    intervals = {p.name: p.total for p in est.memory.phases}
    workspace = est.peak_allocated_bytes - max(intervals.values())
    # backward is an interval: its estimate is the largest of the three backward moments
    assert by["backward"].estimate_bytes == max(intervals["backward"], intervals["backward_layer_0"],
                                                intervals["backward_end"]) + workspace
    assert by["optimizer"].estimate_bytes == intervals["optimizer_step"] + workspace
    assert by["data"].estimate_bytes is None and "no estimate for data" in report.notes[0]
    assert by["forward"].error_pct == pytest.approx(100 * (by["forward"].estimate_bytes - 10 * 2**30) / (10 * 2**30))
    assert "backward" in str(report) and report.to_dict()["phases"][0]["name"] == "forward"


def test_tracker_callback_is_a_trainer_callback():
    transformers = pytest.importorskip("transformers")
    callback = llmcalc.TrackerCallback(Tracker())
    assert isinstance(callback, transformers.TrainerCallback)
