"""What a workload provides: one `Case` per size."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass
class Case:
    """One workload at one size.

    ``fn(*args)`` is the plain NumPy function (run by NumPy and traced by jvpvjp);
    ``argnums`` are the differentiated arguments. ``njit_primal(*args)`` and
    ``njit_vg(*args) -> (value, grad_0, grad_1, ...)`` are the hand-written Numba versions.
    ``peers`` maps a peer name (``"jax"``, ``"torch"``, ``"autograd"``) to a function
    ``build(module) -> f`` giving the same function written for that library, with the
    same positional arguments. ``skip`` maps a tool name to the reason it is not run.
    """
    workload: str
    label: str          # e.g. "n=1e5"
    size: float         # x axis of the plots
    cls: str            # "small", "medium" or "large"
    fn: Callable
    args: tuple
    argnums: tuple
    njit_primal: Callable | None = None
    njit_vg: Callable | None = None
    peers: dict = field(default_factory=dict)
    skip: dict = field(default_factory=dict)
    rtol: float = 1e-8
    atol: float = 1e-10
    info: dict = field(default_factory=dict)     # sizes and parameters, for the JSON
    extra_tools: dict = field(default_factory=dict)   # name -> (primal, vg) builders
    reference: Any = None


TOOLS = ("jvpvjp", "njit", "numpy", "jax", "torch", "autograd")


def fmt_time(t):
    """Seconds as a short string in the most readable unit."""
    if t is None:
        return "–"
    if t < 1e-6:
        return f"{t * 1e9:.0f} ns"
    if t < 1e-3:
        return f"{t * 1e6:.3g} µs"
    if t < 1:
        return f"{t * 1e3:.3g} ms"
    return f"{t:.3g} s"


_UNITS = ((1e-6, 1e9, "ns"), (1e-3, 1e6, "µs"), (1.0, 1e3, "ms"), (math.inf, 1.0, "s"))


def fmt_range(median, lo, hi):
    """'12.3 µs (11.9–13.0)': min and max in the median's unit."""
    for limit, scale, unit in _UNITS:
        if median < limit:
            break
    def g(t):
        v = t * scale
        return f"{v:.3g}" if v < 1000 else f"{v:.0f}"
    return f"{g(median)} {unit} ({g(lo)}–{g(hi)})"


def fmt_num(n):
    """1000 -> 1e3, 5 -> 5."""
    n = int(n)
    if n >= 1000 and n % 10 ** (len(str(n)) - 1) == 0:
        lead = n // 10 ** (len(str(n)) - 1)
        exp = len(str(n)) - 1
        return f"{lead}e{exp}" if lead != 1 else f"1e{exp}"
    return str(n)
