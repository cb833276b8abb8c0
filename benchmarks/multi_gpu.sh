#!/bin/bash
# Issue 16's runs that need several GPUs, in one call on nvidia-h200-x4 or -x8 (ask `status` first):
#   run(kind="nvidia-h200-x4", carry=[".ds"], command="bash benchmarks/multi_gpu.sh 4")
# N = the machine's GPUs. Everything lands in $OUT/multi.tar.gz; then, here:
#   tar xzf multi.tar.gz; cat multi/fsdp.jsonl multi/pp.jsonl >> benchmarks/results/scale/h200-x$N.jsonl
#   python benchmarks/scale_validate.py tp-rows multi/tp.jsonl --out benchmarks/results/scale/h200-x$N-tp.jsonl
#   (multi/nccl.jsonl: NCCL's memory by world size, for calibration.NCCL_COMMUNICATOR_BYTES)
#   python benchmarks/scale_validate.py deepspeed-rows multi/deepspeed.tar.gz --out benchmarks/results/scale/h200-x$N-deepspeed.jsonl
#   python benchmarks/scale_validate.py report
# The machine's NCCL settings stay as they are (NVLink multicast off).
set -u
N=${1:-4}
export PYTHONPATH=. PYTHONUNBUFFERED=1
M=$OUT/multi; mkdir -p $M
t0=$(date +%s)
step() { echo "$(( $(date +%s) - t0 ))s $*"; }
# NCCL beside PyTorch at every world size up to N
for n in 1 2 4 8; do
  [ $n -le $N ] || continue
  timeout 120 torchrun --standalone --nproc_per_node $n benchmarks/tp/nccl_memory.py --out $M/nccl.jsonl > $M/nccl-$n.log 2>&1
  step "nccl $n rc=$?"
done
# FSDP2 at N ranks: two models, with and without checkpointing
timeout 300 torchrun --standalone --nproc_per_node $N benchmarks/scale_validate.py fsdp --model llama-3.2-1b \
  --batch 4 --seq 1024 --out $M/fsdp.jsonl > $M/fsdp-1b.log 2>&1; step "fsdp llama-3.2-1b rc=$?"
timeout 300 torchrun --standalone --nproc_per_node $N benchmarks/scale_validate.py fsdp --model qwen2.5-0.5b \
  --batch 8 --seq 1024 --checkpointing --out $M/fsdp.jsonl > $M/fsdp-q.log 2>&1; step "fsdp qwen2.5-0.5b rc=$?"
# tensor-parallel inference at N and pipeline-parallel training at 2 and N stages
timeout 240 torchrun --standalone --nproc_per_node $N benchmarks/tp/tp_infer.py --model llama-3.2-3b --ckpt /tmp/ck \
  --batch 8 --seq 2048 --gen 32 --out $M/tp.jsonl > $M/tp.log 2>&1; step "tp $N rc=$?"
cat $M/tp.jsonl.rank* > $M/tp.jsonl 2>/dev/null; rm -f $M/tp.jsonl.rank*
for n in 2 $N; do
  timeout 240 torchrun --standalone --nproc_per_node $n benchmarks/tp/pp_train.py --model llama-2-7b --micro-batch 1 \
    --microbatches 8 --seq 1024 --out $M/pp.jsonl > $M/pp-$n.log 2>&1; step "pp $n rc=$?"
done
# DeepSpeed ZeRO 1-3 over N ranks, default and small buckets (its own tarball)
NPROC=$N bash benchmarks/offload/run_deepspeed.sh 1 2 3 2:none:small 3:none:small 3:params > $M/deepspeed.log 2>&1
step "deepspeed rc=$?"; mv $OUT/deepspeed.tar.gz $M/ 2>/dev/null; rm -rf $OUT/ds
tar czf $OUT/multi.tar.gz -C $OUT multi && rm -rf $M
step done
