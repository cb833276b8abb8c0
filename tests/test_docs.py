"""Every `llmcalc ...` command shown in README.md and docs/ runs as shown (exit 0 or, for
`check`, 0/1), except those that need a GPU (profile, calibrate) or name a placeholder path."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llmcalc.cli import app

ROOT = Path(__file__).resolve().parent.parent
NEEDS_GPU = ("profile", "calibrate")


def shown_commands() -> list[tuple[str, str]]:
    found = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"```bash\n(.*?)```", doc.read_text(), flags=re.S):
            for line in block.replace("\\\n", " ").splitlines():  # join continued lines
                line = line.split("  #")[0].split(" | ")[0].strip()  # the llmcalc part of a pipe
                if line.startswith("llmcalc "):
                    found.append((doc.name, line))
    return found


COMMANDS = shown_commands()


def test_the_docs_show_commands():
    assert len(COMMANDS) >= 20


def hub_cache_for(repo_id: str, home: Path) -> bool:
    """Lay out a Hugging Face cache holding the config.json of the card whose source is that
    repository (as transformers writes it), so a shown Hub ID runs offline. False if no card is."""
    from llmcalc.cards import load_all_cards
    from llmcalc.hf import to_hf_config

    card = next((c for c in load_all_cards() if c.source == f"https://huggingface.co/{repo_id}/blob/main/config.json"),
                None)
    if card is None:
        return False
    snapshot = home / "hub" / ("models--" + repo_id.replace("/", "--")) / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)
    (snapshot / "config.json").write_text(json.dumps(to_hf_config(card) | {"_name_or_path": repo_id}))
    return True


@pytest.mark.parametrize(("doc", "line"), COMMANDS, ids=[f"{d}: {c[:60]}" for d, c in COMMANDS])
def test_shown_command_runs(doc, line, tmp_path, monkeypatch):
    args = shlex.split(line)[1:]
    if args[0] in NEEDS_GPU or any(a.startswith(("path/to", "<")) for a in args):
        pytest.skip("needs a GPU or a file of the reader's")
    from llmcalc.hub import is_hub_id

    if len(args) > 1 and is_hub_id(args[1]) and not (ROOT / args[1]).exists():
        # a Hub ID: the real huggingface_hub in a fresh process, offline on a laid-out cache
        assert hub_cache_for(args[1], tmp_path / "hf"), f"{doc}: no card has {args[1]}'s config.json"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        run = subprocess.run([sys.executable, "-m", "llmcalc", *args], capture_output=True, text=True, cwd=ROOT,
                             env=env | {"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1",
                                        "PYTHONPATH": str(ROOT)}, timeout=120)
        assert run.returncode == 0, f"{doc}: {line}\n{run.stderr}"
        return
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)  # files a command writes (--junit, --out) land here
    result = CliRunner().invoke(app, args)
    allowed = (0, 1) if args[0] == "check" else (0,)
    assert result.exit_code in allowed, f"{doc}: {line}\n{result.output}"
