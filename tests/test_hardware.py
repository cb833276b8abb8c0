from pathlib import Path

import pytest

from llmcalc.errors import InputError
from llmcalc.hardware import catalog, get_gpu, load_catalog


def test_catalog_has_the_named_gpus():
    ids = set(catalog())
    assert len(ids) >= 16
    assert {"v100-sxm2-32gb", "t4", "a10g", "l4", "l40s", "rtx-3090", "rtx-4090", "rtx-5090", "a100-sxm-40gb",
            "a100-sxm-80gb", "a100-pcie-80gb", "h100-sxm-80gb", "h100-pcie-80gb", "h100-nvl-94gb", "h200",
            "b200", "mi300x"} <= ids


def test_h100_memory_is_what_nvidia_smi_shows():
    assert get_gpu("h100-sxm-80gb").memory_bytes == 81559 * 2**20


def test_unknown_gpu_closest():
    with pytest.raises(InputError, match=r"^unknown GPU 'h100'; closest: h100-nvl-94gb, h100-pcie-80gb, h100-sxm-80gb$"):
        get_gpu("h100")


def test_bad_catalog_lists_every_problem(tmp_path: Path):
    bad = tmp_path / "gpus.yaml"
    bad.write_text("gpus:\n  - id: x\n    name: X\n    memory_mib: 0\n    bandwidth_tbs: 1\n    source: s\n"
                   "    tflops: {bf17: 1}\n    colour: red\n")
    with pytest.raises(InputError) as exc:
        load_catalog(bad)
    assert str(exc.value) == (f"{bad}: gpus[0]: unknown keys: colour; gpus[0].memory_mib: must be a positive "
                              "integer, got 0; gpus[0].tflops.bf17: unknown dtype (one of fp32, tf32, fp16, bf16, fp8, int8)")
