"""Every `llmcalc ...` command shown in README.md and docs/ runs as shown (exit 0 or, for
`check`, 0/1), except those that need a GPU (profile, calibrate) or name a placeholder path."""

import re
import shlex
import shutil
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


@pytest.mark.parametrize(("doc", "line"), COMMANDS, ids=[f"{d}: {c[:60]}" for d, c in COMMANDS])
def test_shown_command_runs(doc, line, tmp_path, monkeypatch):
    args = shlex.split(line)[1:]
    if args[0] in NEEDS_GPU or any(a.startswith(("path/to", "<")) for a in args):
        pytest.skip("needs a GPU or a file of the reader's")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)  # files a command writes (--junit, --out) land here
    result = CliRunner().invoke(app, args)
    allowed = (0, 1) if args[0] == "check" else (0,)
    assert result.exit_code in allowed, f"{doc}: {line}\n{result.output}"
