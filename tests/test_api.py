"""End-to-end behaviour of the public API, on the default (Numba) backend."""
import collections
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jvpvjp
from jvpvjp import grad, jvp, make_oplist, value_and_grad, vjp
from jvpvjp.testing import use_backend
from jvpvjp.nn.functional import cross_entropy, logsumexp, relu, sigmoid, softmax
from jvpvjp.testing import check_grads


def fd_grad(f, x, eps=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = eps
        g[i] = (f(x + e) - f(x - e)) / (2 * eps)
    return g


def test_readme_example_loss(rng):
    @grad
    def loss(w, X, y):
        return np.mean((np.tanh(X @ w) - y) ** 2)

    w, X, y = rng.normal(size=3), rng.normal(size=(5, 3)), rng.normal(size=5)
    g = loss(w, X, y)
    t = np.tanh(X @ w)
    expected = X.T @ (2 * (t - y) * (1 - t ** 2)) / 5
    assert g.shape == w.shape and g.dtype == np.float64
    np.testing.assert_allclose(g, expected, rtol=1e-12)
    # second call with new values: replayed, not traced again
    w2 = rng.normal(size=3)
    t2 = np.tanh(X @ w2)
    np.testing.assert_allclose(loss(w2, X, y), X.T @ (2 * (t2 - y) * (1 - t2 ** 2)) / 5,
                               rtol=1e-12)
    info = loss.cache_info()
    assert info["traces"] == 1 and info["calls"] == 2


def mlp_loss(params, X, Y):
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    h = np.tanh(X @ W1 + b1)
    return cross_entropy(h @ W2 + b2, Y)


def test_mlp_cross_entropy_matches_hand_derived(rng):
    n, d, k, c = 16, 6, 5, 3
    params = {"W1": rng.normal(size=(d, k)) * 0.5, "b1": rng.normal(size=k),
              "W2": rng.normal(size=(k, c)) * 0.5, "b2": rng.normal(size=c)}
    X = rng.normal(size=(n, d))
    Y = np.eye(c)[rng.integers(0, c, n)]
    val, g = value_and_grad(mlp_loss)(params, X, Y)
    # hand-derived backprop
    h = np.tanh(X @ params["W1"] + params["b1"])
    z = h @ params["W2"] + params["b2"]
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    dz = (p - Y) / n
    dW2, db2 = h.T @ dz, dz.sum(0)
    dh = dz @ params["W2"].T * (1 - h ** 2)
    dW1, db1 = X.T @ dh, dh.sum(0)
    np.testing.assert_allclose(val, -np.mean(np.sum(Y * np.log(p), 1)), rtol=1e-12)
    for name, ref in [("W1", dW1), ("b1", db1), ("W2", dW2), ("b2", db2)]:
        np.testing.assert_allclose(g[name], ref, rtol=1e-10, atol=1e-14, err_msg=name)
    assert set(g) == set(params)


def test_integer_labels_reuse_the_kernel(rng):
    logits = rng.normal(size=(8, 4))
    f = grad(cross_entropy)
    g1 = f(logits, rng.integers(0, 4, 8))
    labels = rng.integers(0, 4, 8)
    g2 = f(logits, labels)
    assert f.cache_info()["traces"] == 1
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(g2, (p - np.eye(4)[labels]) / 8, rtol=1e-12)
    assert g1.shape == logits.shape


def test_argnums_tuple_pytrees_and_constants(rng):
    Point = collections.namedtuple("Point", "x y")
    scale = np.array([1.0, 2.0, 3.0])          # closed-over constant

    def f(p, q, k, mode="sum"):
        s = np.sum(scale * p.x * q[0] + np.sin(p.y)) * k + q[1]["c"] ** 2
        return s if mode == "sum" else -s

    p = Point(rng.normal(size=3), rng.normal(size=3))
    q = [rng.normal(size=3), {"c": 1.5}]
    val, (gp, gq) = value_and_grad(f, argnums=(0, 1))(p, q, 2.0)
    assert isinstance(gp, Point) and isinstance(gq, list) and set(gq[1]) == {"c"}
    np.testing.assert_allclose(gp.x, scale * q[0] * 2.0, rtol=1e-12)
    np.testing.assert_allclose(gp.y, np.cos(p.y) * 2.0, rtol=1e-12)
    np.testing.assert_allclose(gq[0], scale * p.x * 2.0, rtol=1e-12)
    np.testing.assert_allclose(gq[1]["c"], 3.0)
    np.testing.assert_allclose(val, f(p, q, 2.0))
    # static keyword argument changes the path, not the kernel's correctness
    g_neg = grad(f, argnums=1)(p, q, 2.0, mode="neg")
    np.testing.assert_allclose(g_neg[1]["c"], -3.0)


def test_argnums_order_is_the_order_asked_for(rng):
    def f(a, b, c):
        return np.sum(a * 2.0) + np.sum(b ** 2) + np.sum(c ** 3)

    a, b, c = rng.normal(size=2), rng.normal(size=3), rng.normal(size=(2, 2))
    vg = value_and_grad(f, argnums=(2, 0, -2))
    for _ in range(2):          # traced call, then the cached fast path
        _, (gc, ga, gb) = vg(a, b, c)
        np.testing.assert_allclose(gc, 3 * c ** 2, rtol=1e-12)
        np.testing.assert_allclose(ga, np.full(2, 2.0))
        np.testing.assert_allclose(gb, 2 * b, rtol=1e-12)
    # pytree arguments go through the general path
    gq, gp = grad(lambda p, q: np.sum(p["x"] * q[0]), argnums=(1, 0))({"x": a}, [b[:2]])
    np.testing.assert_allclose(gq[0], a)
    np.testing.assert_allclose(gp["x"], b[:2])


def test_has_aux(rng):
    def f(x):
        y = np.sum(x ** 2)
        return y, {"norm": np.sqrt(y), "n": 3}

    x = rng.normal(size=3)
    g, aux = grad(f, has_aux=True)(x)
    np.testing.assert_allclose(g, 2 * x)
    np.testing.assert_allclose(aux["norm"], np.linalg.norm(x))
    (v, aux2), g2 = value_and_grad(f, has_aux=True)(x)
    np.testing.assert_allclose(v, np.sum(x ** 2))
    with pytest.raises(TypeError, match="pair"):
        grad(lambda x: np.sum(x), has_aux=True)(x)


def test_jvp_and_vjp_signatures(rng):
    def f(x, y):
        return {"a": np.sin(x) * y, "b": np.sum(x * y)}

    x, y = rng.normal(size=4), rng.normal(size=4)
    tx, ty = rng.normal(size=4), rng.normal(size=4)
    out, t_out = jvp(f, (x, y), (tx, ty))
    np.testing.assert_allclose(out["a"], np.sin(x) * y)
    np.testing.assert_allclose(t_out["a"], np.cos(x) * tx * y + np.sin(x) * ty, rtol=1e-12)
    np.testing.assert_allclose(t_out["b"], np.sum(tx * y + x * ty), rtol=1e-12)
    f_jvp = jvp(f)
    out2, t2 = f_jvp((x, y), (tx, ty))
    np.testing.assert_allclose(t2["a"], t_out["a"])

    out, pullback = vjp(f, x, y)
    cx, cy = pullback({"a": np.ones(4), "b": 2.0})
    np.testing.assert_allclose(cx, np.cos(x) * y + 2 * y, rtol=1e-12)
    np.testing.assert_allclose(cy, np.sin(x) + 2 * x, rtol=1e-12)
    # the pullback can be called again with another cotangent
    cx2, _ = pullback({"a": np.zeros(4), "b": 1.0})
    np.testing.assert_allclose(cx2, y, rtol=1e-12)


@pytest.mark.usefixtures("compiled")
def test_float32_results_stay_float32(rng):
    x = rng.normal(size=(3, 4)).astype(np.float32)
    w = rng.normal(size=4).astype(np.float32)
    val, g = value_and_grad(lambda w, x: np.sum(np.tanh(x @ w) * 0.5))(w, x)
    assert g.dtype == np.float32 and np.asarray(val).dtype == np.float32
    ref = 0.5 * x.astype(np.float64).T @ (1 - np.tanh(x.astype(np.float64) @ w) ** 2)
    np.testing.assert_allclose(g, ref, rtol=1e-5)
    out, t = jvp(lambda a: np.exp(a) * 2.0, (w,), (np.ones(4, np.float32),))
    assert out.dtype == np.float32 and t.dtype == np.float32
    # mixing with float64 promotes, as NumPy does
    g64 = grad(lambda w: np.sum(w * np.ones(4)))(w)
    assert g64.dtype == np.float32


def test_scalars_and_python_floats():
    assert grad(lambda x: x * x)(3.0) == 6.0
    assert grad(lambda x, y: x * y, argnums=1)(3.0, 4.0) == 3.0
    out, t = jvp(lambda x: x ** 3, (2.0,), (1.0,))
    assert out == 8.0 and t == 12.0


def test_composites(rng):
    x = rng.normal(size=(3, 5))
    for f in [relu, sigmoid, lambda v: softmax(v, axis=0), lambda v: logsumexp(v, axis=1),
              lambda v: np.var(v, axis=1), lambda v: np.std(v), lambda v: np.linalg.norm(v),
              lambda v: np.linalg.norm(v, axis=1), lambda v: np.clip(v, -0.5, 0.5),
              lambda v: np.outer(v[0], v[1]), lambda v: np.stack([v, 2 * v], axis=1),
              lambda v: np.mean(v, axis=0, keepdims=True), lambda v: np.log2(np.abs(v) + 1),
              lambda v: np.logaddexp(v, 1.0), lambda v: v.T @ v, lambda v: np.trace(v @ v.T),
              lambda v: np.expand_dims(v, 1).squeeze(1), lambda v: np.concatenate([v, v.T.ravel()[:5][None]])]:
        check_grads(f, (x,), order=1)


def test_logsumexp_is_stable():
    x = np.array([1000.0, 1000.0, -1000.0])
    val, g = value_and_grad(logsumexp)(x)
    np.testing.assert_allclose(val, 1000 + np.log(2))
    np.testing.assert_allclose(g, [0.5, 0.5, 0.0])


def test_python_control_flow_guards_never_replay_the_wrong_branch():
    def f(x):
        if np.sum(x) > 0:
            return np.sum(np.sin(x))
        return np.sum(x ** 3)

    g = grad(f)
    a, b = np.array([0.5, 1.0]), np.array([-0.5, -1.0])
    np.testing.assert_allclose(g(a), np.cos(a))
    np.testing.assert_allclose(g(b), 3 * b ** 2)     # the guard flips: a new path
    np.testing.assert_allclose(g(a * 2), np.cos(a * 2))   # back to the first path, cached
    info = g.cache_info()
    assert info["traces"] == 2 and info["paths"] == 2


def test_loop_with_value_dependent_trip_count():
    def f(x):
        y = x
        while np.abs(y) > 0.1:       # trip count depends on x
            y = y * 0.5
        return y

    for x0 in [0.15, 0.3, 0.9, 0.15]:
        n = 0
        y = x0
        while abs(y) > 0.1:
            y, n = y * 0.5, n + 1
        assert grad(f)(x0) == pytest.approx(0.5 ** n)


def test_make_oplist_prints_ops_and_guards():
    def f(x, w):
        y = np.tanh(x @ w)
        if y.sum() > -100:
            y = y * 2.0
        return np.sum(y)

    text = str(make_oplist(f)(np.ones((2, 3)), np.ones(3)))
    assert "matmul" in text and "tanh" in text and "reduce_sum" in text
    assert "guard" in text and "lambda a:f64[2,3] b:f64[3]" in text
    grad_text = str(make_oplist(grad(f, argnums=1))(np.ones((2, 3)), np.ones(3)))
    assert grad_text.count("matmul") >= 2


def test_nested_grad_and_perturbation_confusion():
    # d/dx [x * d/dy (x + y)] = 1 at any x
    def inner(x):
        return x * grad(lambda y: x + y)(1.0)
    assert grad(inner)(3.0) == pytest.approx(1.0)
    # second derivative by nesting
    d2 = grad(grad(lambda x: x ** 3 + np.sin(x)))
    assert d2(0.7) == pytest.approx(6 * 0.7 - np.sin(0.7), rel=1e-12)
    check_grads(lambda x: np.tanh(x) * x ** 2, (np.linspace(-1, 1, 4),), order=2)


# -- bad input ----------------------------------------------------------------------------------
def test_unsupported_numpy_function_names_it():
    with pytest.raises(NotImplementedError, match="numpy.histogram"):
        grad(lambda x: np.sum(np.histogram(x)[1]))(np.ones(3))
    with pytest.raises(NotImplementedError, match="numpy.unique"):
        grad(lambda x: np.sum(np.unique(x)))(np.ones(3))


def test_shape_mismatch_names_the_user_line():
    def f(x):
        y = np.ones(4)
        return np.sum(x * y)   # the bad line

    with pytest.raises(ValueError) as e:
        grad(f)(np.ones(3))
    assert "the bad line" in str(e.value) and "test_api.py" in str(e.value)
    with pytest.raises(ValueError, match="matmul"):
        grad(lambda x: np.sum(x @ np.ones((4, 2))))(np.ones((2, 3)))


def test_grad_of_non_scalar_is_a_type_error():
    with pytest.raises(TypeError, match="scalar output"):
        grad(np.sin)(np.ones(3))


def test_integer_argument_is_a_type_error():
    with pytest.raises(TypeError, match="int64"):
        grad(lambda x: np.sum(x * 1.0))(np.arange(3))
    with pytest.raises(TypeError, match="floating"):
        grad(lambda x: x * 1.0)(3)


_ASARRAY_BOUND_AT_IMPORT = np.asarray     # as `from numpy import asarray` binds it


def test_converting_a_traced_value_to_an_array_raises():
    # np.asarray looked up while tracing is jvpvjp's; one bound before cannot see tracers
    assert grad(lambda x: np.sum(np.asarray(x) ** 2))(np.ones(3)).tolist() == [2.0] * 3
    with pytest.raises(jvpvjp.TracingError, match="derivative would be lost"):
        grad(lambda x: np.sum(_ASARRAY_BOUND_AT_IMPORT(x)))(np.ones(3))


def test_assignment_into_an_argument_raises():
    def f(x):
        x[0] = 1.0
        return np.sum(x)
    with pytest.raises(jvpvjp.TracingError, match="assignment into an argument"):
        grad(f)(np.ones(3))


def test_bad_tangents_and_cotangents():
    with pytest.raises(ValueError, match="shape"):
        jvp(np.sin, (np.ones(3),), (np.ones(2),))
    out, pullback = vjp(np.sin, np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        pullback(np.ones(4))


def test_escaped_tracer_raises():
    leaked = []

    def f(x):
        leaked.append(x)
        return np.sum(x)

    grad(f)(np.ones(2))
    with pytest.raises(jvpvjp.TracingError, match="escaped"):
        grad(lambda y: np.sum(y * leaked[0]))(np.ones(2))


def test_indexing_forms(rng):
    x = rng.normal(size=(4, 5))
    idx = np.array([3, 0, 0])
    mask = x[:, 0] > 0
    for f in [lambda v: v[1], lambda v: v[:, -1], lambda v: v[1:3, ::2], lambda v: v[None, ..., 2],
              lambda v: v[idx], lambda v: v[idx, 1:], lambda v: v[mask], lambda v: v[[0, 1], [2, 3]]]:
        check_grads(f, (x,))


def test_disk_cache_serves_a_fresh_process(tmp_path):
    script = textwrap.dedent("""
        import numpy as np, jvpvjp, os, glob
        g = jvpvjp.grad(lambda w: np.sum(np.tanh(w) ** 2))(np.linspace(-1, 1, 5))
        print(repr(g.tolist()))
        print(len(glob.glob(os.path.join(jvpvjp.config.cache_dir, "kernels", "k_*.py"))))
    """)
    env = dict(os.environ, JVPVJP_CACHE_DIR=str(tmp_path), JVPVJP_BACKEND="numba")
    env.pop("NUMBA_CACHE_DIR", None)          # Numba caches next to the kernel source
    runs = [subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, check=True).stdout.split("\n") for _ in range(2)]
    assert runs[0][0] == runs[1][0]
    assert runs[0][1] == runs[1][1] == "1"
    index_files = list(tmp_path.glob("kernels/__pycache__/*.nbi"))
    assert index_files, "Numba wrote no cache index for the kernel"
    # a corrupt source file is rewritten, never trusted
    (src,) = tmp_path.glob("kernels/k_*.py")
    src.write_text("garbage = (")
    again = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                           text=True, check=True).stdout.split("\n")
    assert again[0] == runs[0][0]


