"""jacfwd, jacrev and hessian: layouts, both backends, nesting, guards and errors."""
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import jvpvjp
import jvpvjp.jacobian
from jvpvjp import grad, hessian, jacfwd, jacrev, jvp
from jvpvjp.backend import JacobianLoop, compile_jacobian, compile_oplist
from jvpvjp.jacobian import _programs
from jvpvjp.dispatch import Args as _Args, Trace as _Trace
from jvpvjp.primitives import REGISTRY, load_all
from jvpvjp.testing import use_backend

load_all()


@pytest.fixture(params=["blocks", "blocks_of_3", "one_by_one"])
def blocks(request, monkeypatch):
    """Jacobians with the linear part batched over blocks of seeds (all seeds in one block,
    or blocks of 3 with a partial last block), and one seed at a time."""
    if request.param == "one_by_one":
        monkeypatch.setattr(jvpvjp.config, "jacobian_block_elements", 0)
    if request.param == "blocks_of_3":
        monkeypatch.setattr(jvpvjp.jacobian, "MAX_BLOCK", 3)
    return request.param


def bench_function(rng, n, m):
    W, V, b = rng.normal(size=(m, n)), rng.normal(size=(m, n)), rng.normal(size=m)

    def f(x):
        return np.tanh(W @ x + b) * (V @ np.sin(x))

    def exact(x):
        t = np.tanh(W @ x + b)
        return ((1 - t ** 2) * (V @ np.sin(x)))[:, None] * W + t[:, None] * V * np.cos(x)
    return f, exact


def jacobian_by_jvp(f, args, argnum):
    """Column by column from jvp: the reference for the layout and the values."""
    x = np.asarray(args[argnum], np.float64)
    cols = []
    for i in range(x.size):
        e = np.zeros(x.size)
        e[i] = 1.0
        tangents = tuple(e.reshape(x.shape) if k == argnum else np.zeros(np.shape(a))
                         for k, a in enumerate(args))
        cols.append(np.asarray(jvp(f, tuple(args), tangents)[1]))
    out_shape = cols[0].shape
    return np.stack([c.reshape(-1) for c in cols], axis=1).reshape(out_shape + x.shape)


@pytest.mark.parametrize("backend", ["numba", "numpy", "vtape"])
@pytest.mark.parametrize("n,m", [(1, 1), (3, 5), (6, 2)])
def test_both_modes_match_the_closed_form(backend, n, m, rng, blocks):
    f, exact = bench_function(rng, n, m)
    x = rng.normal(size=n)
    with use_backend(backend):
        jf, jr = jacfwd(f), jacrev(f)
        for _ in range(2):      # traced, then replayed at new values
            for J in (jf(x), jr(x)):
                assert J.shape == (m, n) and J.dtype == np.float64
                np.testing.assert_allclose(J, exact(x), rtol=1e-12, atol=1e-14)
            x = rng.normal(size=n)
        assert jf.cache_info()["traces"] == 1 and jr.cache_info()["traces"] == 1


def test_layout_follows_jax(rng):
    def f(a, y):
        return {"u": a * y, "v": np.sum(y) * a ** 2, "w": np.outer(y, y)}

    a, y = 1.5, rng.normal(size=3)
    for jac in (jacfwd, jacrev):
        r = jac(f, argnums=(1, 0))(a, y)
        assert [np.shape(e) for e in r["u"]] == [(3, 3), (3,)]
        assert [np.shape(e) for e in r["v"]] == [(3,), ()]
        assert [np.shape(e) for e in r["w"]] == [(3, 3, 3), (3, 3)]
        np.testing.assert_allclose(r["u"][0], a * np.eye(3))
        np.testing.assert_allclose(r["u"][1], y)
        np.testing.assert_allclose(r["v"][0], np.full(3, a ** 2))
        np.testing.assert_allclose(r["v"][1], 2 * a * np.sum(y))
        np.testing.assert_allclose(r["w"][0], jacobian_by_jvp(f_w, (y,), 0))
        assert np.all(r["w"][1] == 0)
        single = jac(f, argnums=1)(a, y)
        np.testing.assert_allclose(single["u"], r["u"][0])


def f_w(y):
    return np.outer(y, y)


