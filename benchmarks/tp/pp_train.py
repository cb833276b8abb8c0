"""Pipeline-parallel training with torch.distributed.pipelining (issue 16): each rank holds a stage
of a Llama-family model (its share of the decoder layers; the first also the embedding, the last
the final norm and lm_head) and runs a schedule (1F1B by default) over the micro-batches. Per rank,
the peak allocated of the step, against `llmcalc estimate --gpus P --pp P --batch MICRO
--grad-accum M`.

    torchrun --standalone --nproc_per_node 2 benchmarks/tp/pp_train.py --model llama-2-7b --out pp.jsonl
    torchrun --standalone --nproc_per_node 2 benchmarks/tp/pp_train.py --device cpu --model \
        tests/assets/tiny-llama.yaml --out /tmp/pp.jsonl      (a smoke test with gloo)

Random weights built from the card's config, bf16 (fp32 on the CPU), torch AdamW (fused on CUDA),
3 steps. A model with tied embeddings gets separate first- and last-stage copies, as pipelining
requires; pick an untied one (llama-2-7b, llama-3.1-8b) to compare like with like.
"""

import argparse
import json
import os

import torch
import torch.distributed as dist
import transformers
from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe

from llmcalc.profile.runner import hf_config
from llmcalc.resolve import load_card

p = argparse.ArgumentParser()
p.add_argument("--model", default="llama-2-7b")
p.add_argument("--micro-batch", type=int, default=1)
p.add_argument("--microbatches", type=int, default=4)
p.add_argument("--seq", type=int, default=1024)
p.add_argument("--schedule", choices=["1f1b", "gpipe"], default="1f1b")
p.add_argument("--steps", type=int, default=3)
p.add_argument("--device", default="cuda")
p.add_argument("--out", required=True)
args = p.parse_args()

cuda = args.device == "cuda"
local = int(os.environ.get("LOCAL_RANK", 0))
device = torch.device("cuda", local) if cuda else torch.device("cpu")
if cuda:
    torch.cuda.set_device(device)
dist.init_process_group("nccl" if cuda else "gloo", **({"device_id": device} if cuda else {}))
rank, world = dist.get_rank(), dist.get_world_size()
card = load_card(args.model)
dtype = torch.bfloat16 if cuda else torch.float32


class Stage(nn.Module):
    """Layers [lo, hi) of the decoder; the first stage embeds, the last normalises and projects."""

    def __init__(self, model: nn.Module, lo: int, hi: int, first: bool, last: bool) -> None:
        super().__init__()
        self.embed = model.model.embed_tokens if first else None
        self.layers = nn.ModuleList(model.model.layers[lo:hi])
        self.rotary = model.model.rotary_emb
        self.norm = model.model.norm if last else None
        self.lm_head = model.lm_head if last else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x) if self.embed is not None else x
        pos = torch.arange(h.shape[1], device=h.device).unsqueeze(0)
        pe = self.rotary(h, pos)
        for layer in self.layers:
            h = layer(h, position_ids=pos, position_embeddings=pe)
        if self.lm_head is not None:
            h = self.lm_head(self.norm(h))
        return h


per = card.num_layers // world
lo, hi = rank * per, (rank + 1) * per
with torch.device("meta"):
    full = transformers.AutoModelForCausalLM.from_config(hf_config(card, "sdpa"), dtype=dtype)
stage_module = Stage(full, lo, hi, rank == 0, rank == world - 1)
stage_module.to_empty(device=device)
with torch.device(device):  # the rotary tables, computed (to_empty left them uninitialised)
    stage_module.rotary = type(full.model.rotary_emb)(config=full.config)
with torch.no_grad():
    for prm in stage_module.parameters():
        prm.normal_(0, 0.02)
stage = PipelineStage(stage_module, rank, world, device)
loss_fn = (lambda logits, y: nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten()))
schedule = (Schedule1F1B if args.schedule == "1f1b" else ScheduleGPipe)(stage, args.microbatches, loss_fn=loss_fn)
opt = torch.optim.AdamW(stage_module.parameters(), lr=1e-5, **({"fused": True} if cuda else {}))
batch = args.micro_batch * args.microbatches
gen = torch.Generator().manual_seed(0)
ids = torch.randint(0, card.vocab_size, (batch, args.seq), generator=gen).to(device)
peaks = []
for _ in range(args.steps):
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    if rank == 0:
        schedule.step(ids)
    elif rank == world - 1:
        schedule.step(target=ids)
    else:
        schedule.step()
    opt.step()
    opt.zero_grad(set_to_none=True)
    if cuda:
        torch.cuda.synchronize()
        peaks.append(torch.cuda.max_memory_allocated())
row = {"rank": rank, "layers": [lo, hi], "params": sum(q.numel() for q in stage_module.parameters()),
       "peak_allocated_bytes": max(peaks) if peaks else 0}
if cuda:
    free, total = torch.cuda.mem_get_info()
    row["device_total_bytes"] = total - free
rows = [None] * world
dist.all_gather_object(rows, row)
if rank == 0:
    case = (f"pp {args.model} --dtype {'bf16' if cuda else 'fp32'} --batch {args.micro_batch} --seq {args.seq} "
            f"--gpus {world} --pp {world} --grad-accum {args.microbatches}")
    line = {"case": case, "schedule": args.schedule,
            "ranks": [{"rank": r["rank"], "phases": {"step": r["peak_allocated_bytes"]},
                       **({"device_total_bytes": r["device_total_bytes"]} if "device_total_bytes" in r else {}),
                       "layers": r["layers"], "params": r["params"]} for r in rows],
            "env": {"torch": torch.__version__, "transformers": transformers.__version__,
                    **({"gpu": torch.cuda.get_device_name(), "cuda": str(torch.version.cuda)} if cuda else {})},
            "source": "benchmarks/tp/pp_train.py"}
    print(json.dumps(line), flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(line) + "\n")
dist.destroy_process_group()