@pytest.mark.usefixtures("compiled")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_transcendentals_through_numpy_match_interpreter(dtype, rng, monkeypatch):
    from jvpvjp.testing import use_backend
    monkeypatch.setattr(jvpvjp.config, "numpy_ufunc_threshold", 4)

    def f(x, w):
        return np.sum(np.tanh(x @ w) * np.exp(x[:, 0] * 2.0) + np.arctan2(x[:, 1], 1.5)
                      + np.log1p(x[:, 2] ** 2) ** 1.5 + np.sin(x.T)[0])

    x = rng.normal(size=(6, 3)).astype(dtype)
    w = rng.normal(size=3).astype(dtype)
    with use_backend("numpy"):
        ref = value_and_grad(f, argnums=(0, 1))(x, w)
    got = value_and_grad(f, argnums=(0, 1))(x, w)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    for r, g in zip(jvpvjp.tree_flatten(ref)[0], jvpvjp.tree_flatten(got)[0]):
        assert np.result_type(g) == np.result_type(r) == dtype
        np.testing.assert_allclose(g, r, rtol=tol, atol=tol)


def test_program_numba_cannot_compile_falls_back_with_a_warning(monkeypatch):
    from jvpvjp.primitives import elementwise as ew
    monkeypatch.setattr(ew.cosh, "lower", lambda args, op: f"np.cosh({args[0]}, 1, 2, 3)")
    with pytest.warns(RuntimeWarning, match="could not compile"), use_backend("numba"):
        g = grad(lambda x: np.sum(np.cosh(x) * 3.0))(np.array([0.5, 1.0]))
    np.testing.assert_allclose(g, 3 * np.sinh([0.5, 1.0]))


