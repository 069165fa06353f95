"""Differentiate public NumPy code, unmodified, in both modes against finite differences.

For every function of the corpus (see ``functions.py``): the compiled primal
``jvpvjp.jit(f)`` must reproduce plain NumPy's ``f`` to 1e-12 (relative to the output's
largest element), and ``check_grads`` must find forward mode, reverse mode and central
finite differences in agreement. Both run on the "numpy" backend (no compile time); a
subset runs again on the "numba" backend.
"""
import functools
import inspect

import numpy as np
import pytest

import jvpvjp
from jvpvjp.testing import check_grads, use_backend

from .functions import CORPUS, KNOWN_FAILURES, NUMBA_SUBSET, TOLERANCES

_BY_NAME = {name: (f, args) for name, f, args in CORPUS}
# A known failure's reason starts with the exception it raises: "TracingError: ...".
_RAISES = {"TracingError": jvpvjp.TracingError, "ValueError": ValueError,
           "NotImplementedError": NotImplementedError, "AttributeError": AttributeError}


def _assert_same(got, ref):
    leaves_got, tree_got = jvpvjp.tree_flatten(got)
    leaves_ref, tree_ref = jvpvjp.tree_flatten(ref)
    assert tree_got == tree_ref, f"output structure {tree_got} differs from NumPy's {tree_ref}"
    for g, r in zip(leaves_got, leaves_ref):
        g, r = np.asarray(g), np.asarray(r)
        assert g.shape == r.shape, f"output shape {g.shape} differs from NumPy's {r.shape}"
        scale = float(np.max(np.abs(r))) if r.size else 0.0
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12 * scale,
                                   err_msg="jvpvjp.jit(f) differs from NumPy's f")


def _check(name, f, args, backend):
    with use_backend(backend):
        expected = f(*args)
        _assert_same(jvpvjp.jit(f)(*args), expected)
        check_grads(f, args, order=1, modes=("fwd", "rev"), **TOLERANCES.get(name, {}))


@pytest.mark.parametrize("name,f,args", [pytest.param(*c, id=c[0]) for c in CORPUS])
def test_corpus(name, f, args):
    _check(name, f, args, "numpy")


@pytest.mark.parametrize("name", NUMBA_SUBSET)
def test_corpus_numba(name):
    f, args = _BY_NAME[name]
    _check(name, f, args, "numba")


@pytest.mark.parametrize("name,f,args,reason", [
    pytest.param(*k, id=k[0], marks=pytest.mark.xfail(
        strict=True, reason=k[3], raises=_RAISES[k[3].split(":", 1)[0]]))
    for k in KNOWN_FAILURES])
def test_known_failure(name, f, args, reason):
    _check(name, f, args, "numpy")


def test_corpus_size():
    assert len(CORPUS) >= 40
    names = [c[0] for c in CORPUS] + [k[0] for k in KNOWN_FAILURES]
    assert len(names) == len(set(names))


def _source_object(f):
    """The object whose definition carries the citation: a bound method's class, a
    partial's function, the function a test harness calls."""
    if isinstance(f, functools.partial):
        return _source_object(f.func)
    if inspect.ismethod(f):
        return type(f.__self__)
    return getattr(f, "corpus_source", f)


@pytest.mark.parametrize("name,f", [pytest.param(c[0], c[1], id=c[0])
                                    for c in CORPUS + [k[:3] for k in KNOWN_FAILURES]])
def test_cited(name, f):
    """Every function (or its class) has a comment above it naming its public source."""
    obj = _source_object(f)
    comments = inspect.getcomments(obj) or ""
    assert "https://github.com/" in comments, f"{name}: no citation above its definition"


def test_functions_are_plain_numpy():
    """The corpus runs as plain NumPy: outputs are finite at the chosen points."""
    for name, f, args in CORPUS:
        leaves, _ = jvpvjp.tree_flatten(f(*args))
        assert all(np.all(np.isfinite(np.asarray(x))) for x in leaves), name
