import os

# Fixed terminal width so rich output is stable under CliRunner.
os.environ["COLUMNS"] = "120"
os.environ.setdefault("TERM", "dumb")
# The replayed allocation orders' disk cache (llmcalc.alloc_order.replayed_peaks): a fresh one per
# test session, so that no test reads what an older checkout wrote.
if "LLMCALC_CACHE_DIR" not in os.environ:
    import tempfile

    os.environ["LLMCALC_CACHE_DIR"] = tempfile.mkdtemp(prefix="llmcalc-test-cache-")
