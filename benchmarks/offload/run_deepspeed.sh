#!/bin/bash
# issue 16's DeepSpeed runs on one GPU (results tarred into $OUT/deepspeed.tar.gz). DeepSpeed is
# not in the device image: its source distribution and missing dependencies travel in .ds/
# (`carry: [".ds"]`), installed with DS_BUILD_OPS=0; FusedAdam and CPU Adam are built just in time.
#   [NPROC=N] bash benchmarks/offload/run_deepspeed.sh [CASE ...]   (N ranks, one per GPU; default 1)
# CASE: stage[:offload[:buckets[:model[:batch:seq[:ckpt]]]]], e.g. 2:optimizer, 2:none:default:qwen2.5-3b:4:1024:ckpt
set -u
export PYTHONPATH=.:/tmp/site PYTHONUNBUFFERED=1 TORCH_EXTENSIONS_DIR=/tmp/ext TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
R=$OUT/ds; mkdir -p $R
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .ds/*.whl || exit 1
DS_BUILD_OPS=0 python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/site \
  .ds/deepspeed-*.tar.gz > $R/install.log 2>&1 || { tail -20 $R/install.log; exit 1; }
t=$(date +%s)
python3 -c "from deepspeed.ops.op_builder import FusedAdamBuilder, CPUAdamBuilder
FusedAdamBuilder().load(); CPUAdamBuilder().load()" > $R/build.log 2>&1; echo "ops build rc=$? $(( $(date +%s) - t ))s"
tail -3 $R/build.log
CASES=${*:-1 2 3 2:none:small 3:none:small 2:optimizer 3:params}
for c in $CASES; do
  IFS=: read -r stage offload buckets model batch seq ckpt <<< "$c"
  name=zero$stage-${offload:-none}-${buckets:-default}${model:+-$model}${ckpt:+-ckpt}-gpus${NPROC:-1}
  extra="${model:+--model $model} ${batch:+--batch $batch} ${seq:+--seq $seq} ${ckpt:+--grad-checkpointing}"
  t=$(date +%s)
  timeout 240 torchrun --standalone --nproc_per_node ${NPROC:-1} benchmarks/offload/deepspeed_zero.py --stage $stage \
    --offload ${offload:-none} --buckets ${buckets:-default} $extra ${DS_ARGS:-} --out $R/$name.json > $R/$name.log 2>&1
  echo "$name rc=$? $(( $(date +%s) - t ))s"; grep -E "Error|error:" $R/$name.log | tail -3
done
tar czf $OUT/deepspeed.tar.gz -C $OUT ds
python3 - <<'PY'
import json, glob, os
for f in sorted(glob.glob(os.environ["OUT"] + "/ds/*.json")):
    d = json.load(open(f))
    ph = {k: round(v["peak_allocated"] / 2**30, 2) for k, v in d["phases"].items()}
    print(os.path.basename(f), d["optimizer_class"], d["inner_optimizer"], ph,
          "rss+", round((d["rss_end"]["VmHWM"] - d["rss_start"]["VmRSS"]) / 2**30, 2))
PY
