"""llmcalc watch's hook: placed first on PYTHONPATH for the watched command when `--torch-hook`
is given, so every Python process under it (each torchrun rank too) reports PyTorch's own peak
allocated and reserved memory at exit, with no change to the script.

At interpreter exit it writes one JSON file per process into LLMCALC_WATCH_DIR, and only if the
process used CUDA through torch: the hook never imports torch itself. The sitecustomize that this
one shadows (a site-packages or conda one) is still run.
"""

import atexit
import json
import os
import sys


def _report() -> None:
    torch = sys.modules.get("torch")
    out = os.environ.get("LLMCALC_WATCH_DIR")
    if torch is None or not out:
        return
    try:
        if not torch.cuda.is_initialized():
            return
        # llmcalc.track resets torch's peak statistics per phase; it keeps the process's peaks
        tracked = getattr(sys.modules.get("llmcalc.tracking"), "PROCESS_PEAKS", {})
        devices = []
        for index in range(torch.cuda.device_count()):
            stats = torch.cuda.memory_stats(index)
            if not stats.get("allocated_bytes.all.peak"):
                continue
            alloc, reserved = tracked.get(index, (0, 0))
            devices.append({"index": index, "name": torch.cuda.get_device_name(index),
                            "peak_allocated_bytes": max(alloc, stats.get("allocated_bytes.all.peak", 0)),
                            "peak_reserved_bytes": max(reserved, stats.get("reserved_bytes.all.peak", 0)),
                            "allocated_bytes": stats.get("allocated_bytes.all.current", 0),
                            "reserved_bytes": stats.get("reserved_bytes.all.current", 0),
                            "num_ooms": stats.get("num_ooms", 0)})
        doc = {"pid": os.getpid(), "rank": os.environ.get("RANK"), "local_rank": os.environ.get("LOCAL_RANK"),
               "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "argv": sys.argv[:4], "devices": devices,
               "torch": torch.__version__}
        path = os.path.join(out, f"torch-{os.getpid()}.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(path + ".tmp", path)
    except Exception:  # the hook must never change how the user's program ends
        pass


atexit.register(_report)


def _chain() -> None:
    """Run the sitecustomize this file shadows, if there is one further down sys.path."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # as Python itself does for a failing sitecustomize
        print(f"Error in sitecustomize; set PYTHONVERBOSE for traceback:\n{type(exc).__name__}: {exc}",
              file=sys.stderr)


_chain()
