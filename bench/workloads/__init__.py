"""Benchmark workloads. Each module defines ``NAME``, ``SIZES`` (name -> parameters),
``QUICK`` (the sizes ``--quick`` runs) and ``make(**params) -> Problem``."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Problem:
    """One workload at one size.

    ``fn(xp, stop_gradient)`` returns the objective written against a NumPy-like module
    (NumPy for jvpvjp, ``jax.numpy``, ``autograd.numpy``), called as ``f(*params, *data)``.
    ``numba_vg(*params, *data) -> (value, grads)`` is the hand-written floor;
    ``torch_fn(torch)`` the PyTorch version, or None.
    """

    label: str
    params: tuple
    data: tuple
    fn: object
    numba_vg: object
    torch_fn: object = None
    jax_fn: object = None          # a JAX-specific objective (e.g. a rolled loop), if any
    notes: list = field(default_factory=list)
