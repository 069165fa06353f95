"""Timing helpers: warm-up excluded, medians with min and max over repeats."""
from __future__ import annotations

import time

import numpy as np


def first_call(fn):
    """(seconds, result) of one call: trace + compile for the JIT tools."""
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def measure(fn, budget=0.4, repeat=7, max_number=10_000):
    """Median, min and max seconds per call; ``number`` calls per repeat sized to ``budget``."""
    fn()
    t = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t, 1e-7)
    number = int(min(max_number, max(1, budget / repeat / once)))
    times = []
    for _ in range(repeat if once * number * repeat < 60 else 3):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return {"median": float(np.median(times)), "min": float(np.min(times)),
            "max": float(np.max(times)), "number": number, "repeat": len(times)}
