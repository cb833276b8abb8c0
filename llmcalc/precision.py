"""Storage formats: bytes per element and the block-scale overhead of quantized formats.

A lookup table, not branches. Every format answers one question: how many bytes does a weight
matrix of `rows x cols` elements take when stored this way, scales included.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil

from llmcalc.errors import InputError, close_names


@dataclass(frozen=True)
class Precision:
    """A storage format: bits per element and the block-scale overhead of quantized ones."""

    name: str
    bits: int  # bits per stored element
    is_float: bool  # a format torch computes in directly (fp32/fp16/bf16)
    # Quantization scales: `scale_bytes` of metadata for every `block` elements. block == 0 means
    # one scale per matrix row (bitsandbytes LLM.int8 keeps one fp32 absmax per output row).
    block: int | None = None
    scale_bytes: float = 0.0
    note: str = ""

    def matrix_bytes(self, rows: int, cols: int) -> int:
        """Bytes to store a rows x cols matrix (rows = output features), scales included."""
        elements = rows * cols
        data = ceil(elements * self.bits / 8)
        if self.block is None:
            return data
        blocks = rows if self.block == 0 else ceil(elements / self.block)
        return data + ceil(blocks * self.scale_bytes)

    def tensor_bytes(self, elements: int) -> int:
        """Bytes for an unquantized tensor stored in this (float) format."""
        return ceil(elements * self.bits / 8)

    @property
    def bytes_per_element(self) -> float:
        return self.bits / 8


PRECISIONS: dict[str, Precision] = {
    p.name: p
    for p in (
        Precision("fp32", 32, True),
        Precision("fp16", 16, True),
        Precision("bf16", 16, True),
        # fp8 e4m3 weights with one fp32 scale per tensor (torchao / transformers FP8): the
        # per-tensor scale is 4 bytes, counted as one block per matrix.
        Precision("fp8", 8, False, block=2**62, scale_bytes=4, note="e4m3, per-tensor fp32 scale"),
        # bitsandbytes LLM.int8 (Dettmers et al. 2022, arXiv 2208.07339): int8 weights and one
        # fp32 absmax ("SCB") per output row: rows x cols x 1 + rows x 4 bytes.
        Precision("int8", 8, False, block=0, scale_bytes=4, note="bitsandbytes LLM.int8, fp32 scale per row"),
        # GPTQ/AWQ int4: 4-bit weights, groups of 128 with an fp16 scale and a packed 4-bit zero
        # point each: 0.5 + (2 + 0.5) / 128 = 0.5195 bytes per weight.
        Precision("int4", 4, False, block=128, scale_bytes=2.5, note="GPTQ/AWQ, group 128, fp16 scale + 4-bit zero"),
        # bitsandbytes NF4 (Dettmers et al. 2023, QLoRA, arXiv 2305.14314) without double
        # quantization, the transformers default: one fp32 absmax per 64 weights:
        # 0.5 + 4 / 64 = 0.5625 bytes per weight.
        Precision("nf4", 4, False, block=64, scale_bytes=4, note="bitsandbytes NF4, fp32 absmax per 64"),
    )
}

FLOAT_DTYPES = tuple(name for name, p in PRECISIONS.items() if p.is_float)
HALF_DTYPES = ("fp16", "bf16")


def get_precision(name: str, what: str = "dtype") -> Precision:
    try:
        return PRECISIONS[name.lower()]
    except KeyError:
        hint = close_names(name.lower(), PRECISIONS)
        raise InputError(
            f"unknown {what} '{name}'; choose one of {', '.join(PRECISIONS)}" + (f" (did you mean {hint}?)" if hint else "")
        ) from None
