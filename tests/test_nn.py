"""jvpvjp.nn (layers, functional convolution and pooling, losses, initialisers) and
jvpvjp.optim (optimizers against their published update rules, fit)."""
import numpy as np
import pytest

from jvpvjp import grad, jit, nn, optim, value_and_grad
from jvpvjp.testing import check_grads


# -- convolution and pooling against direct loops ----------------------------------------
def _conv_reference(x, w, b, stride, padding):
    sh, sw = stride
    ph, pw = padding
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // sh + 1, (wd - kw) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out + (0 if b is None else b[None, :, None, None])


def _pool_reference(x, k, s, reduce):
    n, c, h, w = x.shape
    oh, ow = (h - k[0]) // s[0] + 1, (w - k[1]) // s[1] + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = reduce(x[:, :, i * s[0]:i * s[0] + k[0],
                                       j * s[1]:j * s[1] + k[1]], axis=(2, 3))
    return out


@pytest.mark.parametrize("stride,padding,kernel", [(1, 0, 3), ((2, 1), 1, (3, 2)),
                                                   (2, (0, 2), 2)])
def test_conv2d_matches_the_definition_and_its_derivatives(stride, padding, kernel, rng):
    kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
    x = rng.normal(size=(2, 3, 7, 6))
    w = rng.normal(size=(4, 3, kh, kw))
    b = rng.normal(size=4)
    s = (stride, stride) if isinstance(stride, int) else stride
    p = (padding, padding) if isinstance(padding, int) else padding
    np.testing.assert_allclose(nn.conv2d(x, w, b, stride, padding),
                               _conv_reference(x, w, b, s, p), rtol=1e-12, atol=1e-12)
    check_grads(lambda x, w, b: nn.conv2d(x, w, b, stride, padding), (x, w, b))


@pytest.mark.parametrize("k,s", [(2, None), (3, 2), ((2, 3), (1, 2))])
def test_pooling(k, s, rng):
    x = rng.normal(size=(2, 3, 7, 6))
    kk = (k, k) if isinstance(k, int) else k
    ss = kk if s is None else ((s, s) if isinstance(s, int) else s)
    np.testing.assert_allclose(nn.max_pool2d(x, k, s), _pool_reference(x, kk, ss, np.max))
    np.testing.assert_allclose(nn.avg_pool2d(x, k, s), _pool_reference(x, kk, ss, np.mean),
                               rtol=1e-13)
    check_grads(lambda x: nn.max_pool2d(x, k, s), (x,))
    check_grads(lambda x: nn.avg_pool2d(x, k, s), (x,))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_sigmoid_and_softplus_are_accurate_everywhere(backend):
    """Within a few ulp of the exact values over the whole range (tiny values far left keep
    their relative accuracy), derivatives s (1 - s) and s, and 1/4 at 0."""
    from jvpvjp.testing import use_backend
    x = np.concatenate([np.linspace(-800, 800, 4001), [-745.5, -40.0, -1e-300, 0.0, 1e-300]])
    xl = x.astype(np.longdouble)
    exact = 1 / (1 + np.exp(-xl))
    e = np.exp(-np.abs(xl))
    slope = e / (1 + e) ** 2                      # s (1 - s), without cancellation
    with use_backend(backend):
        s = jit(nn.sigmoid, compile="eager")(x)
        ds = jit(lambda v: grad(lambda u: np.sum(nn.sigmoid(u)))(v), compile="eager")(x)
        sp = jit(nn.softplus, compile="eager")(x)
        dsp = grad(lambda u: np.sum(nn.softplus(u)))(x)
    tiny = np.finfo(np.float64).tiny
    def ulps(got, ref):
        ref = np.asarray(ref, np.float64)
        return np.abs(got - ref) / np.spacing(np.maximum(np.abs(ref), tiny))
    assert ulps(s, exact).max() <= 4
    assert ulps(ds, slope).max() <= 8
    assert ds[x == 0.0][0] == 0.25
    assert ulps(sp, np.logaddexp(np.longdouble(0), xl)).max() <= 4
    assert ulps(dsp, exact).max() <= 8


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_logsumexp_of_infinities(backend):
    """Rows of -inf give -inf (an empty sum), a +inf gives +inf, as SciPy's logsumexp; the
    finite rows and their gradients are unchanged by the others."""
    from jvpvjp.testing import use_backend
    inf = np.inf
    x = np.array([[-inf, -inf, -inf], [0.0, -inf, 1.0], [inf, 0.0, 1.0], [1.0, 2.0, 3.0]])
    with use_backend(backend):
        got = jit(lambda v: nn.logsumexp(v, axis=1), compile="eager")(x)
        g = grad(lambda v: nn.logsumexp(v[1:2], axis=1)[0])(x)
    np.testing.assert_array_equal(got[:3], [-inf, np.log(1 + np.e), inf])
    np.testing.assert_allclose(got[3], np.log(np.sum(np.exp([1.0, 2.0, 3.0]))), rtol=1e-15)
    p = np.exp([0.0, 1.0]) / (1 + np.e)
    np.testing.assert_allclose(g[1], [p[0], 0.0, p[1]], rtol=1e-15)
    assert not g[[0, 2, 3]].any()


