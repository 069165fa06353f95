"""jvpvjp: exact derivatives of plain NumPy code, compiled with Numba, in either mode.

>>> import numpy as np
>>> from jvpvjp import grad
>>> grad(lambda w: np.sum(np.tanh(w) ** 2))(np.array([0.5, -1.0]))   # doctest: +ELLIPSIS
array([ 0.7268..., -0.6397...])
"""
from . import numpy_api as _numpy_api  # noqa: F401  (installs NumPy protocol handlers)
from . import config
from .api import (cache_info, grad, jit, jvp, make_oplist, stop_gradient, value_and_grad,
                  vjp)
from .backend.tiers import wait_for_compiles
from .custom import checkpoint, custom_jvp, custom_vjp, remat
from .dispatch import clear_caches, explain_cache
from .jacobian import hessian, hvp, jacfwd, jacrev
from .oplist import OpList
from .primitives import load_all as _load_all
from .sparse import hessian_sparsity, jacobian_sparsity, sparse_hessian, sparse_jacobian
from .pytree import tree_flatten, tree_map, tree_unflatten
from .tracing import TracingError
from .vectorize import vmap

_load_all()

_SUBMODULES = ("nn", "optim", "distributed")


def __getattr__(name):
    """``jvpvjp.nn``, ``jvpvjp.optim``, ``jvpvjp.distributed``: imported on first use."""
    if name in _SUBMODULES:
        import importlib
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__version__ = "0.1.0"
__all__ = ["grad", "value_and_grad", "jvp", "vjp", "jacfwd", "jacrev", "hessian", "hvp", "vmap", "jit", "make_oplist", "stop_gradient",
           "custom_jvp", "custom_vjp", "checkpoint", "remat", "sparse_jacobian",
           "sparse_hessian", "jacobian_sparsity", "hessian_sparsity",
           "cache_info", "explain_cache", "wait_for_compiles", "clear_caches", "OpList", "TracingError", "config", "tree_flatten",
           "tree_unflatten", "tree_map"]
