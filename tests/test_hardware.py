from pathlib import Path

import pytest

from llmcalc.errors import InputError
from llmcalc.hardware import catalog, get_gpu, gpu_for_device_name, load_catalog


def test_catalog_has_the_named_gpus():
    ids = set(catalog())
    assert len(ids) >= 16
    assert {"v100-sxm2-32gb", "t4", "a10g", "l4", "l40s", "rtx-3090", "rtx-4090", "rtx-5090", "a100-sxm-40gb",
            "a100-sxm-80gb", "a100-pcie-80gb", "h100-sxm-80gb", "h100-pcie-80gb", "h100-nvl-94gb", "h200",
            "b200", "mi300x"} <= ids


def test_catalog_has_the_added_gpus():
    assert {"a10", "rtx-a6000", "rtx-6000-ada", "rtx-4060", "rtx-4070", "rtx-4080", "l20", "h20-96gb",
            "h800-sxm-80gb", "a800-sxm-80gb", "b300", "gb200", "mi325x", "mi355x", "rtx-pro-6000-blackwell"} <= set(catalog())
    for g in catalog().values():  # dense peaks: a 16-bit rate never above the 8-bit one
        low, high = g.peak_flops.get("bf16", g.peak_flops.get("fp16")), g.peak_flops.get("fp8")
        assert not (low and high) or low <= high, g.id


@pytest.mark.parametrize("device_name, gpu_id", [
    ("NVIDIA A10", "a10"), ("NVIDIA A10G", "a10g"), ("NVIDIA H20", "h20-96gb"), ("NVIDIA H200", "h200"),
    ("NVIDIA GB200", "gb200"), ("NVIDIA B200", "b200"), ("NVIDIA B300 SXM6 AC", "b300"), ("NVIDIA L20", "l20"),
    ("NVIDIA RTX A6000", "rtx-a6000"), ("NVIDIA RTX 6000 Ada Generation", "rtx-6000-ada"),
    ("NVIDIA RTX PRO 6000 Blackwell Server Edition", "rtx-pro-6000-blackwell"),
    ("NVIDIA RTX PRO 6000 Blackwell Max-Q Workstation Edition", None), ("AMD Instinct MI355X", "mi355x"),
])
def test_device_names_find_their_entry(device_name, gpu_id):
    g = gpu_for_device_name(device_name)
    assert (g.id if g else None) == gpu_id


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
