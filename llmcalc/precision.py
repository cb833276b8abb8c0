"""Storage formats: bytes per element and the block-scale overhead of quantized formats.

A lookup table, not branches. Every format answers one question: how many bytes does a weight
matrix of `rows x cols` elements take when stored this way, scales included.
"""

from __future__ import annotations

import re
from math import ceil
from typing import NamedTuple

from llmcalc.errors import InputError, close_names


class Precision(NamedTuple):
    """A storage format: bits per element and the block-scale overhead of quantized ones."""

    name: str
    bits: int  # bits per stored element
    is_float: bool  # a format torch computes in directly (fp32/fp16/bf16)
    # Quantization scales: `scale_bytes` of metadata for every `block` elements. block == 0 means
    # one scale per matrix row (bitsandbytes LLM.int8 keeps one fp32 absmax per output row).
    block: int | None = None
    scale_bytes: float = 0.0
    note: str = ""
    # Layouts of pre-quantized checkpoints (docs/models.md): `group` input elements of one output
    # row share `group_bytes` of scale and zero point (AWQ, GPTQ, compressed-tensors; 0: one
    # group per row); `tile` x `tile` blocks share `tile_bytes` (block-wise FP8); `row_bytes` per
    # output row, `col_bytes` per input column (GPTQ's g_idx), `fixed_bytes` per matrix; a second
    # level of `block2` blocks with `scale2_bytes` each (bitsandbytes' double quantization).
    group: int | None = None
    group_bytes: float = 0.0
    tile: int | None = None
    tile_bytes: float = 0.0
    row_bytes: float = 0.0
    col_bytes: float = 0.0
    fixed_bytes: int = 0
    block2: int | None = None
    scale2_bytes: float = 0.0
    experts_only: bool = False  # only the MoE experts are stored so (gpt-oss's MXFP4)

    def matrix_bytes(self, rows: int, cols: int) -> int:
        """Bytes to store a rows x cols matrix (rows = output features), scales included."""
        elements = rows * cols
        meta = self.fixed_bytes + rows * self.row_bytes + cols * self.col_bytes
        if self.block is not None:
            blocks = rows if self.block == 0 else ceil(elements / self.block)
            meta += blocks * self.scale_bytes
            if self.block2:
                meta += ceil(blocks / self.block2) * self.scale2_bytes
        if self.group is not None:
            meta += rows * (ceil(cols / self.group) if self.group else 1) * self.group_bytes
        if self.tile:
            meta += ceil(rows / self.tile) * ceil(cols / self.tile) * self.tile_bytes
        return ceil(elements * self.bits / 8) + ceil(meta)

    def tensor_bytes(self, elements: int) -> int:
        """Bytes for an unquantized tensor stored in this (float) format."""
        return ceil(elements * self.bits / 8)

    @property
    def bytes_per_element(self) -> float:
        return self.bits / 8


class _Formats(dict[str, Precision]):
    """The named formats; a name with a group-size suffix (`awq-int4-g64`) derives from its
    base (`awq-int4`, group 128) with that group."""

    def __missing__(self, name: str) -> Precision:
        m = re.fullmatch(r"(.+)-g(\d+)", name)
        base = dict.get(self, m.group(1)) if m else None
        if m is None or base is None or base.group is None:
            raise KeyError(name)
        derived = base._replace(name=name, group=int(m.group(2)), note=f"{base.note.split(',')[0]}, group {m.group(2)}")
        self[name] = derived
        return derived


PRECISIONS: dict[str, Precision] = _Formats({
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
        # --- pre-quantized checkpoints (formulas and sources: docs/models.md) ---
        # bitsandbytes NF4 with double quantization (Linear4bit's own default, compress_statistics):
        # uint8 absmax per 64, an fp32 absmax per 256 of those, the two code books (1,088 B).
        Precision("nf4-dq", 4, False, block=64, scale_bytes=1, block2=256, scale2_bytes=4, fixed_bytes=1088,
                  note="bitsandbytes NF4, double-quantized absmax"),
        # AWQ GEMM: qweight int32 (in, out/8), qzeros int32 (in/g, out/8), fp16 scales (in/g, out):
        # 0.5 B per weight + 2.5 B per group of g inputs and output.
        Precision("awq-int4", 4, False, group=128, group_bytes=2.5, note="AWQ GEMM, group 128, fp16 scale + 4-bit zero"),
        # GPTQ: the same packing plus g_idx, one int32 per input column (stored with or without desc_act).
        Precision("gptq-int4", 4, False, group=128, group_bytes=2.5, col_bytes=4,
                  note="GPTQ, group 128, fp16 scale + 4-bit zero, int32 g_idx"),
        Precision("gptq-int8", 8, False, group=128, group_bytes=3, col_bytes=4,
                  note="GPTQ 8-bit, group 128, fp16 scale + 8-bit zero, int32 g_idx"),
        # compressed-tensors pack-quantized W4A16 (symmetric): int4 packed in int32, a 16-bit scale
        # per group, the weight_shape pair (16 B).
        Precision("w4a16", 4, False, group=128, group_bytes=2, fixed_bytes=16,
                  note="compressed-tensors W4A16, group 128, 16-bit scale"),
        # compressed-tensors channel-wise 8-bit weights (W8A8 int8 or FP8): a 16-bit scale per row.
        Precision("int8-channel", 8, False, row_bytes=2, note="compressed-tensors int8, 16-bit scale per row"),
        Precision("fp8-channel", 8, False, row_bytes=2, note="compressed-tensors FP8, 16-bit scale per row"),
        # Block-wise FP8 (DeepSeek-V3, Qwen3-FP8): an fp32 weight_scale_inv per 128 x 128 tile.
        Precision("fp8-block", 8, False, tile=128, tile_bytes=4, note="FP8 e4m3, fp32 scale per 128 x 128 tile"),
        # OCP MXFP4 (gpt-oss): 32 fp4 values (16 B) and one e8m0 scale (1 B); the experts only.
        Precision("mxfp4", 4, False, block=32, scale_bytes=1, experts_only=True,
                  note="MXFP4, e8m0 scale per 32, MoE experts only"),
        # NVFP4 (ModelOpt, compressed-tensors): fp4 pairs, an fp8 scale per 16, two fp32 globals.
        Precision("nvfp4", 4, False, block=16, scale_bytes=1, fixed_bytes=8, note="NVFP4, fp8 scale per 16"),
    )
})

FORMATS = tuple(PRECISIONS)  # the named formats (a group-size suffix derives more: awq-int4-g64)
FLOAT_DTYPES = tuple(name for name, p in PRECISIONS.items() if p.is_float)
HALF_DTYPES = ("fp16", "bf16")


def get_precision(name: str, what: str = "dtype") -> Precision:
    try:
        return PRECISIONS[name.lower()]
    except KeyError:
        hint = close_names(name.lower(), FORMATS)
        raise InputError(
            f"unknown {what} '{name}'; choose one of {', '.join(FORMATS)}" + (f" (did you mean {hint}?)" if hint else "")
        ) from None
