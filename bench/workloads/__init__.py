"""One module per workload. Each defines ``NAME``, ``TITLE``, ``sizes(mode)`` (a list of
dicts of keyword arguments for ``make``, each with ``cls``: small, medium or large) and
``make(**size) -> Case``; the Jacobian workload has its own runner (``KIND = "jacobian"``).
"""
import importlib

NAMES = ["logsumexp", "logsumexp_user", "lstsq", "gmm", "mlp", "scalar_chain", "jacobian", "einsum", "linsolve"]


def load(name):
    return importlib.import_module(f"{__name__}.{name}")
