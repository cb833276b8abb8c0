"""The workload, and facts about the reference stack that the memory model and the generated
allocation orders both use (which SDPA kernel runs). Below memory.py and alloc_order.py: pure,
no torch."""

from __future__ import annotations

from dataclasses import dataclass, replace

from llmcalc.cards import ModelCard
from llmcalc.precision import PRECISIONS

MODES = ("infer", "train")
ATTENTIONS = ("sdpa", "eager")
ALLOCATORS = ("default", "expandable")  # PyTorch caching allocator: default, expandable_segments:True
# LLM.int8's input columns holding an outlier (|x| >= 6.0), which bitsandbytes multiplies in 16 bits:
# a trained checkpoint's handful (Dettmers et al. 2022), or every column (the bound; random weights).
INT8_OUTLIERS = ("few", "all")

@dataclass(frozen=True)
class Workload:
    """What runs: mode, storage and compute precision, sizes, and the training options."""

    mode: str = "infer"
    dtype: str = "bf16"  # how weights are stored
    autocast: str | None = None  # torch autocast dtype (mixed precision)
    batch: int = 1
    seq: int = 512  # prompt tokens (infer) or sequence length (train)
    gen: int = 128  # new tokens (infer)
    beams: int = 1
    kv_dtype: str | None = None  # default: the compute dtype
    grad_checkpointing: bool = False
    optimizer: str = "adamw"
    attention: str = "sdpa"
    allocator: str = "default"  # PyTorch's caching allocator: default, or expandable segments
    int8_outliers: str = "few"  # INT8_OUTLIERS: LLM.int8's outlier columns (--dtype int8 only)

    @property
    def compute_dtype(self) -> str:
        """dtype of activations: the autocast dtype, else the weights' if float, else bf16."""
        if self.autocast:
            return self.autocast
        if self.dtype == "int8":
            # LLM.int8 quantizes fp16 activations (bitsandbytes casts any other dtype to fp16
            # first) and transformers loads 8-bit models in fp16.
            return "fp16"
        return self.dtype if PRECISIONS[self.dtype].is_float else "bf16"


def math_sdpa(card: ModelCard, w: Workload) -> bool:
    """SDPA runs its math kernel (seq^2 scores) when its flash and memory-efficient kernels
    cannot take the heads: fp32 with grouped-query attention (the memory-efficient kernel, the
    fp32 path, does not take enable_gqa; PyTorch 2.11, measured), and transformers' Falcon,
    which hands SDPA fewer key/value heads than query heads without enable_gqa, in any dtype."""
    if w.attention != "sdpa" or card.kv_heads == card.num_heads:
        return False
    return card.family == "falcon" or PRECISIONS[w.compute_dtype].bits == 32


def math_sdpa_repeats_kv(card: ModelCard) -> bool:
    """Whether the math path copies k and v to every head (enable_gqa: all but Falcon)."""
    return card.family != "falcon"


def reference_attention(card: ModelCard, w: Workload) -> tuple[Workload, list[str]]:
    """The attention the reference stack runs: a family without an SDPA path in transformers
    (gpt-oss: eager, flash or flex kernels only) runs eager where SDPA was asked for."""
    if w.attention == "sdpa" and not card.sdpa:
        return replace(w, attention="eager"), [
            f"transformers has no SDPA attention for {card.family}: estimated with eager attention"]
    return w, []
