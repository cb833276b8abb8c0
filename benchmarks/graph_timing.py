"""Time GPU work as a serving engine runs it: captured once in a CUDA graph, then replayed
(engine_gemv.py, engine_attention.py, engine_step.py)."""

from __future__ import annotations

from collections.abc import Callable

import torch


def replay_ms(fn: Callable[[], object], calls: int = 1, timings: int = 20, warmup: int = 3) -> list[float]:
    """Milliseconds per call of `fn`: `warmup` eager calls (kernel selection, compilation), one
    on a side stream, then `calls` calls captured in one graph, replayed 3 times untimed and
    `timings` times timed with CUDA events (each timing over the whole graph, / calls)."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        fn()
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    for _ in range(3):
        graph.replay()
    times = []
    for _ in range(timings):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        graph.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / calls)
    return times
