"""Median, min and max time per call, with the first call (compile) timed separately."""
from __future__ import annotations

import gc
import time
import timeit


def first_call(fn):
    """Time one call: for a compiling tool this is trace + compile + one run."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def measure(fn, budget=0.25, repeat=11, max_number=100_000):
    """Time ``fn()`` (already warmed up) in ``repeat`` rounds of ``number`` calls each,
    ``number`` chosen so that all rounds together take about ``budget`` seconds. Calls
    slower than the budget get fewer rounds (at least 1). Returns seconds per call."""
    t0 = time.perf_counter()
    fn()
    t1 = time.perf_counter() - t0
    if t1 * 3 > budget:          # slow call: one call per round, as many rounds as fit
        number = 1
        repeat = max(1, min(repeat, int(budget / max(t1, 1e-9))))
        samples = [t1]
    else:
        number = max(1, min(max_number, int(budget / repeat / max(t1, 1e-9))))
        samples = []
    gc_was = gc.isenabled()
    gc.disable()
    try:
        samples += [t / number for t in timeit.repeat(fn, number=number, repeat=repeat)]
    finally:
        if gc_was:
            gc.enable()
    samples = samples[-repeat:] if number > 1 else samples
    samples.sort()
    n = len(samples)
    median = samples[n // 2] if n % 2 else 0.5 * (samples[n // 2 - 1] + samples[n // 2])
    return {"median": median, "min": samples[0], "max": samples[-1], "number": number,
            "repeat": n}
