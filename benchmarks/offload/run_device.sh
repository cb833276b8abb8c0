#!/bin/bash
# issue 16's one-GPU part on the device: FSDP2 with and without CPU offload (results in $OUT).
export PYTHONPATH=.
mkdir -p $OUT
python -m llmcalc watch --torch-hook --json --model llama-3.2-1b --mode train --dtype bf16 --batch 4 --seq 1024 \
  --optimizer adamw-foreach --fsdp full --gpus 1 -- \
  torchrun --standalone --nproc_per_node 1 benchmarks/offload/fsdp2_offload.py --offload none --out $OUT/fsdp2-1gpu.json \
  > $OUT/watch-fsdp2-1gpu.json 2> $OUT/fsdp2-1gpu.err; echo "rc=$?"; tail -12 $OUT/fsdp2-1gpu.err
timeout 400 torchrun --standalone --nproc_per_node 1 benchmarks/offload/fsdp2_offload.py --offload params \
  --out $OUT/fsdp2-1gpu-offload.json > $OUT/fsdp2-1gpu-offload.log 2>&1; echo "rc=$?"; tail -12 $OUT/fsdp2-1gpu-offload.log