def test_matrix_arguments_and_pytree_inputs(rng):
    A = rng.normal(size=(2, 3))
    p = {"w": rng.normal(size=(3, 4)), "b": rng.normal(size=4)}

    def f(p, A):
        return np.tanh(A @ p["w"] + p["b"])

    for jac in (jacfwd, jacrev):
        J = jac(f)(p, A)
        assert J["w"].shape == (2, 4, 3, 4) and J["b"].shape == (2, 4, 4)
        np.testing.assert_allclose(J["w"], jacobian_by_jvp(lambda w: f({"w": w, "b": p["b"]},
                                                                      A), (p["w"],), 0),
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(J["b"], jacobian_by_jvp(lambda b: f({"w": p["w"], "b": b},
                                                                      A), (p["b"],), 0),
                                   rtol=1e-12, atol=1e-14)


def test_has_aux(rng):
    def f(x):
        return np.sin(x) * 2.0, {"norm": np.sum(x ** 2)}

    x = rng.normal(size=3)
    for jac in (jacfwd, jacrev):
        for _ in range(2):
            J, aux = jac(f, has_aux=True)(x)
            np.testing.assert_allclose(J, np.diag(2 * np.cos(x)), rtol=1e-12)
            np.testing.assert_allclose(aux["norm"], np.sum(x ** 2))


def test_float32_stays_float32(rng):
    x = rng.normal(size=3).astype(np.float32)
    for jac in (jacfwd, jacrev):
        J = jac(lambda x: np.exp(x) * x[0])(x)
        assert J.dtype == np.float32
        np.testing.assert_allclose(J, np.diag(np.exp(x) * x[0]) +
                                   np.outer(np.exp(x), [1, 0, 0]), rtol=1e-5)


def test_hessian(rng):
    A = rng.normal(size=(4, 4))

    def quad(x):
        return x @ A @ x + np.sum(np.sin(x))

    x = rng.normal(size=4)
    H = hessian(quad)(x)
    np.testing.assert_allclose(H, A + A.T - np.diag(np.sin(x)), rtol=1e-12, atol=1e-12)

    def rosen(x):
        return np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2)

    x = rng.normal(size=5)
    eps = 1e-6
    g = grad(rosen)
    fd = np.stack([(g(x + eps * e) - g(x - eps * e)) / (2 * eps) for e in np.eye(5)], axis=1)
    H = hessian(rosen)(x)
    np.testing.assert_allclose(H, H.T, rtol=1e-12)
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-4)
    # nested the other ways round agree
    np.testing.assert_allclose(jacrev(jacrev(rosen))(x), H, rtol=1e-12)
    np.testing.assert_allclose(jacfwd(jacfwd(rosen))(x), H, rtol=1e-12)
    np.testing.assert_allclose(jacrev(jacfwd(rosen))(x), H, rtol=1e-12)


def test_grad_through_a_jacobian(rng):
    f, exact = bench_function(rng, 3, 2)

    def frob(x):
        return np.sum(jacrev(f)(x) ** 2)

    x = rng.normal(size=3)
    eps = 1e-6
    fd = np.array([(np.sum(exact(x + eps * e) ** 2) - np.sum(exact(x - eps * e) ** 2))
                   / (2 * eps) for e in np.eye(3)])
    np.testing.assert_allclose(grad(frob)(x), fd, rtol=1e-6, atol=1e-8)


def test_cached_jacobian_respects_guards(rng):
    def f(x):
        if x[0] > 0:
            return np.sin(x)
        return x ** 3

    for jac in (jacfwd, jacrev):
        jf = jac(f)
        for x0 in [1.0, -1.0, 2.0, -2.0, 0.5]:
            x = np.array([x0, 0.3, -0.2])
            expected = np.diag(np.cos(x)) if x0 > 0 else np.diag(3 * x ** 2)
            np.testing.assert_allclose(jf(x), expected, rtol=1e-12)
        assert jf.cache_info()["traces"] == 2


def test_errors():
    with pytest.raises(TypeError, match="dtype int64"):
        jacfwd(lambda x: x)(np.arange(3))
    with pytest.raises(TypeError, match="floating-point outputs"):
        jacrev(lambda x: x > 0)(np.ones(3))
    with pytest.raises(ValueError, match="argnums"):
        jacfwd(lambda x: x, argnums=2)(np.ones(3))