def test_power_special_cases(rng):
    x = rng.uniform(0.5, 2.0, size=4)
    for e in (1, 2, 0.5, -1, 3, 2.5):
        check_grads(lambda v: v ** e, (x,), order=2)
    check_grads(lambda v, w: v ** w, (x, rng.normal(size=4)))


@pytest.mark.usefixtures("compiled")
def test_long_scalar_programs_run_on_the_tape(monkeypatch):
    from jvpvjp.backend import compile_oplist, rolled, tape
    monkeypatch.setattr(jvpvjp.config, "tape_threshold", 50)

    def chain(y, a):
        for _ in range(40):
            y = np.sin(y) * a + 0.1
            if y > 0.5:                      # guards work on the tape too
                y = y - 0.01 * np.maximum(y, a)
        return y

    kernel = compile_oplist(make_oplist(chain)(0.5, 1.0001))   # the tape, loops compiled
    assert isinstance(kernel, rolled.RolledKernel) and kernel.tape.__class__ is tape.TapeKernel
    check_grads(chain, (0.5, 1.0001))
    vg = value_and_grad(chain, argnums=(0, 1))
    for y0 in (0.5, -0.3, 0.5, 2.0):
        with jvpvjp.testing.use_backend("numpy"):
            ref = value_and_grad(chain, argnums=(0, 1))(y0, 1.0001)
        got = vg(y0, 1.0001)
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-13)
        np.testing.assert_allclose(got[1], ref[1], rtol=1e-12)


