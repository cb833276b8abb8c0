#!/bin/bash
# The device runs behind docs/watch.md: `llmcalc watch` (NVML + the torch hook) around a user's
# training loop, generate() script, Trainer job and a 2-rank torchrun job; llmcalc.track and
# TrackerCallback inside them; Ctrl-C on a GPU job. Results under $OUT/watch.
#   bash benchmarks/watch/run_device.sh        (on the GPU machine, from the repository root)
export PYTHONPATH=.
W=$OUT/watch
mkdir -p $W
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > $W/env.txt
python -c "import torch, transformers; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__)" >> $W/env.txt
T="--mode train --dtype bf16 --optimizer adamw-foreach"
F="--mode train --dtype bf16 --optimizer adamw"
run() { name=$1; shift; echo "== $name"; timeout 300 python -m llmcalc watch --torch-hook --json "$@" > $W/$name.json 2> $W/$name.err; echo "rc=$?"; tail -3 $W/$name.err; }
run train-1b --model llama-3.2-1b $T --batch 4 --seq 1024 -- python benchmarks/watch/train_loop.py --model llama-3.2-1b --batch 4 --seq 1024
run train-1b-tracked --model llama-3.2-1b $T --batch 4 --seq 1024 -- python benchmarks/watch/train_loop.py --model llama-3.2-1b --batch 4 --seq 1024 --track $W/track-train-1b.json
run trainer-1b --model llama-3.2-1b $T --batch 4 --seq 1024 -- python benchmarks/watch/trainer.py --model llama-3.2-1b --batch 4 --seq 1024 --out $W/track-trainer-1b.json
run generate-1b --model llama-3.2-1b --dtype bf16 --batch 8 --seq 512 --gen 128 -- python benchmarks/watch/generate.py --model llama-3.2-1b --batch 8 --seq 512 --gen 128
run generate-8b --model llama-3.1-8b --dtype bf16 --batch 16 --seq 1024 --gen 64 -- python benchmarks/watch/generate.py --model llama-3.1-8b --batch 16 --seq 1024 --gen 64
run train-qwen7b-tracked --model qwen2.5-7b $T --batch 2 --seq 1024 -- python benchmarks/watch/train_loop.py --model qwen2.5-7b --batch 2 --seq 1024 --track $W/track-train-qwen7b.json
run train-qwen7b-fused-tracked --model qwen2.5-7b $F --batch 2 --seq 1024 -- python benchmarks/watch/train_loop.py --model qwen2.5-7b --batch 2 --seq 1024 --fused --track $W/track-train-qwen7b-fused.json
echo "== profile"
timeout 200 python -m llmcalc profile qwen2.5-7b --mode train --dtype bf16 --batch 2 --seq 1024 --optimizer adamw-foreach --json > $W/profile-qwen7b-foreach.json 2> $W/profile.err; echo "rc=$?"
run torchrun-1b --model llama-3.2-1b $T --batch 2 --seq 1024 -- torchrun --standalone --nproc_per_node 2 benchmarks/watch/train_loop.py --model llama-3.2-1b --batch 2 --seq 1024 --steps 3
# Ctrl-C: SIGINT to watch while a GPU job runs (the child holds 4 GiB)
echo "== interrupt"
python -m llmcalc watch --torch-hook --json -- python -c "import torch, time; x = torch.empty(2**30, device='cuda'); time.sleep(120)" > $W/interrupt.json 2> $W/interrupt.err &
pid=$!; sleep 15; kill -INT $pid; wait $pid; echo "rc=$?" | tee $W/interrupt.rc
nvidia-smi --query-compute-apps=pid,used_memory --format=csv > $W/after-interrupt.txt
# the table output, as a user sees it
python -m llmcalc watch --model llama-3.2-1b --dtype bf16 --batch 8 --seq 512 --gen 128 -- python benchmarks/watch/generate.py --batch 8 > $W/table.txt 2>&1
tar czf $OUT/watch.tgz -C $OUT watch && rm -rf $W
echo done
