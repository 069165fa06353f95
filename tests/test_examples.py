"""The examples run and do what they say."""
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))


def test_mlp_example_trains():
    import mlp
    value, accuracy = mlp.main(steps=100)
    assert value < 0.5 and accuracy > 0.8


def test_newton_example():
    import newton
    x, steps = newton.newton(2.0)
    assert abs(newton.f(x)) < 1e-12 and steps < 10
    from jvpvjp import grad
    assert grad(newton.root_of)(5.0) == pytest.approx(1 / (3 * x ** 2 - 2), rel=1e-10)
    assert np.isfinite(newton.df(1.0))
    # the implicit rule: exact whatever the number of steps the solver took
    for c in (5.0, 9.0):
        r = newton.root(c)
        d = 1 / (3 * r ** 2 - 2)
        assert grad(newton.root)(c) == pytest.approx(d, rel=1e-14)
        from jvpvjp import hessian
        assert hessian(newton.root)(c) == pytest.approx(-6 * r * d ** 3, rel=1e-12)


def test_custom_rules_example():
    import custom_rules as cr
    from jvpvjp import grad, jacfwd
    x = np.array([-800.0, 0.0, 800.0])
    assert np.array_equal(grad(lambda x: np.sum(cr.log1pexp(x)))(x), [0.0, 0.5, 1.0])
    assert np.array_equal(grad(cr.safe_norm)(np.zeros(3)), np.zeros(3))
    assert np.array_equal(grad(lambda x: np.sum(5.0 * cr.clip_gradient(x, 1.0)))(np.ones(2)),
                          [1.0, 1.0])
    W, x0 = cr.problem(n=12, seed=3)
    implicit = grad(cr.implicit_loss, argnums=(0, 1))(W, x0)
    unrolled = grad(cr.through_the_loop, argnums=(0, 1))(W, x0)
    for a, b in zip(implicit, unrolled):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    # forward mode through the backward rule's transpose agrees too
    J = jacfwd(cr.equilibrium, argnums=1)(W, x0)
    z = cr.equilibrium(W, x0)
    D = np.diag(1 - z ** 2)
    ref = np.linalg.solve(np.eye(len(z)) - D @ W, D)
    np.testing.assert_allclose(J, ref, rtol=1e-9, atol=1e-12)


def test_per_example_gradients_example():
    import per_example
    from jvpvjp import grad
    rng = np.random.default_rng(1)
    X, Y = per_example.make_data(rng, n=32)
    params = (rng.normal(size=X.shape[1]), 0.3)
    gw, gb = per_example.per_example_grads(params, X, Y)
    for i in (0, 7, 31):
        gwi, gbi = grad(per_example.loss_one)(params, X[i], Y[i])
        np.testing.assert_allclose(gw[i], gwi, rtol=1e-12)
        assert gb[i] == pytest.approx(gbi, rel=1e-12)
    # their mean is the gradient of the mean loss
    mw, mb = grad(per_example.mean_loss)(params, X, Y)
    np.testing.assert_allclose(gw.mean(axis=0), mw, rtol=1e-12)
    start, end, accuracy = per_example.main(steps=100)
    assert end < 0.6 * start and accuracy > 0.8


def test_demo_runs():
    import contextlib
    import io
    from jvpvjp.__main__ import main
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):    # (capsys once saw nothing in a full CI run)
        main()
    out = buf.getvalue()
    assert "max |gradient - finite difference|" in out and "jacfwd" in out
    worst = float(out.split("finite difference| over 3 entries: ")[1].split()[0])
    assert worst < 1e-6
