"""The parsed-YAML cache (llmcalc.diskcache): an estimate from a cached card never imports
PyYAML, an edited file is parsed again, and a cache that cannot be written changes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from llmcalc.cards import cards_dir, load_card_file
from llmcalc.diskcache import YamlError, load_yaml
from llmcalc.errors import InputError

ROOT = Path(__file__).resolve().parents[1]

# A fresh interpreter: the estimate's peak, and whether PyYAML was imported on the way.
PROBE = """
import sys
import llmcalc
r = llmcalc.estimate("llama-6b", dtype="int8")
print(r.peak_allocated_bytes, "yaml" in sys.modules)
"""


def _probe(cache: Path) -> tuple[int, bool]:
    env = {**os.environ, "LLMCALC_CACHE_DIR": str(cache), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
    peak, imported = out.stdout.split()
    return int(peak), imported == "True"


def test_second_estimate_reads_the_cache_without_pyyaml(tmp_path):
    first = _probe(tmp_path)
    second = _probe(tmp_path)
    assert first == (first[0], True)  # parsed once, with PyYAML
    assert second == (first[0], False)  # the same answer, PyYAML never imported
    (entry,) = (tmp_path / "yaml").glob("llama-6b-*.json")
    stored = json.loads(entry.read_text())
    assert stored["stamp"][0] == str((cards_dir() / "llama-6b.yaml").resolve())
    assert stored["data"]["num_layers"] == 32  # llama-6b is LLaMA-7B (the seeds call it 6B): 32 layers


def test_an_edited_card_is_parsed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCALC_CACHE_DIR", str(tmp_path / "cache"))
    card = tmp_path / "mine.yaml"
    text = (cards_dir() / "llama-2-7b.yaml").read_text()
    card.write_text(text)
    assert load_card_file(card).num_layers == 32
    assert list((tmp_path / "cache" / "yaml").glob("mine-*.json"))
    card.write_text(text.replace("num_layers: 32", "num_layers: 16"))
    assert load_card_file(card).num_layers == 16


def test_cached_data_is_validated_on_load(tmp_path, monkeypatch):
    """The cache holds the parsed mapping, not the card: a bad card stays a bad card."""
    monkeypatch.setenv("LLMCALC_CACHE_DIR", str(tmp_path / "cache"))
    card = tmp_path / "bad.yaml"
    card.write_text((cards_dir() / "llama-2-7b.yaml").read_text().replace("num_layers: 32", "num_layers: -1"))
    for _ in range(2):  # parsed, then cached
        with pytest.raises(InputError, match="num_layers"):
            load_card_file(card)


def test_bad_yaml_is_never_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMCALC_CACHE_DIR", str(tmp_path / "cache"))
    bad = tmp_path / "broken.yaml"
    bad.write_text("a: 1\nb: [2, 3\nc: 4\n")
    for _ in range(2):
        with pytest.raises(YamlError) as info:
            load_yaml(bad)
        assert info.value.line == 3
    assert not (tmp_path / "cache").exists()


def test_data_json_would_change_is_parsed_every_time(tmp_path, monkeypatch):
    """Integer keys come back from JSON as strings: such a file is not cached."""
    monkeypatch.setenv("LLMCALC_CACHE_DIR", str(tmp_path / "cache"))
    f = tmp_path / "intkeys.yaml"
    f.write_text("1: one\n")
    assert load_yaml(f) == {1: "one"}
    assert load_yaml(f) == {1: "one"}
    assert not (tmp_path / "cache").exists()


def test_unwritable_cache_changes_nothing(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setenv("LLMCALC_CACHE_DIR", str(blocker / "cache"))  # under a file: cannot be created
    assert load_card_file(cards_dir() / "llama-6b.yaml").num_layers == 32