@pytest.mark.usefixtures("compiled")
def test_tape_fused_multiply_adds_round_like_the_separate_ops(monkeypatch):
    from jvpvjp.backend import compile_oplist, rolled, tape
    monkeypatch.setattr(jvpvjp.config, "tape_threshold", 50)
    monkeypatch.setattr(rolled, "MIN_OPS", 48)       # roll these short loops too

    def chain(x, y):
        for _ in range(30):
            x = x + 0.1 * y             # muladd
            y = y - x * np.sin(x)       # mulsub
            x = (y * 0.3) + x           # muladd, product on the left
        return x * y

    ol = make_oplist(value_and_grad(chain, argnums=(0, 1)))(0.3, 0.5)
    rolled = compile_oplist(ol)          # the tape's repeats as compiled loops
    kernel = rolled.tape
    assert isinstance(kernel, tape.TapeKernel) and rolled.rolled_ops > 0.8 * len(kernel.code)
    assert np.isin(kernel.code, [tape.opcodes()["muladd"], tape.opcodes()["mulsub"]]).sum() > 60
    for x0, y0 in [(0.3, 0.5), (1.7, -0.2), (np.nan, 1.0), (np.inf, 0.0)]:
        with np.errstate(all="ignore"):
            want = compile_oplist(ol, "numpy")(np.float64(x0), np.float64(y0))
            for got in (kernel(x0, y0), rolled(x0, y0)):
                for g, w in zip(got, want):     # bit for bit: no fused multiply-add rounding
                    assert np.array_equal(g, w, equal_nan=True), (x0, y0, got, want)


