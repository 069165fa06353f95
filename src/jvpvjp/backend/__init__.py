"""Backends turn an op list into a kernel: ``kernel(*inputs) -> tuple of outputs``.

One interface, chosen by name: ``"numba"`` generates one Python function per op list,
compiles it with Numba (and caches it on disk); long scalar op lists go instead to
``"tape"``, one precompiled interpreter loop (no compile time per program); ``"numpy"``
interprets the op list with the primitives' NumPy implementations (no compile time; also
the reference in tests).
"""
from __future__ import annotations

import numpy as np

from .. import config


class InterpreterKernel:
    def __init__(self, ol):
        self.oplist = ol

    def __call__(self, *args):
        from ..transforms import eval_oplist
        outs, guards = eval_oplist(self.oplist, args)
        return tuple(outs) + tuple(guards)


_BACKENDS = {}


def register_backend(name, compile_fn):
    _BACKENDS[name] = compile_fn


def compile_oplist(ol, backend=None):
    """Compile ``ol``; the kernel returns its outputs followed by its guard values."""
    name = backend or config.backend
    if name == "numba" and len(ol.ops) >= config.tape_threshold:
        from . import tape
        if tape.supports(ol):      # long scalar program: interpreter loop, no compile
            name = "tape"
    if name not in _BACKENDS and name in ("numba", "tape"):
        from . import numba_backend, tape  # noqa: F401  (they register themselves)
    try:
        return _BACKENDS[name](ol)
    except KeyError:
        raise ValueError(f"unknown backend {name!r}; choose one of "
                         f"{sorted(set(_BACKENDS) | {'numba', 'tape'})}") from None


register_backend("numpy", InterpreterKernel)


def as_kernel_arg(x, shape):
    """Scalars go to kernels as NumPy scalars, arrays as arrays."""
    return x[()] if shape == () and isinstance(x, np.ndarray) else x
