"""custom_jvp, custom_vjp and checkpoint under every transform, backend and nesting."""
import math

import numpy as np
import pytest

import jvpvjp
from jvpvjp import (TracingError, checkpoint, custom_jvp, custom_vjp, grad, hessian, jacfwd,
                    jacrev, jvp, make_oplist, value_and_grad, vjp, vmap)

MODES = ["never", "eager"]      # the NumPy interpreter, compiled kernels


# -- functions with rules, and the plain functions they stand for -------------------------
def plain_f(x, y):
    return np.sin(x) * y + x ** 2


@custom_jvp
def jvp_f(x, y):
    return np.sin(x) * y + x ** 2


@jvp_f.defjvp
def _jvp_f_rule(primals, tangents):
    (x, y), (tx, ty) = primals, tangents
    return jvp_f(x, y), (np.cos(x) * y + 2 * x) * tx + np.sin(x) * ty


@custom_vjp
def vjp_f(x, y):
    return np.sin(x) * y + x ** 2


def _vjp_f_fwd(x, y):
    return vjp_f(x, y), (x, y)


def _vjp_f_bwd(res, ct):
    x, y = res
    return (np.cos(x) * y + 2 * x) * ct, np.sin(x) * ct


vjp_f.defvjp(_vjp_f_fwd, _vjp_f_bwd)
ckpt_f = checkpoint(plain_f)
VARIANTS = {"custom_jvp": jvp_f, "custom_vjp": vjp_f, "checkpoint": ckpt_f}


@pytest.fixture
def xy(rng):
    return rng.normal(size=3), rng.normal(size=3)


