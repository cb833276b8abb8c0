"""Hugging Face Hub IDs through the real huggingface_hub: a hub cache laid out on disk (offline),
and a loopback server standing in for the Hub's error answers."""

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

ROOT = Path(__file__).resolve().parent.parent
QWEN3 = json.loads((Path(__file__).parent / "assets" / "families" / "qwen3.json").read_text())


def lay_out(home: Path, repo: str, files: dict[str, dict], ref: str = "main", commit: str = "a" * 40) -> None:
    """A hub cache as huggingface_hub writes it: blobs, a ref naming the commit, a snapshot."""
    base = home / "hub" / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True, exist_ok=True)
    (base / "refs" / ref).write_text(commit)
    snapshot = base / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (base / "blobs").mkdir(exist_ok=True)
    for name, content in files.items():
        blob = base / "blobs" / f"{abs(hash((commit, name))):040x}"
        blob.write_text(json.dumps(content))
        (snapshot / name).symlink_to(os.path.relpath(blob, snapshot))


def llmcalc(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    return subprocess.run([sys.executable, "-m", "llmcalc", *args], capture_output=True, text=True, cwd=ROOT,
                          env=clean | {"PYTHONPATH": str(ROOT)} | env, timeout=120)


def test_hub_id_from_the_cache_offline(tmp_path):
    lay_out(tmp_path, "Qwen/Qwen3-Tiny", {"config.json": QWEN3})
    run = llmcalc("estimate", "Qwen/Qwen3-Tiny", "--seq", "64", "--gen", "8", "--json",
                  env={"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr
    doc = json.loads(run.stdout)
    assert doc["model"]["name"] == "Qwen/Qwen3-Tiny"
    assert doc["model"]["params"] == 102_848  # tests/test_families.py counts it with transformers


def test_revision_picks_another_snapshot(tmp_path):
    lay_out(tmp_path, "org/model", {"config.json": QWEN3})
    lay_out(tmp_path, "org/model", {"config.json": QWEN3 | {"num_hidden_layers": 4}}, ref="v2", commit="b" * 40)
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    main = json.loads(llmcalc("estimate", "org/model", "--seq", "64", "--json", env=env).stdout)
    v2 = json.loads(llmcalc("estimate", "org/model", "--revision", "v2", "--seq", "64", "--json", env=env).stdout)
    # two more layers of 43,200 parameters each: q 128 x 64 = 8,192, k and v 64 x 64 = 4,096 each,
    # o 8,192, MLP 3 x 96 x 64 = 18,432, q/k norms 2 x 32, layer norms 2 x 64
    assert v2["model"]["params"] - main["model"]["params"] == 2 * 43_200


def test_offline_with_nothing_cached_is_one_line(tmp_path):
    run = llmcalc("estimate", "Qwen/Qwen3-8B", env={"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 2
    assert run.stderr.strip() == (f"error: Qwen/Qwen3-8B: config.json is not in the Hugging Face cache "
                                  f"({tmp_path / 'hub'}) and the Hub cannot be reached (HF_HUB_OFFLINE=1 or no network)")


def _safetensors_header(tensors: dict[str, tuple[str, list[int]]]) -> bytes:
    """The start of a safetensors file: the header's length (8 bytes, little endian) and its JSON."""
    offset, header = 0, {}
    for name, (dtype, shape) in tensors.items():
        size = {"BF16": 2, "F32": 4}[dtype] * eval("*".join(map(str, shape)))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text


# org/public: the tiny qwen3 config and a checkpoint of 102,848 bf16 + 1,000 fp32 elements.
FILES = {"config.json": json.dumps(QWEN3).encode(),
         "model.safetensors": _safetensors_header({"model.weights": ("BF16", [102_848]), "extra": ("F32", [1_000])})}


class _Hub(BaseHTTPRequestHandler):
    """The Hub's answers: a gated and a missing repository (huggingface_hub reads X-Error-Code), and
    org/public's files (resolve URLs with the commit and ETag headers the client expects)."""

    def _answer(self) -> None:
        name = self.path.rsplit("/", 1)[-1]
        if "/public/resolve/" in self.path and name in FILES:
            body = FILES[name]
            self.send_response(200)
            self.send_header("X-Repo-Commit", "c" * 40)
            self.send_header("ETag", f'"{abs(hash(body)):x}"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)
            return
        code, error = ((401, "GatedRepo") if "/gated/" in self.path else (404, "RepoNotFound"))
        if "/public/" in self.path:
            code, error = 404, "EntryNotFound"
        self.send_response(code)
        self.send_header("X-Error-Code", error)
        self.send_header("X-Error-Message", error)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture()
def hub_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_gated_and_unknown_repositories_are_one_line(tmp_path, hub_server):
    env = {"HF_HOME": str(tmp_path), "HF_ENDPOINT": hub_server, "HF_HUB_ETAG_TIMEOUT": "5"}
    gated = llmcalc("estimate", "org/gated", env=env)
    assert (gated.returncode, gated.stderr.strip()) == (
        2, "error: org/gated: gated repository; accept its terms on the Hub and set HF_TOKEN")
    missing = llmcalc("estimate", "org/nothing-here", env=env)
    assert (missing.returncode, missing.stderr.strip()) == (
        2, "error: org/nothing-here: no such repository on the Hub (or it is private: set HF_TOKEN)")


def test_the_checkpoints_own_count_is_cross_checked(tmp_path, hub_server):
    env = {"HF_HOME": str(tmp_path), "HF_ENDPOINT": hub_server, "HF_HUB_ETAG_TIMEOUT": "5"}
    run = llmcalc("estimate", "org/public", "--seq", "64", "--gen", "8", "--json", env=env)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["model"]["params"] == 102_848
    assert run.stderr.strip() == (
        "warning: the checkpoint stores 103,848 elements (BF16 102,848, F32 1,000), the model as transformers "
        "builds it has 102,848 parameters (-0.96%): packed quantized weights, a vision tower or extra "
        "prediction layers in the checkpoint, or buffers, differ")


def test_a_card_never_imports_huggingface_hub():
    code = ("import sys; from llmcalc.resolve import load_card; load_card('qwen3-8b'); "
            "print('huggingface_hub' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert run.stdout.strip() == "False"


def test_a_qwen3_6_checkpoint_by_hub_id_serves_with_its_vision_tower(tmp_path):
    # Qwen/Qwen3.6-27B's config.json (a multimodal qwen3_5 config, text and vision nested), from the
    # cache: the text model's 26,895,998,464 parameters, and under vLLM the vision tower's 460,730,096
    # in bf16 beside them; the hybrid's enlarged block (784 tokens at TP 1 in bf16, docs/serve.md)
    config = {"model_type": "qwen3_5", "architectures": ["Qwen3_5ForConditionalGeneration"], "tie_word_embeddings": False,
              "text_config": {"model_type": "qwen3_5_text", "hidden_size": 5120, "intermediate_size": 17408,
                              "num_hidden_layers": 64, "num_attention_heads": 24, "num_key_value_heads": 4,
                              "head_dim": 256, "linear_num_value_heads": 48, "max_position_embeddings": 262144,
                              "mtp_num_hidden_layers": 1},
              "vision_config": {"out_hidden_size": 5120}}
    lay_out(tmp_path, "Qwen/Qwen3.6-27B", {"config.json": config})
    env = {"HF_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    doc = json.loads(llmcalc("estimate", "Qwen/Qwen3.6-27B", "--seq", "4096", "--json", env=env).stdout)
    assert doc["model"]["params"] == 26_895_998_464
    run = llmcalc("serve", "Qwen/Qwen3.6-27B", "--gpu-memory", "139", "--max-model-len", "32768", "--json", env=env)
    serve = json.loads(run.stdout)["serve"]
    # weights: (26,895,998,464 + 460,730,096) x 2 B, the vocabulary a multiple of 64, one rotary cache of
    # 262,144 x 64 x 2 B (partial_rotary_factor 0.25 of the 256-wide heads)
    assert serve["weights_bytes"] == (26_895_998_464 + 460_730_096) * 2 + 262_144 * 64 * 2
    assert serve["kv_block_size"] == 784 and serve["starts"] is True