def test_shape_errors_are_clear():
    with pytest.raises(ValueError, match="NCHW"):
        nn.conv2d(np.ones((3, 8, 8)), np.ones((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="channels"):
        nn.conv2d(np.ones((1, 2, 8, 8)), np.ones((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="does not fit"):
        nn.max_pool2d(np.ones((1, 1, 2, 2)), 3)
    with pytest.raises(ValueError, match="expects 4 input features"):
        nn.Linear(4, 2).init(0, (-1, 5))


# -- layers ------------------------------------------------------------------------------------
def test_layers_init_apply_and_shapes(rng):
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(4, 6, 2), nn.Tanh(), nn.AvgPool2d(1), nn.Flatten(),
                        nn.Dropout(0.25), nn.Linear(6 * 3 * 3, 5), nn.Sigmoid(),
                        nn.Linear(5, 3), nn.Softmax())
    assert net.output_shape((-1, 1, 8, 8)) == (-1, 3)
    params = net.init(0, (-1, 1, 8, 8))
    again = net.init(0, (-1, 1, 8, 8))
    for p, q in zip(params, again):                 # seeded: the same numbers
        assert p.keys() == q.keys() and all(np.array_equal(p[k], q[k]) for k in p)
    assert params[0]["w"].shape == (4, 1, 3, 3) and params[8]["w"].shape == (54, 5)
    bound = 1 / np.sqrt(54)                          # PyTorch's default Linear init
    assert np.abs(params[8]["w"]).max() <= bound and np.abs(params[8]["b"]).max() <= bound
    x = rng.normal(size=(7, 1, 8, 8))
    y = net.apply(params, x)
    assert y.shape == (7, 3)
    np.testing.assert_allclose(y.sum(axis=1), 1.0)
    g = grad(lambda p: np.sum(net.apply(p, x) * np.arange(3)))(params)
    assert [sorted(p) for p in g] == [sorted(p) for p in params]
    # against finite differences through every layer (dropout off)
    check_grads(lambda w: np.sum(net.apply([{**params[0], "w": w}] + params[1:], x)
                                 * np.arange(3)), (params[0]["w"],))


def test_dropout(rng):
    layer = nn.Dropout(0.5)
    x = rng.normal(size=(4, 6))
    assert layer.apply({}, x) is x                   # evaluation: the identity
    u = nn.uniforms(1, x.shape)
    y = layer.apply({}, x, u)
    np.testing.assert_allclose(y, np.where(u >= 0.5, 2 * x, 0.0))
    f = jit(lambda x, u: layer.apply({}, x, u))
    np.testing.assert_allclose(f(x, u), y)
    u2 = nn.uniforms(2, x.shape)                     # new numbers: a new mask, same kernel
    np.testing.assert_allclose(f(x, u2), np.where(u2 >= 0.5, 2 * x, 0.0))
    g = grad(lambda x: np.sum(layer.apply({}, x, u)))(x)
    np.testing.assert_allclose(g, np.where(u >= 0.5, 2.0, 0.0))
    with pytest.raises(TypeError, match="uniforms"):
        grad(lambda x: np.sum(layer.apply({}, x, np.random.default_rng(0))))(x)
    net = nn.Sequential(nn.Linear(6, 6), nn.Dropout(0.3), nn.Linear(6, 2), nn.Dropout(0.3))
    params = net.init(0, x.shape)
    us = net.uniforms(3, x.shape)
    assert [u.shape for u in us] == [(4, 6), (4, 2)]
    assert net.apply(params, x, us).shape == (4, 2)


def test_losses(rng):
    z = np.array([-1000.0, -3.0, 0.0, 2.0, 1000.0])
    t = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    got = nn.binary_cross_entropy_with_logits(z, t)
    with np.errstate(all="ignore"):
        p = 1 / (1 + np.exp(-z[1:4]))
    naive = -(t[1:4] * np.log(p) + (1 - t[1:4]) * np.log(1 - p))
    np.testing.assert_allclose(got, (0.0 + naive.sum() + 0.0) / 5, rtol=1e-12)
    g = grad(nn.binary_cross_entropy_with_logits)(z, t)
    assert np.isfinite(g).all()
    logits = rng.normal(size=(6, 4))
    labels = np.array([0, 3, 1, 1, 2, 0])
    np.testing.assert_allclose(nn.softmax_cross_entropy(logits, labels),
                               nn.cross_entropy(logits, np.eye(4)[labels]), rtol=1e-14)


def test_initialisers():
    from jvpvjp.nn import init
    w = init.xavier_uniform(0, (200, 300))
    a = np.sqrt(6 / 500)
    assert np.abs(w).max() <= a and np.abs(w).max() > 0.9 * a
    assert abs(init.he_normal(1, (400, 100, 3, 3)).std() - np.sqrt(2 / 900)) < 0.01 * np.sqrt(2 / 900) * 10
    assert np.array_equal(init.normal(5, (3,)), init.normal(np.random.default_rng(5), (3,)))
    assert init.fans((3, 4), "io") == (3, 4) and init.fans((8, 2, 3, 3)) == (18, 72)
    with pytest.raises(TypeError, match="Generator"):
        init.normal("seed", (2,))


# -- optimizers against their update rules -----------------------------------------------------
def _reference(name, hyper, steps, p, grads):
    """Published update rules, written out with NumPy on one array."""
    p = p.copy()
    m = np.zeros_like(p)
    v = np.zeros_like(p)
    out = []
    for t, g in enumerate(grads[:steps], 1):
        if name == "sgd":
            lr, mom, wd, nest = hyper
            g = g + wd * p
            m = mom * m + g
            p = p - lr * ((g + mom * m) if nest else (m if mom else g))
        elif name in ("adam", "adamw"):
            lr, b1, b2, eps, wd = hyper
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g * g
            step = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
            p = p - lr * (step + (wd * p if name == "adamw" else 0))
        elif name == "rmsprop":
            lr, alpha, eps = hyper
            v = alpha * v + (1 - alpha) * g * g
            p = p - lr * g / (np.sqrt(v) + eps)
        elif name == "adagrad":
            lr, eps = hyper
            v = v + g * g
            p = p - lr * g / (np.sqrt(v) + eps)
        out.append(p.copy())
    return out


CASES = [
    ("sgd", optim.SGD(0.1), (0.1, 0.0, 0.0, False)),
    ("sgd", optim.SGD(0.1, momentum=0.9, weight_decay=0.01), (0.1, 0.9, 0.01, False)),
    ("sgd", optim.SGD(0.05, momentum=0.8, nesterov=True), (0.05, 0.8, 0.0, True)),
    ("adam", optim.Adam(1e-2), (1e-2, 0.9, 0.999, 1e-8, 0.0)),
    ("adamw", optim.AdamW(1e-2, weight_decay=0.1), (1e-2, 0.9, 0.999, 1e-8, 0.1)),
    ("rmsprop", optim.RMSProp(1e-2), (1e-2, 0.99, 1e-8)),
    ("adagrad", optim.Adagrad(0.1), (0.1, 1e-10)),
]


@pytest.mark.parametrize("name,opt,hyper", CASES,
                         ids=[f"{c[0]}{i}" for i, c in enumerate(CASES)])
def test_optimizer_follows_its_update_rule(name, opt, hyper, rng):
    p0 = rng.normal(size=5)
    grads = [rng.normal(size=5) for _ in range(4)]
    want = _reference(name, hyper, 4, p0, grads)
    params = {"a": p0, "b": [p0 * 2]}                # a pytree
    want_b = _reference(name, hyper, 4, p0 * 2, [g * 3 for g in grads])
    state = opt.init(params)
    for k, g in enumerate(grads):
        params, state = opt.update({"a": g, "b": [g * 3]}, state, params)
        np.testing.assert_allclose(params["a"], want[k], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(params["b"][0], want_b[k], rtol=1e-12, atol=1e-14)


def test_hyperparameters_can_change_between_steps():
    opt = optim.SGD(0.1)
    p, state = np.ones(2), None
    state = opt.init(p)
    p, state = opt.update(np.ones(2), state, p)
    opt.lr = 0.5
    p, state = opt.update(np.ones(2), state, p)
    np.testing.assert_allclose(p, 1 - 0.1 - 0.5)
    opt = optim.SGD(0.1, momentum=0.5)
    state = opt.init(p)
    q, _ = opt.update(np.ones(2), state, p)
    opt.nesterov = True                              # a structural flag: another program
    r, _ = opt.update(np.ones(2), state, p)
    np.testing.assert_allclose(q, p - 0.1)
    np.testing.assert_allclose(r, p - 0.1 * 1.5)


def test_fit_and_the_compiled_step(rng):
    X = rng.normal(size=(53, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 0.3

    def loss(p, X, y):
        return np.mean((X @ p["w"] + p["b"] - y) ** 2)

    params = {"w": np.zeros(3), "b": np.zeros(())}
    opt = optim.Adam(0.05)
    trained, history = optim.fit(loss, params, (X, y), epochs=30, batch_size=8,
                                 optimizer=opt, progress=False)
    assert len(history) == 30 and history[-1] < 1e-3 * history[0]
    np.testing.assert_allclose(trained["w"], [1.0, -2.0, 0.5], atol=0.02)
    again, history2 = optim.fit(loss, params, (X, y), epochs=30, batch_size=8,
                                optimizer=opt, progress=False)
    # seeded shuffling: the same batches; the kernel swapped in mid-run (compiled sums add
    # in another order) may move the last bits, unless the step's tier is pinned
    np.testing.assert_allclose(history2, history, rtol=1e-9)
    runs = [optim.fit(loss, params, (X, y), epochs=3, batch_size=8, optimizer=opt,
                      progress=False, compile=mode)[1] for mode in ("never", "never", "eager",
                                                                    "eager")]
    assert runs[0] == runs[1] and runs[2] == runs[3]
    # the step is value_and_grad and update in one call, and matches them done apart
    step = opt.step(loss)
    state = opt.init(params)
    p1, s1, v1 = step(params, state, X[:8], y[:8])
    v, g = value_and_grad(loss)(params, X[:8], y[:8])
    p2, s2 = opt.update(g, opt.init(params), params)
    assert float(v1) == pytest.approx(float(v))
    np.testing.assert_allclose(p1["w"], p2["w"], rtol=1e-13)
    seen = []
    optim.fit(loss, params, X_and_y := (X, y), epochs=2, batch_size=100, optimizer=opt,
              callback=lambda *a: seen.append(a[0]), progress=False)
    assert seen == [0, 1] and X_and_y[0] is X
    with pytest.raises(ValueError, match="different lengths"):
        optim.fit(loss, params, (X, y[:10]), epochs=1, batch_size=4, optimizer=opt)
