"""llmcalc: GPU memory, speed and hardware fit for LLM workloads."""

__version__ = "0.1.0"