@pytest.mark.usefixtures("compiled")
def test_high_rank_broadcasting_matches_interpreter(rng):
    from jvpvjp.testing import use_backend
    a, b = rng.normal(size=(1, 4, 3, 2)), rng.normal(size=(5, 4, 1, 2))
    c = rng.normal(size=(3, 1, 2))

    def f(a, b, c):
        p = np.sum(np.tanh(a * b) - a, axis=3)
        q = np.where(p > 0, p, 2.0 * p) * (c[:, 0, 0] > 0)
        return np.sum(q) + np.sum(np.sin(c * c[:, :1] + 1.0) * np.maximum(c, 0.1))

    with use_backend("numpy"):
        ref = value_and_grad(f, argnums=(0, 1, 2))(a, b, c)
        ref_t = jvp(f, (a, b, c), (b[:1, :, :1] + a, b * 2.0, c))
    got = value_and_grad(f, argnums=(0, 1, 2))(a, b, c)
    got_t = jvp(f, (a, b, c), (b[:1, :, :1] + a, b * 2.0, c))
    for r, g in zip(jvpvjp.tree_flatten((ref, ref_t))[0], jvpvjp.tree_flatten((got, got_t))[0]):
        np.testing.assert_allclose(g, r, rtol=1e-13, atol=1e-14)


