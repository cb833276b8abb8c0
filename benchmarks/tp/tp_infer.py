"""Tensor-parallel inference with transformers' tp_plan="auto" under torchrun (issue 16): per rank,
the weights, the prefill's peak and the KV cache after prefill and decode, the device total (NVML)
and what NCCL adds beside PyTorch. Random weights saved once to --ckpt (the Hub is not reachable).

    torchrun --standalone --nproc_per_node 2 benchmarks/tp/tp_infer.py --model llama-3.2-1b --ckpt /tmp/ck --out r.jsonl
"""

import argparse
import json
import os
import time

import torch
import torch.distributed as dist
import transformers

from llmcalc.profile.runner import hf_config
from llmcalc.resolve import load_card

p = argparse.ArgumentParser()
p.add_argument("--model", default="llama-3.2-1b")
p.add_argument("--ckpt", required=True)
p.add_argument("--batch", type=int, default=8)
p.add_argument("--seq", type=int, default=1024)
p.add_argument("--gen", type=int, default=32)
p.add_argument("--device", default="cuda")
p.add_argument("--out", required=True)
args = p.parse_args()

card = load_card(args.model)
rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
local = int(os.environ.get("LOCAL_RANK", 0))
cuda = args.device == "cuda"
if cuda:
    torch.cuda.set_device(local)
if rank == 0 and not os.path.exists(os.path.join(args.ckpt, "config.json")):
    with torch.device(args.device):  # random init on the GPU: minutes faster than on the CPU
        model = transformers.AutoModelForCausalLM.from_config(hf_config(card, "sdpa"), dtype=torch.bfloat16)
    model.save_pretrained(args.ckpt)
    del model
    if cuda:
        torch.cuda.empty_cache()


def nvml_used() -> int:
    if not cuda:
        return 0
    import pynvml

    pynvml.nvmlInit()
    h = pynvml.nvmlDeviceGetHandleByIndex(local)
    return next((q.usedGpuMemory for q in pynvml.nvmlDeviceGetComputeRunningProcesses(h) if q.pid == os.getpid()), 0)


stats = {}
if cuda:
    torch.cuda.synchronize()
    stats["context_before_nccl_bytes"] = nvml_used() - torch.cuda.memory_reserved()
dist.init_process_group("nccl" if cuda else "gloo", device_id=torch.device("cuda", local) if cuda else None)
dist.barrier()
if cuda:
    torch.cuda.synchronize()
    stats["context_bytes"] = nvml_used() - torch.cuda.memory_reserved()  # with NCCL's communicator
t0 = time.time()
model = transformers.AutoModelForCausalLM.from_pretrained(args.ckpt, dtype=torch.bfloat16, tp_plan="auto")
model.eval()
if cuda:
    torch.cuda.synchronize()
    stats["weights_bytes"] = torch.cuda.memory_allocated()
    stats["after_load_device_bytes"] = nvml_used()
    torch.cuda.reset_peak_memory_stats()
ids = torch.randint(0, card.vocab_size, (args.batch, args.seq), device=model.device)
with torch.inference_mode():
    out = model(input_ids=ids, use_cache=True, logits_to_keep=1)  # as generate() prefills
    if cuda:
        torch.cuda.synchronize()
        stats["prefill_peak_bytes"] = torch.cuda.max_memory_allocated()
        stats["after_prefill_allocated_bytes"] = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    cache = out.past_key_values
    token = out.logits[:, -1:].argmax(-1)
    del out
    for _ in range(args.gen):
        out = model(input_ids=token, past_key_values=cache, use_cache=True)
        token = out.logits[:, -1:].argmax(-1)
        cache = out.past_key_values
        del out
if cuda:
    torch.cuda.synchronize()
    stats["decode_peak_bytes"] = torch.cuda.max_memory_allocated()
    stats["peak_reserved_bytes"] = torch.cuda.max_memory_reserved()
    stats["device_total_bytes"] = nvml_used()
    stats["reserved_bytes"] = torch.cuda.memory_reserved()
kv = sum(t.numel() * t.element_size() for layer in cache.layers for t in (layer.keys, layer.values) if t is not None)
stats["kv_cache_bytes"] = kv
stats["kv_shape"] = list(cache.layers[0].keys.shape)
row = {"case": f"tp {args.model} --dtype bf16 --batch {args.batch} --seq {args.seq} --gen {args.gen} --gpus {world} --tp {world}",
       "rank": rank, "world": world, "seconds": round(time.time() - t0, 1), "torch": torch.__version__,
       "transformers": transformers.__version__, **stats}
print(json.dumps(row), flush=True)
with open(f"{args.out}.rank{rank}", "w") as f:
    f.write(json.dumps(row) + "\n")
dist.barrier()
dist.destroy_process_group()
