"""What NCCL holds on each GPU beside PyTorch, by world size (issue 16: "NCCL's own buffers: measure
what each world size adds to the device total"). One process per GPU under torchrun; per rank, the
GPU's used memory (NVML through mem_get_info: one process per GPU, so the device's use is this
process's) minus torch's reserved memory, after each step:

    context      CUDA initialised, a first matmul (cuBLAS)
    init         init_process_group("nccl", device_id=...) and a barrier: the communicator
    all_reduce   a 64 MiB all_reduce (DDP, DeepSpeed ZeRO-1/2, TP)
    all_gather   a 64 MiB all_gather_into_tensor (FSDP, ZeRO-3 parameters)
    reduce_scatter  a 64 MiB reduce_scatter_tensor (FSDP, ZeRO-2/3 gradients)
    subgroup     a second process group over the same ranks and one all_reduce in it (DeepSpeed
                 and FSDP create groups of their own)

    torchrun --standalone --nproc_per_node N benchmarks/tp/nccl_memory.py --out nccl-N.jsonl

Rank 0 appends one JSON line with every rank's figures to --out. The environment's NCCL settings
are kept as they are (on the lent machines NVLink multicast is off: NCCL_NVLS_ENABLE=0).
"""

import argparse
import json
import os

import torch
import torch.distributed as dist

p = argparse.ArgumentParser()
p.add_argument("--out", required=True)
p.add_argument("--mib", type=int, default=64)
args = p.parse_args()

local = int(os.environ.get("LOCAL_RANK", 0))
torch.cuda.set_device(local)
device = torch.device("cuda", local)


def non_torch() -> int:
    torch.cuda.synchronize()
    free, total = torch.cuda.mem_get_info()
    return (total - free) - torch.cuda.memory_reserved()


x = torch.randn(1024, 1024, device=device)
(x @ x).sum().item()
steps = {"context": non_torch()}
dist.init_process_group("nccl", device_id=device)
dist.barrier()
steps["init"] = non_torch()
world = dist.get_world_size()
n = args.mib * 2**20 // 4
t = torch.ones(n, device=device)
dist.all_reduce(t)
steps["all_reduce"] = non_torch()
out = torch.empty(n * world, device=device)
dist.all_gather_into_tensor(out, t)
steps["all_gather"] = non_torch()
shard = torch.empty(n // world, device=device)
dist.reduce_scatter_tensor(shard, t)
steps["reduce_scatter"] = non_torch()
group = dist.new_group(list(range(world)))
dist.all_reduce(t, group=group)
steps["subgroup"] = non_torch()
torch.cuda.synchronize()
rows = [None] * world
dist.all_gather_object(rows, {"rank": dist.get_rank(), "non_torch_bytes": steps})
if dist.get_rank() == 0:
    line = {"world_size": world, "ranks": rows, "gpu": torch.cuda.get_device_name(), "torch": torch.__version__,
            "nccl": ".".join(map(str, torch.cuda.nccl.version())),
            "nvls": os.environ.get("NCCL_NVLS_ENABLE", "unset")}
    print(json.dumps(line), flush=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(line) + "\n")
dist.destroy_process_group()