def test_vjp_has_aux_and_nested_vjp(rng):
    x = rng.normal(size=3)

    def f(x):
        return np.sin(x) * x, {"s": np.sum(x)}

    out, pullback, aux = vjp(f, x, has_aux=True)
    (cx,) = pullback(np.ones(3))
    np.testing.assert_allclose(cx, np.cos(x) * x + np.sin(x), rtol=1e-12)
    np.testing.assert_allclose(aux["s"], np.sum(x))

    # gradient of a function that itself calls vjp: d/dx sum(J(x)^T u) with u = 1
    def g(x):
        _, pb = vjp(lambda y: np.sin(y) * y, x)
        return np.sum(pb(np.ones(3))[0])

    expected = 2 * np.cos(x) - x * np.sin(x)
    np.testing.assert_allclose(grad(g)(x), expected, rtol=1e-12)
    # and of a function that calls jvp
    def h(x):
        return np.sum(jvp(lambda y: np.sin(y) * y, (x,), (np.ones(3),))[1])
    np.testing.assert_allclose(grad(h)(x), expected, rtol=1e-12)


@pytest.mark.usefixtures("compiled")
def test_loop_nest_lowering_of_every_elementwise_primitive(rng, monkeypatch):
    """All elementwise primitives at once through the loop-nest lowering (forced for rank
    >= 1), with broadcasting, fused sums and comparisons, against the interpreter."""
    from jvpvjp.testing import use_backend
    monkeypatch.setattr(jvpvjp.config, "loop_rank", 1)
    a = rng.uniform(0.3, 0.9, size=(3, 4))
    b = rng.uniform(0.3, 0.9, size=(4,))

    def f(a, b):
        u = (np.exp(a) + np.log(a) + np.log1p(a) + np.expm1(b) + np.sqrt(a) + a * a
             + np.sin(a) + np.cos(b) + np.tan(a) + np.arcsin(a) + np.arccos(b) + np.arctan(a)
             + np.sinh(a) + np.cosh(b) + np.tanh(a) + np.abs(a - b) + np.sign(a - b) * a
             + a / b - b + a ** b + np.arctan2(a, b) + np.maximum(a, b) + np.minimum(a, b)
             + -a)
        m = (a < b) | (a >= 0.5) & ~(a == b) ^ (a != b) | (a <= b) & (a > 0.2)
        w = np.where(m, u, 2.0 * u)
        return np.sum(w * w, axis=1) + np.sum(w, axis=0)[:3]

    with use_backend("numpy"):
        ref = jvp(f, (a, b), (b + a, b))
        ref_g = value_and_grad(lambda a, b: np.sum(f(a, b)), argnums=(0, 1))(a, b)
    got = jvp(f, (a, b), (b + a, b))
    got_g = value_and_grad(lambda a, b: np.sum(f(a, b)), argnums=(0, 1))(a, b)
    for r, g in zip(jvpvjp.tree_flatten((ref, ref_g))[0], jvpvjp.tree_flatten((got, got_g))[0]):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-12)


