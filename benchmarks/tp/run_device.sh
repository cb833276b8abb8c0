#!/bin/bash
# issue 16 on nvidia-h200-x2: transformers' tensor-parallel inference at TP 1 and 2 (results in $OUT)
export PYTHONPATH=.
mkdir -p $OUT
M=${1:-llama-3.2-3b}
for n in ${NS:-1 2}; do
  timeout 200 torchrun --standalone --nproc_per_node $n benchmarks/tp/tp_infer.py --model $M --ckpt /tmp/ck-$M \
    --batch 8 --seq 2048 --gen 32 --out $OUT/tp-$M-$n.jsonl > $OUT/tp-$M-$n.log 2>&1; echo "tp $n rc=$?"
  grep '^{' $OUT/tp-$M-$n.log
done
cat $OUT/tp-$M-*.jsonl.rank* > $OUT/tp-$M.jsonl; rm -f $OUT/tp-$M-*.jsonl.rank*
