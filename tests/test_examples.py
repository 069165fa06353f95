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
    import io
    from jvpvjp.__main__ import main
    buf = io.StringIO()
    main(file=buf)       # (capsys and redirect_stdout both lost its output in CI runs)
    out = buf.getvalue()
    assert "max |gradient - finite difference|" in out and "jacfwd" in out
    worst = float(out.split("finite difference| over 3 entries: ")[1].split()[0])
    assert worst < 1e-6


def test_linear_regression_example_recovers_w_and_b():
    import linear_regression as lr
    params, history = lr.main(verbose=False)
    assert np.abs(params["w"].reshape(-1) - lr.TRUE_W).max() < 0.01
    assert abs(params["b"][0] - lr.TRUE_B) < 0.01
    assert len(history) == 3 and history[-1] < history[0]


def test_scalar_weight_lesson(capsys):
    import scalar_weight as sw
    w = sw.main(verbose=True)
    assert w == pytest.approx(2.0, abs=1e-6)
    assert sw.forward(4.0, w) == pytest.approx(8.0, abs=1e-5)
    out = capsys.readouterr().out
    assert "\tgrad: 1.0 2.0 -2.0" in out          # the lesson's first gradient: 2x(xw - y)


def test_numpy_framework_example():
    import numpy_framework as nf
    params, (W, b), history = nf.regression(verbose=False)
    assert np.abs(params[0]["w"] - W).max() < 0.05 and history[-1] < 1e-2 * history[0]
    _, _, accuracy = nf.classification(verbose=False, epochs=20)
    assert accuracy > 0.9


def test_tanh_regression_adam_example():
    import tanh_regression_adam as t
    X, T = t.make_data(n=50)
    params = t.init_params(1)
    auto = jvpvjp_grad(t.loss)(params, X, T)
    hand = t.hand_gradients(params, X, T)
    for k in hand:
        np.testing.assert_allclose(auto[k], hand[k], rtol=1e-12, atol=1e-12)
    history, gap = t.main(verbose=False)
    assert gap < 1e-9 and history[-1] < 0.05 * history[0]


def jvpvjp_grad(f):
    from jvpvjp import grad
    return grad(f)


def test_convnet_example_learns():
    import convnet
    accuracy, times = convnet.main(epochs=4, verbose=False)
    assert accuracy > 0.85
    accuracy, _ = convnet.main(epochs=6, verbose=False, data=convnet.shapes(n=1000))
    assert accuracy > 0.85


def test_detach_example():
    import detach
    x, dz, dy, g = detach.main(verbose=False)
    assert np.array_equal(dz, x * x) and np.array_equal(dy, 2 * x)
    from jvpvjp import grad
    rng = np.random.default_rng(0)
    theta = rng.normal(size=(3, 2))
    s, s_next = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    a = np.eye(2)[rng.integers(0, 2, 5)]
    r = rng.normal(size=5)
    target = r + 0.9 * np.max(detach.q_values(theta, s_next), axis=1)   # frozen by hand

    def by_hand(theta):
        q = np.sum(detach.q_values(theta, s) * a, axis=1)
        return np.mean((q - target) ** 2)
    np.testing.assert_allclose(grad(detach.td_loss)(theta, s, a, r, s_next),
                               grad(by_hand)(theta), rtol=1e-12)
