"""A user's own training loop, as `llmcalc watch` and `llmcalc.track` meet it (docs/watch.md):
random-weight Llama from a card's config (the Hub is not reachable on the device), a DataLoader,
pure-bf16 AdamW (torch's default foreach implementation), gradient clipping.

    python benchmarks/watch/train_loop.py --model llama-3.2-1b --batch 4 --seq 1024 [--track OUT.json]
"""

import argparse
import json
import os

import torch
import transformers

from llmcalc.profile.runner import hf_config
from llmcalc.resolve import load_card

p = argparse.ArgumentParser()
p.add_argument("--model", default="llama-3.2-1b")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq", type=int, default=1024)
p.add_argument("--steps", type=int, default=4)
p.add_argument("--track", default=None, help="write llmcalc.track's report here")
p.add_argument("--fused", action="store_true", help="torch.optim.AdamW(fused=True) instead of its default (foreach)")
args = p.parse_args()

card = load_card(args.model)
device = torch.device("cuda", 0)  # every rank of the torchrun run shares GPU 0
torch.cuda.set_device(device)
with torch.device(device):
    model = transformers.AutoModelForCausalLM.from_config(hf_config(card, "sdpa"), dtype=torch.bfloat16)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True if args.fused else None)
data = torch.utils.data.TensorDataset(torch.randint(0, card.vocab_size, (args.batch * args.steps, args.seq)))
loader = torch.utils.data.DataLoader(data, batch_size=args.batch, pin_memory=True)

tracker = None
if args.track:
    import llmcalc

    tracker = llmcalc.track(model=args.model, mode="train", dtype="bf16", batch=args.batch, seq=args.seq,
                            optimizer="adamw" if args.fused else "adamw-foreach").start()


def phase(name):
    from contextlib import nullcontext

    return tracker.phase(name) if tracker else nullcontext()


for (ids,) in loader:
    ids = ids.to(device, non_blocking=True)
    with phase("forward"):
        loss = model(input_ids=ids, labels=ids).loss
    with phase("backward"):
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    with phase("optimizer"):
        opt.step()
        opt.zero_grad(set_to_none=True)
torch.cuda.synchronize()
if tracker:
    report = tracker.report()
    print(report)
    with open(args.track, "w") as f:
        json.dump(report.to_dict() | {"rank": os.environ.get("RANK")}, f, indent=1)
