"""The user's loading path, measured: a safetensors checkpoint written with save_pretrained, then
`llmcalc profile DIR --weights DIR` (transformers' from_pretrained with device_map="cuda"), next
to the same workload on random weights built from the card.

    PYTHONPATH=. python benchmarks/loading_path.py --model qwen3-1.7b --out benchmarks/results/loading/h200-loading-path.jsonl

Each profile runs in its own process (a fresh CUDA context and allocator). The checkpoint is
written under --workdir (random weights, the card's config).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from validate import profile_case  # noqa: E402

OPTIONS = "--dtype bf16 --batch 4 --seq 2048 --gen 32"

WRITE = r"""
import sys, torch, transformers
sys.path.insert(0, ".")
from llmcalc.profile.runner import hf_config
from llmcalc.resolve import load_card
from llmcalc.workload import Workload
card = load_card(sys.argv[1])
config = hf_config(card, "sdpa")
with torch.device("cuda"):
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
model.save_pretrained(sys.argv[2])
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="qwen3-1.7b")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/llmcalc-checkpoint"))
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    subprocess.run([sys.executable, "-c", WRITE, args.model, str(args.workdir)], check=True, env=env, cwd=ROOT)
    for model, extra in ((str(args.workdir), ["--weights", str(args.workdir)]), (args.model, [])):
        case = f"{'checkpoint ' if extra else ''}{args.model} {OPTIONS}"
        doc = profile_case([model, *OPTIONS.split(), *extra], case, args.out, env)
        if doc:
            print(f"{case}: peak allocated err {doc['error']['peak_allocated_pct']:+.1f}%, "
                  f"device total err {doc['error']['device_total_pct']:+.1f}%", flush=True)


if __name__ == "__main__":
    main()
