"""Tests generated from the primitive registry.

Every primitive's test cases run (1) on the NumPy interpreter over Hypothesis-drawn shapes
(with broadcasting) and values, checking JVP and VJP against central finite differences and
each other, to second order; and (2) through the Numba backend on fixed shapes, compared
with the interpreter, first traced and compiled, then replayed from the cache at new values.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, strategies as st

import jvpvjp
from jvpvjp import make_oplist, value_and_grad, jvp
from jvpvjp.primitives import REGISTRY, load_all
from jvpvjp.testing import case_arguments, check_grads, fixed_case_arguments, use_backend

load_all()
CASES = [(prim, case) for prim in REGISTRY.values() for case in prim.tests]
IDS = [f"{p.name}-{c.name or i}" for i, (p, c) in enumerate(CASES)]


def _float_result(case):
    """Whether the case's function has a floating result (a derivative to check): true of
    every differentiable primitive's cases, and of those of positions (argsort, argmax)
    used to move floats."""
    args = fixed_case_arguments(case, np.random.default_rng(0))
    return np.result_type(case.fn(*args)).kind == "f"


DIFF_CASES = [(p, c) for p, c in CASES if p.name != "stop_gradient" and
              (p.differentiable or _float_result(c))]
DIFF_IDS = [f"{p.name}-{c.name}" for p, c in DIFF_CASES]


def test_every_primitive_is_complete():
    for name, prim in REGISTRY.items():
        assert callable(prim.impl), name
        assert callable(prim.abstract_eval), name
        assert callable(prim.lower), f"{name} has no Numba lowering"
        assert prim.tests, f"{name} has no test case"
        assert callable(prim.batch_rule), f"{name} has no batching rule"
        if prim.differentiable:
            assert callable(prim.jvp_rule), f"{name} has no JVP rule"
            assert callable(prim.vjp_rule), f"{name} has no VJP rule"
        if prim.kind == "elementwise":
            assert prim.nin and prim.scalar, f"{name}: an elementwise row needs nin, scalar"
        if prim.kind == "reduction":
            assert prim.numpy_name, f"{name}: a reduction names its NumPy function"


def test_every_ufunc_a_primitive_names_reaches_it():
    from jvpvjp.backend import tape, vector_tape
    from jvpvjp.numpy_api import HANDLED_UFUNCS
    for name, prim in REGISTRY.items():
        for u in prim.numpy:
            assert u in HANDLED_UFUNCS, f"{name}: numpy.{u.__name__} has no handler"
            x = np.linspace(0.3, 0.9, 3 * u.nin).reshape(u.nin, 3)
            ol = make_oplist(lambda *a: u(*a))(*x)
            assert any(op.prim is prim for op in ol.ops), (name, u.__name__, ol)
        if prim.kind == "elementwise":          # both tapes run every elementwise row
            assert name in tape.opcodes() and name in vector_tape.opcodes(), name


def test_a_new_elementwise_primitive_is_one_row(tmp_path):
    """A row added outside the package works in both modes on every backend and tier,
    with nothing else edited (fresh process and kernel cache: the tapes' loops are
    generated again with the new branch)."""
    code = textwrap.dedent("""
        import numpy as np, jvpvjp
        from jvpvjp.primitives.elementwise import unary
        from jvpvjp.testing import use_backend
        cube_root = unary("cube_root_row_test", np.cbrt, lambda x, y: 1.0 / (3.0 * y * y),
                          "np.cbrt({0})", numpy=())
        def f(x):
            return np.sum(cube_root(x * x + 1.0) * x)
        x = np.array([0.5, -1.5, 2.0])
        y = np.cbrt(x * x + 1.0)
        want = y + x * (2.0 * x) / (3.0 * y * y)
        for backend in ("numpy", "numba", "vtape"):
            with use_backend(backend):
                np.testing.assert_allclose(jvpvjp.grad(f)(x), want, rtol=1e-13)
                _, t = jvpvjp.jvp(f, (x,), (np.ones(3),))
                np.testing.assert_allclose(t, want.sum(), rtol=1e-13)
        with use_backend("tape"):
            g = jvpvjp.grad(lambda s: cube_root(s * s + 1.0) * s)
            np.testing.assert_allclose(g(0.5), want[0], rtol=1e-13)
        print("ok")
    """)
    env = dict(os.environ, JVPVJP_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("JVPVJP_BACKEND", None)
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stdout + p.stderr


_fixed_args = fixed_case_arguments


@pytest.mark.parametrize("prim,case", CASES, ids=IDS)
def test_case_records_its_primitive(prim, case, rng):
    ol = make_oplist(case.fn)(*_fixed_args(case, rng))
    assert any(op.prim is prim for op in ol.ops), f"{case.name} never records {prim.name}"


@pytest.mark.parametrize("prim,case", DIFF_CASES, ids=DIFF_IDS)
@given(data=st.data())
def test_rules_against_finite_differences(prim, case, data):
    args = data.draw(case_arguments(case))
    check_grads(case.fn, args, order=2, atol=case.atol, rtol=case.rtol, eps=case.eps,
                backend="numpy")


def _compare(a, b, what):
    for x, y in zip(jvpvjp.tree_flatten(a)[0], jvpvjp.tree_flatten(b)[0]):
        assert np.shape(x) == np.shape(y), what
        assert np.result_type(x) == np.result_type(y), what
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12, err_msg=what)


def _modes_on_both_backends(fn, args, tangents, backend="numba"):
    def scalar(*a):
        return np.sum(fn(*a) * 1.0)
    argnums = tuple(range(len(args)))
    with use_backend("numpy"):
        ref_vg = value_and_grad(scalar, argnums=argnums)(*args)
        ref_jvp = jvp(fn, args, tangents)
    vg = value_and_grad(scalar, argnums=argnums)
    with use_backend(backend):
        got_vg = vg(*args)
        got_jvp = jvp(fn, args, tangents)
    _compare(got_vg, ref_vg, "value_and_grad")
    _compare(got_jvp, ref_jvp, "jvp")
    return vg


@pytest.mark.parametrize("prim,case", DIFF_CASES, ids=DIFF_IDS)
def test_vector_tape_matches_interpreter(prim, case, rng):
    """The vector tape tier through the transforms (traced, transformed, simplified)."""
    from jvpvjp.backend import vector_tape
    args = _fixed_args(case, rng)
    if not vector_tape.supports(make_oplist(case.fn)(*args)):
        pytest.skip("the vector tape declines the program (float32 values, or an op it "
                    "leaves to the other tiers)")
    tangents = tuple(rng.standard_normal(np.shape(a)) for a in args)
    _modes_on_both_backends(case.fn, args, tangents, "vtape")


@pytest.mark.parametrize("prim,case", DIFF_CASES, ids=DIFF_IDS)
def test_numba_backend_matches_interpreter(prim, case, rng):
    args = _fixed_args(case, rng)
    tangents = tuple(rng.standard_normal(np.shape(a)) for a in args)
    vg = _modes_on_both_backends(case.fn, args, tangents)
    # replay from the cache at new values: no new trace
    args2 = _fixed_args(case, np.random.default_rng(1))
    with use_backend("numba"):
        traces = vg.cache_info()["traces"]
        vg(*args2)
        assert vg.cache_info()["traces"] == traces
    with use_backend("numpy"):
        ref = value_and_grad(lambda *a: np.sum(case.fn(*a) * 1.0),
                             argnums=tuple(range(len(args))))(*args2)
    with use_backend("numba"):
        _compare(vg(*args2), ref, "replayed value_and_grad")


SCALAR_CASES = [(p, c) for p, c in DIFF_CASES if c.shapes == "broadcast"]


@pytest.mark.parametrize("prim,case", SCALAR_CASES,
                         ids=[f"{p.name}-{c.name}" for p, c in SCALAR_CASES])
@pytest.mark.parametrize("backend", ["numba", "tape", "vtape"])
def test_compiled_backends_on_scalars(prim, case, backend, rng):
    args = _fixed_args(case, rng, scalar=True)
    tangents = tuple(np.float64(rng.standard_normal()) for _ in args)
    _modes_on_both_backends(case.fn, args, tangents, backend)


def test_tape_runs_every_scalar_opcode():
    from jvpvjp.backend import tape
    scalar_prims = {p.name for p, c in CASES if c.shapes == "broadcast"}
    missing = scalar_prims - set(tape.opcodes())
    assert not missing, f"scalar primitives without a tape opcode: {missing}"


NONDIFF = [(p, c) for p, c in CASES if not p.differentiable and not _float_result(c)]


@pytest.mark.parametrize("prim,case", NONDIFF, ids=[f"{p.name}-{c.name}" for p, c in NONDIFF])
def test_non_differentiable_primitives_forward(prim, case, rng):
    args = _fixed_args(case, rng)
    args = tuple(np.round(a, 1) for a in args)     # exact ties for eq / ne
    expected = case.fn(*args)
    scalar_args = tuple(a.reshape(-1)[0] for a in args)
    for backend in ("numpy", "numba", "tape", "vtape"):
        with use_backend(backend):
            if backend != "tape":
                out, pullback = jvpvjp.vjp(lambda *a: case.fn(*a), *args)
                assert out.dtype == np.bool_
                np.testing.assert_array_equal(out, expected)
            out = jvpvjp.jit(lambda *a: case.fn(*a))(*scalar_args)
            assert np.result_type(out) == np.bool_
            assert out == case.fn(*scalar_args)


def test_stop_gradient_has_zero_derivative():
    from jvpvjp import grad, stop_gradient
    for backend in ("numpy", "numba"):
        with use_backend(backend):
            g = grad(lambda x: np.sum(x * stop_gradient(x)))(np.array([1.0, -2.0]))
        np.testing.assert_allclose(g, [1.0, -2.0])