def _spec_cases(rng):
    def several(a, x, B):            # scalar and array inputs and outputs, a matrix input
        y = np.tanh(B @ x) * a
        return y, np.sum(y * x[:2]), np.exp(B) * a
    W, V = rng.normal(size=(4, 5)), rng.normal(size=(5, 3))

    def products(x, y):     # each way a seed is scaled, reshaped and multiplied
        u = -(x / (1.5 + np.cos(x))) * 2.0
        z = W @ u + (y @ V.T).reshape(5)[:4] + np.sin(W.T @ np.tanh(W @ x))[:4]
        return np.tanh(z) * np.sum(V @ y[0]), x @ W.T @ (W @ x)

    return [(several, (0.7, rng.normal(size=3), rng.normal(size=(2, 3)))),
            (products, (rng.normal(size=5), rng.normal(size=(1, 3))))]


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_compiled_loop_equals_the_generic_loop(mode, rng, blocks):
    for fn, args in _spec_cases(rng):
        nums = tuple(range(len(args)))
        a = _Args(args, {}, nums, "test")
        trace = _Trace(fn, a, False, "test")
        first, second, spec, compiled = _programs(trace, a.diff, mode)
        dyn = [x[()] if x.ndim == 0 else x for x in a.dyn]
        assert (spec.block > 1) == (blocks != "one_by_one")
        assert (compiled is second) == (blocks == "one_by_one")
        fused = compile_jacobian(first, compiled, spec, backend="numba")
        assert type(fused).__name__ == "NumbaJacobianKernel"
        dense = compile_jacobian(first, second, spec, backend="numba")
        # the reference: interpreted, one seed at a time
        first1, second1, spec1, _ = _programs(trace, a.diff, mode, batch=False)
        generic = JacobianLoop(compile_oplist(first1, "numpy"),
                               compile_oplist(second1, "numpy"), spec1)
        for x, y, z in zip(fused(*dyn), generic(*dyn), dense(*dyn)):
            np.testing.assert_allclose(x, y, rtol=1e-13, atol=1e-15)
            np.testing.assert_array_equal(x, z)     # gathered = multiplied by the seeds


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_compiled_jacobians_build_no_positions_and_keep_their_work_arrays(mode, rng):
    """The one-hot program reads its gathers inside the loop nests that use them (no
    position or gathered arrays, no bounds checks: its positions are in range by
    construction), and the seed block and the arrays ``second`` writes are scratch kept
    across calls. A call that stopped between setting a seed and clearing it leaves the
    flag set: the next call starts from zero seeds, not from the stale ones."""
    W, V = rng.normal(size=(40, 12)), rng.normal(size=(40, 12))

    def f(x):
        return np.tanh(W @ x + 0.5) * (V @ np.sin(x))

    x = rng.normal(size=12)
    a = _Args((x,), {}, (0,), "test")
    first, second, spec, compiled = _programs(_Trace(f, a, False, "test"), a.diff, mode)
    assert spec.block > 1
    fused = compile_jacobian(first, compiled, spec, backend="numba")
    body = fused.source.split("def second", 1)[1].split("def kernel", 1)[0]
    assert "_take(" not in body and "_at(" not in body, body
    built = [np.prod(eval(shape)) for shape in re.findall(r"_empty\((\(.*?\)), 'int64'\)", body)]
    assert all(n <= spec.block for n in built), body     # one position per seed at most
    expected = fused(x)[0].copy()
    seeds, flag = fused.tail()[-2:]
    assert seeds.shape == (spec.block, 12 if mode == "fwd" else 40) and flag.shape == (1,)
    assert not seeds.any() and flag[0] == 0
    seeds[:, 3] = 7.0                     # as a call stopped midway would leave them
    flag[0] = 1
    again = fused(x)[0]
    np.testing.assert_array_equal(again, expected)
    assert again is not fused(x)[0]       # each call's Jacobian is its own array
    assert not seeds.any() and flag[0] == 0


