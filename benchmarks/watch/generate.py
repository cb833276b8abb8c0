"""A user's own generate() script (docs/watch.md): random-weight model from a card's config,
greedy decoding of exactly --gen new tokens for --batch prompts of --seq tokens.

    python benchmarks/watch/generate.py --model llama-3.2-1b --batch 8 --seq 512 --gen 128
"""

import argparse

import torch
import transformers

from llmcalc.profile.runner import hf_config
from llmcalc.resolve import load_card

p = argparse.ArgumentParser()
p.add_argument("--model", default="llama-3.2-1b")
p.add_argument("--batch", type=int, default=8)
p.add_argument("--seq", type=int, default=512)
p.add_argument("--gen", type=int, default=128)
args = p.parse_args()

card = load_card(args.model)
with torch.device("cuda"):
    model = transformers.AutoModelForCausalLM.from_config(hf_config(card, "sdpa"), dtype=torch.bfloat16)
model.eval()
ids = torch.randint(0, card.vocab_size, (args.batch, args.seq), device="cuda")
with torch.inference_mode():
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=args.gen,
                         min_new_tokens=args.gen, do_sample=False, pad_token_id=0)
print("generated", tuple(out.shape))