def _close(a, b):
    for p, q in zip(jvpvjp.tree_flatten(a)[0], jvpvjp.tree_flatten(b)[0]):
        np.testing.assert_allclose(p, q, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_transform_agrees_with_the_plain_function(name, mode, xy):
    f, (x, y) = VARIANTS[name], xy

    def scalar(g):
        return lambda x, y: np.sum(g(x, y) ** 2)

    _close(f(x, y), plain_f(x, y))
    _close(grad(scalar(f), argnums=(0, 1), compile=mode)(x, y),
           grad(scalar(plain_f), argnums=(0, 1), compile=mode)(x, y))
    t = (np.ones(3), np.arange(3.0))
    _close(jvp(f, (x, y), t, compile=mode), jvp(plain_f, (x, y), t, compile=mode))
    out, pb = vjp(f, x, y, compile=mode)
    _close(pb(np.arange(3.0)), vjp(plain_f, x, y, compile=mode)[1](np.arange(3.0)))
    if mode == "eager":     # (compiled kernels see ordinary ops only: a few suffice)
        return
    for jac in (jacfwd, jacrev):
        _close(jac(f, argnums=(0, 1), compile=mode)(x, y),
               jac(plain_f, argnums=(0, 1), compile=mode)(x, y))
    _close(hessian(scalar(f), compile=mode)(x, y), hessian(scalar(plain_f), compile=mode)(x, y))
    _close(vmap(f, compile=mode)(np.stack([x, y]), np.stack([y, x])),
           plain_f(np.stack([x, y]), np.stack([y, x])))


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_transform_pairs_and_batching(name, xy):
    """ff, fr, rf, rr second derivatives, and vmap outside and inside derivatives."""
    f, (x, y) = VARIANTS[name], xy

    def h(f):
        return lambda x: f(x, y) * np.cos(x)

    for outer in (jacfwd, jacrev):
        for inner in (jacfwd, jacrev):
            _close(outer(inner(h(f)))(x), outer(inner(h(plain_f)))(x))
    s = lambda f: (lambda x: np.sum(f(x, y)))       # noqa: E731
    X = np.stack([x, 2 * x, -x])
    _close(vmap(grad(s(f)))(X), vmap(grad(s(plain_f)))(X))
    _close(grad(lambda X: np.sum(vmap(f, in_axes=(0, None))(X, y) ** 2))(X),
           grad(lambda X: np.sum(vmap(plain_f, in_axes=(0, None))(X, y) ** 2))(X))
    _close(vmap(vmap(f))(X[None], X[None]), plain_f(X, X)[None])
    _close(jacfwd(vmap(h(f)))(X), jacfwd(vmap(h(plain_f)))(X))
    _close(jacrev(vmap(h(f)))(X), jacrev(vmap(h(plain_f)))(X))


@pytest.mark.parametrize("mode", MODES)
def test_the_rule_is_used_not_the_function(mode):
    """A rule that is not the function's derivative shows up in every transform."""
    @custom_jvp
    def triple_slope(x):
        return x

    @triple_slope.defjvp
    def _(primals, tangents):
        return primals[0], 3.0 * tangents[0]

    @custom_vjp
    def triple_back(x):
        return x
    triple_back.defvjp(lambda x: (x, None), lambda res, ct: (3.0 * ct,))

    x = np.array([1.0, 2.0])
    for f in (triple_slope, triple_back):
        assert np.array_equal(grad(lambda x: np.sum(f(x)), compile=mode)(x), [3.0, 3.0])
        assert np.array_equal(jvp(f, (x,), (np.ones(2),), compile=mode)[1], [3.0, 3.0])
        assert np.array_equal(jacfwd(f, compile=mode)(x), 3 * np.eye(2))
        assert np.array_equal(jacrev(f, compile=mode)(x), 3 * np.eye(2))
        # d2/dx2 sum(f(x)^2) = d/dx [2 f(x) * 3] = 18
        assert np.array_equal(hessian(lambda x: np.sum(f(x) ** 2), compile=mode)(x),
                              18 * np.eye(2))
        assert np.array_equal(vmap(grad(lambda x: np.sum(f(x))))(np.ones((4, 2))),
                              np.full((4, 2), 3.0))


def test_log1pexp_is_stable_where_plain_autodiff_is_not():
    @custom_jvp
    def log1pexp(x):
        return np.log1p(np.exp(x))

    @log1pexp.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        return log1pexp(x), t / (1 + np.exp(-x))

    x = np.array([-800.0, 0.0, 30.0, 800.0])
    with np.errstate(all="ignore"):
        plain = grad(lambda x: np.sum(np.log1p(np.exp(x))))(x)
    assert np.isnan(plain[-1])
    for mode in MODES:
        g = grad(lambda x: np.sum(log1pexp(x)), compile=mode)(x)
        np.testing.assert_allclose(g, [0.0, 0.5, 1 / (1 + math.exp(-30)), 1.0], rtol=1e-15)
        # (the rule's own derivative overflows at -800: inf / inf, as it would in JAX)
        h = hessian(lambda x: np.sum(log1pexp(x)), compile=mode)(x[1:])
        np.testing.assert_allclose(np.diag(h), [0.25, math.exp(-30) /
                                                (1 + math.exp(-30)) ** 2, 0.0], atol=1e-300)


def test_safe_norm_at_zero():
    @custom_jvp
    def safe_norm(x):
        return np.sqrt(np.sum(x ** 2))

    @safe_norm.defjvp
    def _(primals, tangents):
        (x,), (t,) = primals, tangents
        n = safe_norm(x)
        scale = np.where(n > 0, 1.0 / np.where(n > 0, n, 1.0), 0.0)
        return n, np.sum(x * t) * scale

    with np.errstate(all="ignore"):
        assert np.isnan(grad(lambda x: np.sqrt(np.sum(x ** 2)))(np.zeros(3))).all()
    for mode in MODES:
        assert np.array_equal(grad(safe_norm, compile=mode)(np.zeros(3)), np.zeros(3))
        np.testing.assert_allclose(grad(safe_norm, compile=mode)(np.array([3.0, 4.0])),
                                   [0.6, 0.8], rtol=1e-15)


def test_gradient_clipping():
    @custom_vjp
    def clip_gradient(x, bound):
        return x
    clip_gradient.defvjp(lambda x, bound: (x, bound),
                         lambda bound, ct: (np.clip(ct, -bound, bound), None))

    def loss(w):
        return np.sum(clip_gradient(w, 1.0) * np.array([0.5, 10.0, -10.0]))

    for mode in MODES:
        assert np.array_equal(grad(loss, compile=mode)(np.ones(3)), [0.5, 1.0, -1.0])


def test_nondiff_argnums_pass_static_values_first():
    import functools

    @functools.partial(custom_vjp, nondiff_argnums=(0,))
    def apply(fn, x):
        return fn(x)

    def fwd(fn, x):
        return fn(x), x

    def bwd(fn, x, ct):
        return (ct * 2.0,)          # deliberately not fn's derivative
    apply.defvjp(fwd, bwd)
    assert np.array_equal(grad(lambda x: np.sum(apply(np.sin, x)))(np.ones(2)), [2.0, 2.0])
    assert np.array_equal(apply(np.sin, np.zeros(2)), np.zeros(2))

    @functools.partial(custom_jvp, nondiff_argnums=(1,))
    def power(x, k):
        return x ** k

    @power.defjvp
    def _(k, primals, tangents):
        (x,), (t,) = primals, tangents
        return power(x, k), k * x ** (k - 1) * t
    assert grad(lambda x: power(x, 3))(2.0) == 12.0
    assert hessian(lambda x: power(x, 3))(2.0) == 12.0


def test_pytrees_and_several_outputs():
    """Several float outputs of mixed dtypes and an integer output, pytree arguments."""
    @custom_vjp
    def stats(p):
        x = p["x"]
        return {"mean": np.mean(x), "sq": (x ** 2).astype(np.float32), "n": np.int64(3)}

    def fwd(p):
        return stats(p), p["x"]

    def bwd(x, ct):
        return ({"x": ct["mean"] / x.size + 2 * x * ct["sq"]},)
    stats.defvjp(fwd, bwd)

    def loss(p):
        s = stats(p)
        return s["mean"] * 3.0 + np.sum(s["sq"].astype(np.float64)) + 0.0 * s["n"]

    def ref(p):
        x = p["x"]
        return np.mean(x) * 3.0 + np.sum(x ** 2)

    p = {"x": np.array([1.0, -2.0, 0.5])}
    for mode in MODES:
        _close(grad(loss, compile=mode)(p), grad(ref, compile=mode)(p))
    _close(jacfwd(lambda x: stats({"x": x})["mean"])(p["x"]), np.full(3, 1 / 3))


def test_implicit_function_rule_for_a_newton_solve():
    """The root's derivative from the implicit function theorem, not the iterations: the
    primal is an ordinary Python loop whose trip count depends on the input."""
    @custom_jvp
    def root(c):
        x = 2.0 * (c / 5.0) ** (1 / 3)
        for _ in range(50):
            fx = x ** 3 - 2.0 * x - c
            if abs(fx) < 1e-13:
                return x
            x = x - fx / (3.0 * x ** 2 - 2.0)
        raise RuntimeError("no convergence")

    @root.defjvp
    def _(primals, tangents):
        (c,), (t,) = primals, tangents
        x = root(c)             # the primal already computed
        return x, t / (3.0 * x ** 2 - 2.0)

    for c in (5.0, 6.0, 30.0):
        x = root(c)
        d = 1 / (3 * x ** 2 - 2)
        assert grad(root)(c) == pytest.approx(d, rel=1e-14)
        assert hessian(root)(c) == pytest.approx(-6 * x * d ** 3, rel=1e-12)


# -- errors --------------------------------------------------------------------------------
def test_a_rule_of_the_wrong_shape_or_structure_names_the_rule():
    @custom_jvp
    def bad_shape(x):
        return np.sin(x)

    @bad_shape.defjvp
    def _(primals, tangents):
        return np.sin(primals[0]), tangents[0][:1]

    with pytest.raises(ValueError, match="custom_jvp function bad_shape.*shape"):
        grad(lambda x: np.sum(bad_shape(x)))(np.ones(3))

    @custom_jvp
    def not_a_pair(x):
        return x

    not_a_pair.defjvp(lambda primals, tangents: tangents[0])
    with pytest.raises(TypeError, match="JVP rule of not_a_pair must return a pair"):
        jvp(not_a_pair, (np.ones(2),), (np.ones(2),))

    @custom_vjp
    def bad_bwd(x, y):
        return x * y
    bad_bwd.defvjp(lambda x, y: (x * y, (x, y)), lambda res, ct: (ct,))
    with pytest.raises(TypeError, match="backward rule of bad_bwd must return a tuple with "
                                        "one cotangent per differentiable argument"):
        grad(lambda x: np.sum(bad_bwd(x, x)))(np.ones(2))

    @custom_vjp
    def bad_ct(x):
        return x
    bad_ct.defvjp(lambda x: (x, None), lambda res, ct: (np.ones(5),))
    with pytest.raises(ValueError, match="custom_vjp function bad_ct has shape"):
        grad(lambda x: np.sum(bad_ct(x)))(np.ones(2))

    @custom_vjp
    def bad_fwd(x):
        return x
    bad_fwd.defvjp(lambda x: x, lambda res, ct: (ct,))
    with pytest.raises(TypeError, match="fwd rule of custom_vjp function bad_fwd"):
        grad(lambda x: np.sum(bad_fwd(x)))(np.ones(2))


def test_no_rule_and_closures_are_refused_clearly():
    @custom_jvp
    def no_rule(x):
        return x
    with pytest.raises(TypeError, match=r"no_rule.defjvp"):
        grad(lambda x: np.sum(no_rule(x)))(np.ones(2))
    assert np.array_equal(no_rule(np.ones(2)), np.ones(2))     # untraced: the function

    def outer(w):
        @custom_jvp
        def scaled(x):
            return x * w                # closes over the differentiated w

        @scaled.defjvp
        def _(primals, tangents):
            return scaled(primals[0]), tangents[0] * w
        return np.sum(scaled(np.ones(2)) * scaled(w))

    with pytest.raises(TracingError, match="closes over"):
        grad(outer)(np.array([1.0, 2.0]))

    def outer_vjp(w):
        @custom_vjp
        def scaled(x):
            return x * w
        scaled.defvjp(lambda x: (x * w, None), lambda res, ct: (ct * w,))
        return np.sum(scaled(w))

    with pytest.raises(TracingError, match="closes over"):
        grad(outer_vjp)(np.array([1.0, 2.0]))


def test_closing_over_constants_and_undifferentiated_values_is_fine():
    data = np.array([1.0, 2.0, 3.0])

    def loss(w, X):
        @custom_jvp
        def f(v):
            return np.sum(v * X * data)

        @f.defjvp
        def _(primals, tangents):
            return f(primals[0]), np.sum(tangents[0] * X * data)
        return f(w)

    np.testing.assert_allclose(grad(loss)(np.ones(3), np.full(3, 2.0)), 2 * data)


# -- checkpoint ----------------------------------------------------------------------------
def _rnn(n, steps, seg):
    rng = np.random.default_rng(1)
    W = rng.normal(size=(n, n)) / np.sqrt(n)

    def step(h, W):
        return np.tanh(W @ h + 0.1) + 0.5 * h

    def plain(W, h):
        for _ in range(steps):
            h = step(h, W)
        return np.sum(h ** 2)

    @checkpoint
    def segment(h, W):
        for _ in range(seg):
            h = step(h, W)
        return h

    def checkpointed(W, h):
        for _ in range(steps // seg):
            h = segment(h, W)
        return np.sum(h ** 2)
    return W, rng.normal(size=n), plain, checkpointed


@pytest.mark.parametrize("mode", MODES)
def test_checkpoint_gradient_equals_the_plain_one_bit_for_bit(mode):
    W, h, plain, checkpointed = _rnn(8, 12 if mode == "never" else 8, 4)
    a = value_and_grad(plain, argnums=(0, 1), compile=mode)(W, h)
    b = value_and_grad(checkpointed, argnums=(0, 1), compile=mode)(W, h)
    assert a[0] == b[0]
    for p, q in zip(a[1], b[1]):
        assert np.array_equal(p, q)
    if mode == "eager":     # (compiling vjp's and the nested programs too costs a minute cold)
        return
    _, pa = vjp(plain, W, h, compile=mode)
    _, pb = vjp(checkpointed, W, h, compile=mode)
    for p, q in zip(pa(1.0), pb(1.0)):
        assert np.array_equal(p, q)
    _close(hessian(checkpointed, argnums=1, compile=mode)(W, h),
           hessian(plain, argnums=1, compile=mode)(W, h))
    _close(jvp(checkpointed, (W, h), (W, h), compile=mode), jvp(plain, (W, h), (W, h),
                                                               compile=mode))


def test_checkpoint_keeps_only_segment_inputs_for_the_backward_pass():
    n, steps, seg = 32, 16, 4
    W, h, plain, checkpointed = _rnn(n, steps, seg)
    _, pa = vjp(plain, W, h)
    _, pb = vjp(checkpointed, W, h)
    state = n * 8
    # plain: several values per step; checkpointed: W and about one state per segment
    assert pa.residual_bytes - W.nbytes >= 2 * steps * state
    assert pb.residual_bytes - W.nbytes <= (steps // seg + 2) * state
    ol = make_oplist(grad(checkpointed))(W, h)
    assert sum(op.prim.name == "barrier" for op in ol.ops) == 2 * (steps // seg)


def test_checkpoint_with_closures_guards_and_vmap():
    scale = np.array([2.0, 3.0])

    def loss(w, x):
        @checkpoint
        def body(x):
            y = np.sin(x * w) * scale        # closes over the differentiated w
            if float(np.sum(stop(y))) > 100:   # a guard inside the checkpoint
                y = y * 0.0
            return y
        return np.sum(body(x) ** 2)

    def ref(w, x):
        return np.sum((np.sin(x * w) * scale) ** 2)

    stop = jvpvjp.stop_gradient
    w, x = np.array([0.5, -1.0]), np.array([1.0, 2.0])
    for mode in MODES:
        _close(grad(loss, argnums=(0, 1), compile=mode)(w, x),
               grad(ref, argnums=(0, 1), compile=mode)(w, x))
    X = np.stack([x, 2 * x])
    with pytest.raises(NotImplementedError, match=r"vmap.*float at .*test_custom.py"):
        vmap(grad(loss), in_axes=(None, 0))(w, X)      # the guard: examples could differ

    def unguarded(w, x):
        body = checkpoint(lambda x: np.sin(x * w) * scale)
        return np.sum(body(x) ** 2)
    _close(vmap(grad(unguarded), in_axes=(None, 0))(w, X),
           vmap(grad(ref), in_axes=(None, 0))(w, X))
    _close(grad(lambda w: np.sum(vmap(lambda x: unguarded(w, x))(X)))(w),
           grad(lambda w: np.sum(vmap(lambda x: ref(w, x))(X)))(w))


def test_rules_under_nested_vmaps_of_different_sizes():
    """A rule run for a batched op is batched innermost vmap first (a rule with a matrix
    product reshapes its operands: the axes' order matters)."""
    A = np.random.default_rng(1).normal(size=(4, 4))

    @custom_jvp
    def f(x):
        return np.tanh(A @ x)

    @f.defjvp
    def _(p, t):
        y = f(p[0])
        return y, (1 - y ** 2) * (A @ t[0])

    @custom_vjp
    def g(x):
        return np.tanh(A @ x)
    g.defvjp(lambda x: (g(x), g(x)), lambda y, ct: (A.T @ ((1 - y ** 2) * ct),))
    h = checkpoint(lambda x: np.tanh(A @ x))
    X = np.random.default_rng(0).normal(size=(2, 3, 4))
    want = grad(lambda X: np.sum(np.tanh(X @ A.T) ** 2))(X)
    for fn in (f, g, h):
        _close(grad(lambda X: np.sum(vmap(vmap(fn))(X) ** 2))(X), want)
        _close(jacfwd(lambda X: vmap(vmap(fn))(X))(X)[1, 2, :, 1, 2],
               jacfwd(lambda x: np.tanh(A @ x))(X[1, 2]))