def test_long_scalar_programs_use_the_generic_loop(monkeypatch):
    monkeypatch.setattr(jvpvjp.config, "tape_threshold", 50)

    def chain(x):
        a, b = x[0], x[1]
        for _ in range(20):
            a, b = a + 0.1 * b, b - 0.1 * np.sin(a)
        return np.stack([a, b])

    x = np.array([0.3, -0.4])
    J_tape = jacrev(chain)(x)
    with use_backend("numpy"):
        J_ref = jacrev(chain)(x)
    np.testing.assert_allclose(J_tape, J_ref, rtol=1e-12)
    np.testing.assert_allclose(jacfwd(chain)(x), J_ref, rtol=1e-12)


DIFF = [(p, c) for p in REGISTRY.values() for c in p.tests
        if p.differentiable and p.name != "stop_gradient"]


@pytest.mark.parametrize("prim,case", DIFF, ids=[f"{p.name}-{c.name}" for p, c in DIFF])
def test_every_primitive_jacobian_equals_jvp_columns(prim, case, rng, blocks):
    """Generated from the registry: both Jacobian modes against columns of jvp."""
    from test_registry import _fixed_args
    args = _fixed_args(case, rng)
    with use_backend("numpy"):
        for argnum in range(len(args)):
            ref = jacobian_by_jvp(case.fn, args, argnum)
            for jac in (jacfwd, jacrev):
                J = jac(case.fn, argnums=argnum)(*args)
                np.testing.assert_allclose(J, ref, rtol=1e-12, atol=1e-13,
                                           err_msg=f"{jac.__name__} argnum {argnum}")


@pytest.mark.parametrize("backend", ["numba", "numpy", "vtape"])
def test_outputs_that_are_the_seed_itself(backend, rng, blocks):
    x = rng.normal(size=3)
    with use_backend(backend):
        for jac in (jacfwd, jacrev):
            np.testing.assert_array_equal(jac(lambda x: x)(x), np.eye(3))
            np.testing.assert_array_equal(jac(lambda a: a)(1.5), 1.0)
            J0, J1 = jac(lambda x: (x, 2.0 * x))(x)
            np.testing.assert_array_equal(J0, np.eye(3))
            np.testing.assert_array_equal(J1, 2 * np.eye(3))
            np.testing.assert_array_equal(jac(lambda x, y: x + y, argnums=(0, 1))(x, x)[1],
                                          np.eye(3))


# Every primitive whose batching rule is not the generic elementwise one, and a few
# elementwise ones (broadcasting operands, a unary op): compiled kernels are slow to build.
_COMPILED = {"add", "mul", "maximum", "pow", "tanh", "where"}
FIRST_CASES = [(p, p.tests[0]) for p in REGISTRY.values()
               if p.differentiable and p.name != "stop_gradient" and
               (p.name in _COMPILED or
                not p.batch_rule.__qualname__.startswith("elementwise_batching"))]


@pytest.mark.parametrize("prim,case", FIRST_CASES, ids=[p.name for p, _ in FIRST_CASES])
def test_batched_linear_parts_compile(prim, case, rng):
    """Each primitive's batched derivative through the Numba backend, against jvp columns
    on the interpreter."""
    from test_registry import _fixed_args
    args = _fixed_args(case, rng)
    for argnum in range(len(args)):
        with use_backend("numpy"):
            ref = jacobian_by_jvp(case.fn, args, argnum)
        for jac in (jacfwd, jacrev):
            J = jac(case.fn, argnums=argnum)(*args)
            np.testing.assert_allclose(J, ref, rtol=1e-12, atol=1e-13,
                                       err_msg=f"{jac.__name__} argnum {argnum}")


