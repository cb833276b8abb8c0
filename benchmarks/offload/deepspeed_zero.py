"""DeepSpeed ZeRO stages 1-3 and ZeRO-Offload (issue 16): per phase and rank, torch's peak
allocated and the process's RSS, against `llmcalc estimate --zero S --gpus N [--offload
optimizer|params]`. Measured on one GPU; on N GPUs each rank writes OUT with .rankR before .json.

    torchrun --standalone --nproc_per_node 1 benchmarks/offload/deepspeed_zero.py --stage 2 --out r.json

llama-3.2-1b in bf16 (random weights from the card's config), DeepSpeed's own AdamW (FusedAdam
on the GPU, DeepSpeedCPUAdam where the optimizer is offloaded: both built just in time), batch
4 x 1024 tokens, 3 steps of engine(...), engine.backward(loss), engine.step(). `--buckets small`
sets every bucket DeepSpeed sizes to a tenth (or less) of its default.
"""

import argparse
import json
import os
import time

import torch
import transformers

from llmcalc.profile.runner import hf_config
from llmcalc.resolve import load_card

p = argparse.ArgumentParser()
p.add_argument("--model", default="llama-3.2-1b")
p.add_argument("--stage", type=int, choices=[1, 2, 3], required=True)
p.add_argument("--offload", choices=["none", "optimizer", "params"], default="none")
p.add_argument("--buckets", choices=["default", "small"], default="default")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq", type=int, default=1024)
p.add_argument("--steps", type=int, default=3)
p.add_argument("--grad-checkpointing", action="store_true")
p.add_argument("--trace-init", action="store_true",
               help="record the allocations of deepspeed.initialize: the tensors alive at its peak, with their frames")
p.add_argument("--no-zero-init", action="store_true",
               help="stage 3: build the model whole and let deepspeed.initialize partition it (transformers "
                    "builds a ZeRO-3 model under deepspeed.zero.Init, the default here)")
p.add_argument("--out", required=True)
args = p.parse_args()


def rss() -> dict[str, int]:
    """This process's resident set now and at its peak (VmHWM), bytes."""
    status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
    return {k: int(status[k].split()[0]) * 1024 for k in ("VmRSS", "VmHWM")}


def device_used() -> int:
    free, total = torch.cuda.mem_get_info()
    return total - free