@pytest.mark.usefixtures("compiled")
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_fused_full_sum_keeps_dtype(dtype, rng, monkeypatch):
    monkeypatch.setattr(jvpvjp.config, "loop_rank", 1)
    x = rng.normal(size=(3, 4)).astype(dtype)
    v, g = value_and_grad(lambda x: np.sum(np.sin(x) * x))(x)
    assert np.result_type(v) == dtype and g.dtype == dtype
    np.testing.assert_allclose(v, np.sum(np.sin(x) * x), rtol=1e-5)
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-5)


def test_cached_vjp_and_jvp_respect_guards():
    def f(x):
        return np.sin(x) if np.sum(x) > 0 else x ** 3

    for x in [np.array([0.5, 1.0]), np.array([-0.5, -1.0]), np.array([0.2, 0.3]),
              np.array([-2.0, 0.5])]:
        expected = np.cos(x) if np.sum(x) > 0 else 3 * x ** 2
        _, pullback = vjp(f, x)
        np.testing.assert_allclose(pullback(np.ones(2))[0], expected)
        np.testing.assert_allclose(jvp(f, (x,), (np.ones(2),))[1], expected)


@pytest.mark.usefixtures("compiled")
@pytest.mark.parametrize("blas", [False])
def test_matrix_products_with_and_without_scipy(blas, monkeypatch, rng):
    """Numba's @ needs SciPy; without it kernels call NumPy's matmul from object mode.
    (With SciPy, the registry's matmul cases run compiled in test_registry.)"""
    import importlib.util
    import warnings
    from jvpvjp import jacfwd, jit
    from jvpvjp.primitives import REGISTRY
    from test_registry import _fixed_args
    if blas and importlib.util.find_spec("scipy") is None:
        pytest.skip("SciPy is not installed")
    monkeypatch.setattr(jvpvjp.config, "numba_blas", blas)
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no fallback to the interpreter
        for case in REGISTRY["matmul"].tests:
            args = _fixed_args(case, rng)
            nums = tuple(range(len(args)))

            def scalar(*a):
                return np.sum(np.sin(case.fn(*a)))

            with jvpvjp.testing.use_backend("numpy"):
                v_ref, g_ref = value_and_grad(scalar, argnums=nums)(*args)
            np.testing.assert_allclose(jit(case.fn)(*args), case.fn(*args), rtol=1e-12)
            v, g = value_and_grad(scalar, argnums=nums)(*args)
            np.testing.assert_allclose(v, v_ref, rtol=1e-12)
            for a, b in zip(g, g_ref):
                np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-13)
        W = rng.normal(size=(4, 3))
        x = rng.normal(size=3)
        np.testing.assert_allclose(jacfwd(lambda x: np.tanh(W @ x))(x),
                                   (1 - np.tanh(W @ x) ** 2)[:, None] * W, rtol=1e-12)


def test_inline_cache_tells_signatures_apart():
    """The call path's inline cache (a check generated for the last signature) never
    serves a kernel to arguments of another shape, layout, dtype or kind."""
    f = jvpvjp.jit(lambda x, y: np.sum(x * np.arange(1.0, x.shape[-1] + 1)) * y)
    base = np.arange(6.0).reshape(2, 3)
    calls = [(base, 2.0), (base.astype(np.float32), 2.0), (base.T.copy(), 2.0),
             (np.arange(12.0).reshape(2, 6)[:, ::2], 2.0), (base, np.float32(2.0)),
             (base, 2), (base.reshape(3, 2), 2.0), (base, 2.0)]
    for _ in range(3):
        for x, y in calls:
            want = np.sum(x * np.arange(1.0, x.shape[-1] + 1)) * y
            np.testing.assert_allclose(f(x, y), want, rtol=1e-6)


def test_numba_never_rebinds_sys_stdout_to_colour_errors():
    """Numba's colour scheme swaps sys.stdout (colorama) while it formats an error: a
    background compile falling back to the interpreter would steal a caller's redirected
    output. jvpvjp turns it off before Numba loads."""
    import subprocess
    import sys
    code = ("import jvpvjp, numba.core.errors as e; "
            "assert type(e.termcolor()).__name__ == 'NOPColorScheme', type(e.termcolor())")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