def test_hvp_equals_hessian_times_vector(rng):
    from jvpvjp import hvp

    def f(x, y):
        return np.sum(np.sin(x) * y ** 2) + np.sum(x ** 2) * y[0]

    x, y, u, v = (rng.normal(size=3) for _ in range(4))
    H = hessian(f, argnums=(0, 1))(x, y)
    for _ in range(2):
        hx, hy = hvp(f, (x, y), (u, v))
        np.testing.assert_allclose(hx, H[0][0] @ u + H[0][1] @ v, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(hy, H[1][0] @ u + H[1][1] @ v, rtol=1e-12, atol=1e-14)
    with pytest.raises(TypeError, match="tuples"):
        hvp(f, x, u)


def test_hvp_of_one_argument_is_an_array_as_in_jax(rng):
    """JAX's recipe jvp(grad(f), primals, tangents)[1]: an array for one argument, the
    argument's pytree for a pytree."""
    from jvpvjp import hvp
    x, u = rng.normal(size=4), rng.normal(size=4)
    hv = hvp(lambda x: np.sum(np.sin(x) * x), (x,), (u,))
    assert isinstance(hv, np.ndarray) and hv.shape == (4,)
    np.testing.assert_allclose(hv, (2 * np.cos(x) - x * np.sin(x)) * u, rtol=1e-12)
    tree = hvp(lambda p: np.sum(p["a"] ** 2 * p["b"]), ({"a": x, "b": x},), ({"a": u, "b": u},))
    assert set(tree) == {"a", "b"}
    np.testing.assert_allclose(tree["a"], 2 * x * u + 2 * x * u, rtol=1e-12)


# -- random programs: the Hessian against nested Jacobians -------------------------------
_UNARY = [np.sin, np.cos, np.tanh, np.arctan, np.square, lambda v: np.exp(np.tanh(v)),
          lambda v: v + np.sum(v * v), lambda v: v[::-1] * 0.5]
_BINARY = [np.add, np.subtract, np.multiply, lambda a, b: a * np.tanh(b),
           lambda a, b: a + _M @ b]
_M = np.array([[1.0, 0.5, 0.0, -1.0], [0.0, 2.0, 1.0, 0.0], [0.3, 0.0, -1.0, 1.0],
               [1.0, 1.0, 0.0, 0.5]])


@st.composite
def _random_programs(draw):
    steps = []
    for i in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):
            steps.append(("u", draw(st.integers(0, len(_UNARY) - 1)),
                          draw(st.integers(0, i))))
        else:
            steps.append(("b", draw(st.integers(0, len(_BINARY) - 1)),
                          draw(st.integers(0, i)), draw(st.integers(0, i))))
    return steps


def _run_program(steps):
    def f(x):
        vals = [x]
        for s in steps:
            if s[0] == "u":
                vals.append(_UNARY[s[1]](vals[s[2]]))
            else:
                vals.append(_BINARY[s[1]](vals[s[2]], vals[s[3]]))
        return np.sum(vals[-1] * np.arange(1.0, 5.0)) + np.sum(np.sin(vals[-1]))
    return f


@given(_random_programs(), st.integers(0, 1000))
def test_hessian_of_random_programs_is_symmetric_and_nested_jacobians_agree(steps, seed):
    f = _run_program(steps)
    x = np.random.default_rng(seed).uniform(-1, 1, size=4)
    H = hessian(f)(x)
    np.testing.assert_allclose(H, H.T, rtol=1e-10, atol=1e-10)
    for outer in (jacfwd, jacrev):
        for inner in (jacfwd, jacrev):
            np.testing.assert_allclose(outer(inner(f))(x), H, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("transform", [jacfwd, jacrev])
def test_compiled_jacobians_do_not_spread_an_infinite_partial(transform):
    """The compiled loop gathers a matrix's columns for a block of basis vectors instead of
    multiplying by them, so an infinite partial derivative (log at 0) stays in its own
    column: the other columns are the finite numbers they are, where the dense product
    (0 * inf) made them NaN. Wherever the dense result is finite the two agree."""
    W = np.arange(1.0, 25.0).reshape(4, 6)

    def f(x):
        return W @ np.log(x) + np.sin(W @ x)

    x = np.linspace(0.5, 1.5, 6)
    x[2] = 0.0
    got = transform(f, compile="eager")(x)
    dense = transform(f, compile="never")(x)
    with np.errstate(divide="ignore"):
        exact = W / x[None, :] + np.cos(W @ x)[:, None] * W
    finite = np.isfinite(dense)
    np.testing.assert_allclose(got[finite], dense[finite], rtol=1e-13)
    np.testing.assert_allclose(got[:, [0, 1, 3, 4, 5]], exact[:, [0, 1, 3, 4, 5]], rtol=1e-13)
    assert np.all(np.isinf(got[:, 2]))