class Phases:
    """Per phase: the largest peak allocated/reserved over its runs, allocated at its end, RSS."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, int]] = {}
        self.max_reserved = 0
        self.tracing = False
        self.bounds: list[tuple[str, int]] = []  # (phase, index of its first event in the trace)

    def run(self, name, fn):
        torch.cuda.synchronize()
        if self.tracing:
            self.bounds.append((name, len(torch.cuda.memory._snapshot()["device_traces"][0])))
        torch.cuda.reset_peak_memory_stats()
        out = fn()
        torch.cuda.synchronize()
        row = self.rows.setdefault(name, {"peak_allocated": 0, "peak_reserved": 0, "runs": 0})
        row["peak_allocated"] = max(row["peak_allocated"], torch.cuda.max_memory_allocated())
        row["peak_reserved"] = max(row["peak_reserved"], torch.cuda.max_memory_reserved())
        row["allocated_end"] = torch.cuda.memory_allocated()
        row["device_used_end"] = device_used()
        row["rss_end"] = rss()["VmRSS"]
        row["runs"] += 1
        self.max_reserved = max(self.max_reserved, row["peak_reserved"])
        return out


import deepspeed  # noqa: E402  (after argparse: its import is slow)

deepspeed.init_distributed("nccl")
torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
card = load_card(args.model)
torch.zeros(1, device="cuda")
rss_start = rss()  # the interpreter, torch, DeepSpeed and the CUDA runtime, before any model memory
used_start = device_used()
zero: dict = {"stage": args.stage}
if args.buckets == "small":
    zero |= {"reduce_bucket_size": 50_000_000, "allgather_bucket_size": 50_000_000}
    if args.stage == 3:
        zero |= {"stage3_prefetch_bucket_size": 5_000_000, "stage3_max_live_parameters": 100_000_000,
                 "stage3_param_persistence_threshold": 10_000}
if args.offload in ("optimizer", "params"):
    zero["offload_optimizer"] = {"device": "cpu"}
if args.offload == "params":
    zero["offload_param"] = {"device": "cpu"}
config = {"train_micro_batch_size_per_gpu": args.batch, "gradient_accumulation_steps": 1,
          "bf16": {"enabled": True}, "optimizer": {"type": "AdamW", "params": {"lr": 1e-5}},
          "zero_optimization": zero, "steps_per_print": 10**9}
phases = Phases()
build_on = "cpu" if args.offload == "params" else "cuda"
t0 = time.perf_counter()


zero_init = args.stage == 3 and not args.no_zero_init


def build():
    if zero_init:  # as transformers' from_pretrained/from_config do under a ZeRO-3 config
        with deepspeed.zero.Init(config_dict_or_path=config):
            return transformers.AutoModelForCausalLM.from_config(hf_config(card, "sdpa"), dtype=torch.bfloat16)
    with torch.device(build_on):
        return transformers.AutoModelForCausalLM.from_config(hf_config(card, "sdpa"), dtype=torch.bfloat16)


model = phases.run("load", build)
if args.grad_checkpointing:
    model.gradient_checkpointing_enable()
rss_model = rss()
if args.trace_init:
    torch.cuda.memory._record_memory_history(max_entries=500_000, stacks="python")
engine, *_ = phases.run("initialize", lambda m=model: deepspeed.initialize(model=m, config=config,
                                                                       model_parameters=m.parameters()))
init_peak_tensors = []
if args.trace_init:  # replay the trace: the live tensors at initialize's peak, largest first
    live, cur, peak, at_peak = {}, 0, 0, {}
    for ev in torch.cuda.memory._snapshot()["device_traces"][0]:
        if ev["action"] == "alloc":
            frames = [f"{f['filename'].split('/')[-1]}:{f['line']}:{f['name']}" for f in ev.get("frames", [])
                      if "deepspeed" in f["filename"] or "transformers" in f["filename"]][:4]
            live[ev["addr"]] = (ev["size"], " <- ".join(frames))
            cur += ev["size"]
        elif ev["action"] == "free_completed" and ev["addr"] in live:
            cur -= live.pop(ev["addr"])[0]
        if cur > peak:
            peak, at_peak = cur, dict(live)
    init_peak_tensors = sorted(at_peak.values(), reverse=True)[:25]
    torch.cuda.memory._record_memory_history(enabled=None)
del model
rss_init = rss()
gen = torch.Generator(device="cpu").manual_seed(0)
ids = torch.randint(0, card.vocab_size, (args.batch, args.seq), generator=gen).cuda()
step_times = []
for i in range(args.steps):
    allocated_before_trace = torch.cuda.memory_allocated()
    if i == args.steps - 1:  # the last step's allocator events, for attributing each phase's peak
        torch.cuda.memory._record_memory_history(max_entries=200_000, stacks="python", context=None)
        phases.tracing = True
    t = time.perf_counter()
    loss = phases.run("forward", lambda: engine(input_ids=ids, labels=ids, use_cache=False).loss)
    phases.run("backward", lambda x=loss: engine.backward(x))
    del loss
    phases.run("optimizer_step", engine.step)
    step_times.append(time.perf_counter() - t)
events = []
for ev in torch.cuda.memory._snapshot()["device_traces"][0]:
    events.append([ev["action"], ev["addr"], ev["size"]])  # indices match last_step_bounds
torch.cuda.memory._record_memory_history(enabled=None)
options = {"mode": "train", "dtype": "bf16", "batch": args.batch, "seq": args.seq, "optimizer": "adamw",
           "zero": args.stage, "gpus": world, "grad_checkpointing": args.grad_checkpointing}
if args.offload != "none":
    options |= {"offload": args.offload, "cpu_memory": 1024}
case = (f"{'offload ' if args.offload != 'none' else ''}zero{args.stage} {args.model} --dtype bf16 --batch {args.batch} "
        f"--seq {args.seq} --gpus {world}" + (f" --offload {args.offload}" if args.offload != "none" else "")
        + (" --grad-checkpointing" if args.grad_checkpointing else "")
        + (" --buckets small" if args.buckets == "small" else "")
        + (" --no-zero-init" if args.stage == 3 and args.no_zero_init else ""))
doc = {"case": case, "zero_init": zero_init, "rank": rank, "world_size": world, "zero_config": zero, "phases": phases.rows, "rss_start": rss_start, "rss_after_model": rss_model,
       "rss_after_initialize": rss_init, "rss_end": rss(), "device_used_start": used_start,
       "device_used_end": device_used(), "peak_reserved_process": phases.max_reserved,
       "step_seconds": step_times, "last_step_events": events, "last_step_bounds": phases.bounds,
       "allocated_before_last_step": allocated_before_trace, "optimizer_class": type(engine.optimizer).__name__,
       "inner_optimizer": type(getattr(engine.optimizer, "optimizer", engine.optimizer)).__name__,
       "estimate_options": options, "init_peak_tensors": init_peak_tensors,
       "env": {"torch": torch.__version__, "transformers": transformers.__version__, "deepspeed": deepspeed.__version__,
               "gpu": torch.cuda.get_device_name(), "cuda": str(torch.version.cuda)}}
if rank == 0:
    print(json.dumps({k: v for k, v in doc.items() if not k.startswith("last_step")}), flush=True)
out = args.out if world == 1 else args.out.replace(".json", f".rank{rank}.json")
with open(out, "w") as f:
    json.dump(doc, f, indent=1)
