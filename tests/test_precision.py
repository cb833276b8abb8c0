import pytest

from llmcalc.errors import InputError
from llmcalc.precision import PRECISIONS, get_precision


def test_float_bytes():
    assert [PRECISIONS[d].tensor_bytes(1000) for d in ("fp32", "fp16", "bf16")] == [4000, 2000, 2000]


def test_int8_row_scales():
    # 4096 x 4096 int8 = 16,777,216 B + one fp32 scale per output row: 4096 * 4 = 16,384 B.
    assert PRECISIONS["int8"].matrix_bytes(4096, 4096) == 16_793_600


def test_nf4_block_scales():
    # 16,777,216 weights at 4 bits = 8,388,608 B + 16,777,216 / 64 = 262,144 fp32 absmax = 1,048,576 B.
    assert PRECISIONS["nf4"].matrix_bytes(4096, 4096) == 9_437_184


def test_int4_group_scales():
    # 8,388,608 B + 131,072 groups of 128 x 2.5 B (fp16 scale + 4-bit zero) = 327,680 B.
    assert PRECISIONS["int4"].matrix_bytes(4096, 4096) == 8_716_288


def test_fp8_per_tensor_scale():
    assert PRECISIONS["fp8"].matrix_bytes(4096, 4096) == 16_777_216 + 4


def test_unknown_dtype_message():
    with pytest.raises(InputError) as exc:
        get_precision("fp12")
    assert str(exc.value) == ("unknown dtype 'fp12'; choose one of fp32, fp16, bf16, fp8, int8, int4, nf4, nf4-dq, "
                              "awq-int4, gptq-int4, gptq-int8, w4a16, int8-channel, fp8-channel, fp8-block, mxfp4, "
                              "nvfp4 (did you mean fp32, fp16, fp8?)")
