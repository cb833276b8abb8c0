"""FSDP2 (torch.distributed.fsdp.fully_shard) on one GPU, with and without CPUOffloadPolicy:
issue 16's one-GPU part. Per phase, llmcalc.track's peaks against `llmcalc estimate --fsdp full
--gpus 1 [--offload params]`.

    torchrun --standalone --nproc_per_node 1 benchmarks/offload/fsdp2_offload.py --offload params --out r.json

llama-3.2-1b in bf16 (random weights from the card's config), every decoder layer and the root
sharded, torch AdamW with its defaults (foreach), batch 4 x 1024 tokens, 3 steps.
"""

import argparse
import json
import os

import torch
import torch.distributed as dist
import transformers
from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

import llmcalc
from llmcalc.profile.runner import hf_config
from llmcalc.resolve import load_card

p = argparse.ArgumentParser()
p.add_argument("--model", default="llama-3.2-1b")
p.add_argument("--offload", choices=["none", "params"], default="none")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq", type=int, default=1024)
p.add_argument("--steps", type=int, default=3)
p.add_argument("--out", required=True)
args = p.parse_args()

def rss() -> dict[str, int]:
    """This process's resident set now and at its peak (VmHWM), bytes."""
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return {k: int(status[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


dist.init_process_group("nccl")
rank = dist.get_rank()
torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
card = load_card(args.model)
torch.cuda.init()
torch.zeros(1, device="cuda")
rss_before = rss()  # the interpreter, torch and the CUDA runtime, before any model memory
offload = args.offload == "params"
build_on = "cpu" if offload else "cuda"
with torch.device(build_on):
    model = transformers.AutoModelForCausalLM.from_config(hf_config(card, "sdpa"), dtype=torch.bfloat16)
policy = {"offload_policy": CPUOffloadPolicy()} if offload else {}
for layer in model.model.layers:
    fully_shard(layer, **policy)
fully_shard(model, **policy)
opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
options = dict(mode="train", dtype="bf16", batch=args.batch, seq=args.seq, optimizer="adamw-foreach", fsdp="full",
               gpus=dist.get_world_size())
if offload:
    options |= {"offload": "params", "cpu_memory": 256}
tracker = llmcalc.track(model=args.model, **options).start()
ids = torch.randint(0, card.vocab_size, (args.batch, args.seq), device="cuda")
for _ in range(args.steps):
    with tracker.phase("forward"):
        loss = model(input_ids=ids, labels=ids).loss
    with tracker.phase("backward"):
        loss.backward()
    with tracker.phase("optimizer"):
        opt.step()
        opt.zero_grad(set_to_none=True)
torch.cuda.synchronize()
report = tracker.report()
if rank == 0:
    print(report)
    with open(args.out, "w") as f:
        json.dump(report.to_dict() | {"rss_before_model": rss_before, "rss_end": rss(),
                                      "offload": args.offload, "world_size": dist.get_world_size(),
                                      "estimate_options": options, "torch": torch.__version__}, f, indent=1)
dist.destroy_process_group()
