"""Where a real forward spends its GPU time, kernel by kernel: the evidence behind the throughput
model's per-kernel costs (above all bitsandbytes' int8 and nf4 layers, whose costs inside a whole
model differ from a layer timed alone in the L2 cache).

    PYTHONPATH=. python benchmarks/kernel_breakdown.py --model llama-2-7b --dtype int8 \\
        --prefill 1x128,2x1024,8x1024 --decode 2,8,32 --out benchmarks/results/kernels/h100.jsonl

For each prefill shape (batch x prompt) one warm-up prefill, then one traced; for each decode batch
a prompt of DECODE_CACHE tokens, WARM steps, then TRACED steps traced. Every kernel (and memcpy /
memset) is grouped by name: total GPU microseconds and launches, one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llmcalc.memory import Workload  # noqa: E402
from llmcalc.resolve import load_card  # noqa: E402

DECODE_CACHE, WARM, TRACED = 256, 3, 3


def _grouped(prof: Any) -> dict[str, list[float]]:
    from torch.autograd import DeviceType

    kernels: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in prof.events():
        if e.device_type == DeviceType.CUDA:
            k = kernels[e.name[:160]]
            k[0] += e.time_range.elapsed_us()
            k[1] += 1
    return dict(kernels)


def _by_op(prof: Any) -> dict[str, list[float]]:
    """GPU time and launches grouped by the aten op that launched each kernel (its innermost CPU
    op): which line of the model a kernel belongs to, where kernel names are generic."""
    ops: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for e in prof.events():
        for k in getattr(e, "kernels", None) or []:
            o = ops[e.name]
            o[0] += getattr(k, "duration", 0.0)
            o[1] += 1
    return dict(ops)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--dtype", required=True)
    parser.add_argument("--prefill", default="", help="batch x prompt shapes, e.g. 1x128,8x1024")
    parser.add_argument("--decode", default="", help="decode batch sizes, e.g. 2,8,32")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--device", default="cuda", help="cpu: a smoke test of this script (no kernels)")
    args = parser.parse_args()

    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if args.device == "cuda" else [])
    from transformers import DynamicCache

    from llmcalc.profile.runner import build_model, environment

    env = environment(torch, args.device)
    card = load_card(args.model)
    model = build_model(torch, card, Workload(dtype=args.dtype), args.device, None, quantize_on_device=True).eval()
    gen = torch.Generator(device="cpu").manual_seed(0)
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def sync() -> None:
        if args.device == "cuda":
            torch.cuda.synchronize()

    def ids(batch: int, seq: int) -> Any:
        return torch.randint(0, card.vocab_size, (batch, seq), generator=gen).to(args.device)

    def write(kind: str, batch: int, seq: int, prof: Any, steps: int) -> None:
        kernels = _grouped(prof)
        by_op = _by_op(prof)
        row = {"model": args.model, "dtype": args.dtype, "kind": kind, "batch": batch, "seq": seq, "steps": steps,
               "kernel_us": sum(v[0] for v in kernels.values()) / steps,
               "launches": sum(v[1] for v in kernels.values()) / steps,
               "kernels": {k: [round(v[0] / steps, 2), v[1] / steps] for k, v in
                           sorted(kernels.items(), key=lambda kv: -kv[1][0])},
               "ops": {k: [round(v[0] / steps, 2), v[1] / steps] for k, v in
                       sorted(by_op.items(), key=lambda kv: -kv[1][0])},
               "env": env}
        with args.out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{args.model} {args.dtype} {kind} b{batch} s{seq}: {row['kernel_us'] / 1e3:.2f} ms, "
              f"{row['launches']:.0f} launches", flush=True)

    with torch.inference_mode():
        for shape in filter(None, args.prefill.split(",")):
            batch, seq = (int(x) for x in shape.split("x"))
            x = ids(batch, seq)
            model(input_ids=x, past_key_values=DynamicCache(config=model.config), use_cache=True, logits_to_keep=1)
            sync()
            with profile(activities=activities) as prof:
                model(input_ids=x, past_key_values=DynamicCache(config=model.config), use_cache=True, logits_to_keep=1)
                sync()
            write("prefill", batch, seq, prof, 1)
            del x
            if args.device == "cuda":
                torch.cuda.empty_cache()
        for batch in (int(b) for b in filter(None, args.decode.split(","))):
            cache = DynamicCache(config=model.config)
            out = model(input_ids=ids(batch, DECODE_CACHE), past_key_values=cache, use_cache=True, logits_to_keep=1)
            nxt = out.logits[:, -1, :].argmax(-1, keepdim=True)
            for _ in range(WARM):
                nxt = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits[:, -1, :].argmax(-1, keepdim=True)
            sync()
            with profile(activities=activities) as prof:
                for _ in range(TRACED):
                    nxt = model(input_ids=nxt, past_key_values=cache, use_cache=True).logits[:, -1, :].argmax(-1, keepdim=True)
                sync()
            write("decode", batch, DECODE_CACHE + WARM + 1, prof, TRACED)
            del cache
            if args.device == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
