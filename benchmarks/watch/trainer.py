"""transformers' Trainer with llmcalc.TrackerCallback (docs/watch.md): pure-bf16 model, AdamW
(torch), synthetic causal-LM data; writes the tracker's report as JSON.

    python benchmarks/watch/trainer.py --model llama-3.2-1b --batch 4 --seq 1024 --out report.json
"""

import argparse
import json
import tempfile

import torch
import transformers

import llmcalc
from llmcalc.profile.runner import hf_config
from llmcalc.resolve import load_card

p = argparse.ArgumentParser()
p.add_argument("--model", default="llama-3.2-1b")
p.add_argument("--batch", type=int, default=4)
p.add_argument("--seq", type=int, default=1024)
p.add_argument("--steps", type=int, default=4)
p.add_argument("--out", required=True)
args = p.parse_args()

card = load_card(args.model)
with torch.device("cuda"):
    model = transformers.AutoModelForCausalLM.from_config(hf_config(card, "sdpa"), dtype=torch.bfloat16)


class Synthetic(torch.utils.data.Dataset):
    def __len__(self):
        return args.batch * args.steps

    def __getitem__(self, i):
        ids = torch.randint(0, card.vocab_size, (args.seq,))
        return {"input_ids": ids, "labels": ids}


# optim="adamw_torch" is torch.optim.AdamW with its defaults: the foreach implementation
tracker = llmcalc.track(model=args.model, mode="train", dtype="bf16", batch=args.batch, seq=args.seq,
                        optimizer="adamw-foreach")
with tempfile.TemporaryDirectory() as tmp:
    targs = transformers.TrainingArguments(output_dir=tmp, per_device_train_batch_size=args.batch,
                                           max_steps=args.steps, report_to=[], save_strategy="no",
                                           logging_strategy="no", optim="adamw_torch", learning_rate=1e-5)
    trainer = transformers.Trainer(model=model, args=targs, train_dataset=Synthetic(),
                                   callbacks=[llmcalc.TrackerCallback(tracker)])
    trainer.train()
report = tracker.report()
print(report)
with open(args.out, "w") as f:
    json.dump(report.to_dict(), f, indent=1)
