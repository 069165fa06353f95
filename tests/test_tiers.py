"""The call path: tiers, one cache per function, environment checks, threads, diagnostics."""
import logging
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import jvpvjp
from jvpvjp import config, explain_cache, grad, jacfwd, jit, jvp, value_and_grad, vjp
from jvpvjp.testing import use_backend


@pytest.fixture
def auto(monkeypatch):
    """The tiered default, promoting after two calls (no waiting for hot code)."""
    monkeypatch.setattr(config, "backend", "auto")
    monkeypatch.setattr(config, "compile_after", 0.0)
    yield
    jvpvjp.wait_for_compiles(120)


def _tiers(fn):
    d = fn._dispatcher()
    return [k.tier for paths in d.paths.values() for p in paths for k in p.kernels]


def test_new_code_starts_on_the_interpreter_and_is_compiled_when_hot(auto, rng):
    def f(x, y):
        return np.sum(np.tanh(x) * y + np.exp(-x ** 2))
    x, y = rng.normal(size=4), rng.normal(size=4)
    g = value_and_grad(f, argnums=(0, 1))
    from jvpvjp.backend.tiers import runtime_ready
    interpreter = "vtape" if runtime_ready() else "numpy"     # the tapes once Numba is loaded
    first = g(x, y)
    assert _tiers(g) == [interpreter]
    for _ in range(3):
        g(x, y)
    assert jvpvjp.wait_for_compiles(120)
    assert _tiers(g) == ["numba"]
    later = g(x, y)
    with use_backend("numpy"):
        ref = value_and_grad(f, argnums=(0, 1))(x, y)
    for got in (first, later):
        np.testing.assert_allclose(got[0], ref[0], rtol=1e-13)
        for a, b in zip(got[1], ref[1]):
            np.testing.assert_allclose(a, b, rtol=1e-13)
    assert "compiled in the background" in explain_cache(g)


def test_an_eager_compile_does_not_wait_for_the_tapes(rng, monkeypatch):
    """compile="eager" goes straight to Numba: it neither loads the tapes' loops (on a new
    machine their compile takes seconds) nor passes through a tape tier."""
    from jvpvjp.backend import tiers
    monkeypatch.setattr(jvpvjp.config, "backend", "auto")
    monkeypatch.setattr(tiers, "load_runtime", lambda: pytest.fail("the tapes were loaded"))
    monkeypatch.setattr(tiers, "runtime_ready", lambda: False)

    def f(x):
        return np.sum(np.tanh(x) * x[::-1])
    x = rng.normal(size=4)
    g = grad(f, compile="eager")
    np.testing.assert_allclose(g(x), grad(f, compile="never")(x), rtol=1e-13)
    kernel, = [k for paths in g._dispatcher().paths.values() for p in paths for k in p.kernels]
    assert [tier for tier, _, _ in kernel.history] == ["numpy", "numba"]
    assert "compiled eagerly" in explain_cache(g)


def test_compile_modes_give_the_same_results(rng):
    def f(x):
        return np.sum(np.sin(x) * np.cos(2 * x))
    x = rng.normal(size=5)
    ref = grad(f, compile="never")(x)
    eager = grad(f, compile="eager")
    np.testing.assert_allclose(eager(x), ref, rtol=1e-13)
    assert _tiers(eager)[-1] in ("numba", "tape")
    with pytest.raises(ValueError, match="compile must be one of"):
        grad(f, compile="sometimes")


def test_jacobians_vjp_and_jit_go_through_the_tiers(auto, rng):
    def f(x):
        return np.tanh(x) * x[::-1]
    x = rng.normal(size=3)
    with use_backend("numpy"):
        ref_j = jacfwd(f)(x)
        ref_out, ref_pull = vjp(f, x)
        ref_ct = ref_pull(np.ones(3))
    jf = jacfwd(f)
    for _ in range(4):
        np.testing.assert_allclose(jf(x), ref_j, rtol=1e-13)
        out, pull = vjp(f, x)
        np.testing.assert_allclose(pull(np.ones(3))[0], ref_ct[0], rtol=1e-13)
        np.testing.assert_allclose(jit(f)(x), ref_out, rtol=1e-13)
    jvpvjp.wait_for_compiles(120)
    np.testing.assert_allclose(jf(x), ref_j, rtol=1e-13)
    out, pull = vjp(f, x)
    np.testing.assert_allclose(pull(np.ones(3))[0], ref_ct[0], rtol=1e-13)


# -- one cache per function ----------------------------------------------------------------
def test_inline_grad_reuses_one_trace(rng):
    x = rng.normal(size=3)

    def step():
        return grad(lambda w: np.sum(np.sin(w) ** 2))(x)

    before = grad(lambda w: np.sum(np.sin(w) ** 2))
    for _ in range(5):
        step()
    info = grad(lambda w: np.sum(np.sin(w) ** 2)).cache_info()   # another line: own code
    assert info["traces"] == 0 and before.cache_info()["traces"] == 0
    f = lambda w: np.sum(w ** 3)       # noqa: E731
    for _ in range(4):
        grad(f)(x)
        value_and_grad(f)(x)
    assert grad(f).cache_info()["traces"] == 1
    assert value_and_grad(f).cache_info()["traces"] == 1


def test_inline_lambda_in_a_loop_is_traced_once(rng):
    x = rng.normal(size=3)
    infos = []
    for _ in range(4):
        g = grad(lambda w: np.sum(np.cos(w) * w))
        g(x)
        infos.append(g.cache_info())
    assert infos[-1]["traces"] == 1 and infos[-1]["calls"] == 4


def test_closures_over_different_cells_do_not_share_a_cache(rng):
    def make(c):
        def f(x):
            return np.sum(c * x ** 2)

        def rebind(v):
            nonlocal c
            c = v
        return f, rebind

    f1, _ = make(1.0)
    f2, rebind2 = make(1.0)
    x = rng.normal(size=3)
    np.testing.assert_allclose(grad(f1)(x), 2 * x)
    np.testing.assert_allclose(grad(f2)(x), 2 * x)
    rebind2(5.0)
    np.testing.assert_allclose(grad(f2)(x), 10 * x)
    np.testing.assert_allclose(grad(f1)(x), 2 * x)


# -- the environment -----------------------------------------------------------------------
W = np.array([1.0, 2.0])
SCALE = 2.0


def _uses_w(x):
    return np.sum(W * np.sin(x))


def _uses_helper(x):
    return np.sum(_helper(x))


def _helper(x):
    return W.T[::-1] * SCALE * x


def test_rebinding_a_global_array_retraces(rng):
    global W
    g = grad(_uses_w)
    x = rng.normal(size=2)
    old = W
    try:
        np.testing.assert_allclose(g(x), W * np.cos(x))
        W = np.array([0.5, 0.25])
        np.testing.assert_allclose(g(x), W * np.cos(x))
        assert "global 'W'" in explain_cache(g) and "rebound" in explain_cache(g)
    finally:
        W = old


def test_changing_a_global_array_in_place_is_seen(rng):
    g = grad(_uses_helper)
    x = rng.normal(size=2)
    saved = W.copy()
    try:
        np.testing.assert_allclose(g(x), W[::-1] * SCALE)
        W[0] = 7.0             # through a derived array (W.T[::-1]) in a helper function
        np.testing.assert_allclose(g(x), W[::-1] * SCALE)
        assert "changed in place" in explain_cache(g)
    finally:
        W[:] = saved


def _reads_an_element(x):
    return np.sum(W[1] * x * x)


def test_a_transform_of_a_transform_sees_what_the_inner_function_reads(rng):
    """jit(grad(f)) bakes in what f reads from its globals (an element of W, a float by
    the time it reaches the trace): the outer cache checks f's environment too."""
    import jvpvjp
    x = rng.normal(size=3)
    saved = W.copy()
    try:
        for outer in (jvpvjp.jit, jvpvjp.vmap):
            g = outer(grad(_reads_an_element))
            xs = x if outer is jvpvjp.jit else np.stack([x, -x])
            np.testing.assert_allclose(g(xs), 2.0 * W[1] * xs)
            W[1] += 3.0
            np.testing.assert_allclose(g(xs), 2.0 * W[1] * xs)
    finally:
        W[:] = saved


def test_changing_a_large_closure_array_in_place_is_seen(rng):
    """Large contiguous arrays are compared in place (memcmp); a change anywhere, even in
    the last byte, is seen, and so is one in a non-contiguous captured view."""
    big = rng.normal(size=(300, 300))            # 720 KB
    view = big[:, ::2]
    f = jvpvjp.jit(lambda x: np.sum(big * x) + np.sum(view))
    x = rng.normal(size=300)
    for where in [(0, 0), (-1, -1), (150, 2)]:
        np.testing.assert_allclose(f(x), np.sum(big * x) + np.sum(view), rtol=1e-12)
        big[where] += 1.0
        np.testing.assert_allclose(f(x), np.sum(big * x) + np.sum(view), rtol=1e-12)
    assert "changed in place" in explain_cache(f)


def test_rebinding_a_global_number_and_a_closure_array_retraces(rng):
    global SCALE
    x = rng.normal(size=2)
    g = grad(_uses_helper)
    old = SCALE
    try:
        g(x)
        SCALE = 3.0
        np.testing.assert_allclose(g(x), W[::-1] * 3.0)
    finally:
        SCALE = old
    table = np.array([1.0, -1.0])
    h = grad(lambda v: np.sum(table * v))
    np.testing.assert_allclose(h(x), [1.0, -1.0])
    table *= 4.0
    np.testing.assert_allclose(h(x), [4.0, -4.0])


def test_arrays_in_global_containers_and_objects(rng):
    params = {"w": np.array([1.0, 2.0])}

    class Model:
        def __init__(self):
            self.w = np.array([3.0, 4.0])

        def loss(self, x):
            return np.sum(self.w * x) + np.sum(params["w"] * x)

    m = Model()
    g = grad(m.loss)
    x = rng.normal(size=2)
    np.testing.assert_allclose(g(x), [4.0, 6.0])
    m.w = np.array([0.0, 1.0])
    np.testing.assert_allclose(g(x), [1.0, 3.0])
    params["w"][1] = 10.0
    np.testing.assert_allclose(g(x), [1.0, 11.0])
    params["w"] = np.array([0.0, 0.0])
    np.testing.assert_allclose(g(x), [0.0, 1.0])


def test_identity_only_mode_skips_content_checks(monkeypatch, rng):
    monkeypatch.setattr(config, "env_check", "identity")
    arr = np.array([1.0, 2.0])
    g = grad(lambda v: np.sum(arr * v))
    x = rng.normal(size=2)
    g(x)
    assert g._dispatcher().paths and all(
        p.env is None or not p.env.arrays for ps in g._dispatcher().paths.values() for p in ps)


_calls = []


def _stateful(x):
    _calls.append(1)            # a side effect is fine; rebinding a global while running is not
    globals()["_COUNTER"] = globals().get("_COUNTER", 0) + 1
    return np.sum(x * _COUNTER)


def test_a_function_that_rebinds_its_globals_is_traced_on_every_call():
    g = grad(_stateful)
    x = np.array([1.0, 2.0])
    r1, r2 = g(x), g(x)
    assert r2[0] == r1[0] + 1       # the counter went up on each call, as plain Python does
    assert g.cache_info()["traces"] == 2
    assert "changes its environment" in explain_cache(g)


# -- threads -------------------------------------------------------------------------------
def test_threads_calling_first_and_during_compiles(auto, rng):
    fns = [lambda x, k=k: np.sum(np.tanh(x * (k + 1)) * x) for k in range(3)]
    gs = [value_and_grad(f) for f in fns]
    xs = [rng.normal(size=4) for _ in range(8)]
    with use_backend("numpy"):
        refs = [[value_and_grad(f)(x)[1] for x in xs] for f in fns]
    errors = []
    barrier = threading.Barrier(4)

    def work(t):
        try:
            barrier.wait()
            for rep in range(30):
                for i, g in enumerate(gs):
                    j = (t + rep) % len(xs)
                    np.testing.assert_allclose(g(xs[j])[1], refs[i][j], rtol=1e-12)
        except Exception as e:        # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:2]
    assert jvpvjp.wait_for_compiles(120)
    for i, g in enumerate(gs):
        np.testing.assert_allclose(g(xs[0])[1], refs[i][0], rtol=1e-12)


def test_a_tracer_used_in_another_thread_raises():
    leaked = {}
    done = threading.Event()

    def f(x):
        leaked["x"] = x
        done.wait(5)
        return np.sum(x)

    errors = []

    def other():
        while "x" not in leaked:
            pass
        try:
            np.sin(leaked["x"])
        except jvpvjp.TracingError as e:
            errors.append(e)
        finally:
            done.set()

    t = threading.Thread(target=other)
    t.start()
    grad(f)(np.ones(2))
    t.join()
    assert errors and "another thread" in str(errors[0])


# -- diagnostics and start-up ----------------------------------------------------------------
def test_explain_cache_and_debug_logging(caplog, rng):
    def f(x):
        if np.sum(x) > 0:
            return np.sum(x ** 2)
        return np.sum(-x)
    g = grad(f)
    with caplog.at_level(logging.DEBUG, logger="jvpvjp"):
        g(np.ones(2))
        g(-np.ones(2))
        g(np.ones(3))
    text = explain_cache(g)
    assert "first call" in text and "guard flipped" in text and "new argument signature" in text
    assert any("traced" in r.getMessage() for r in caplog.records)
    with pytest.raises(TypeError, match="explain_cache takes"):
        explain_cache(lambda x: x)


def test_first_gradient_in_a_fresh_process_does_not_wait_for_numba(tmp_path):
    script = textwrap.dedent("""
        import sys, numpy as np, jvpvjp
        g = jvpvjp.grad(lambda x: np.sum(np.sin(x) * x ** 2))(np.arange(3.0))
        print(np.allclose(g, np.cos(np.arange(3.0)) * np.arange(3.0) ** 2
                          + 2 * np.sin(np.arange(3.0)) * np.arange(3.0)))
        print("numba" in sys.modules)
    """)
    env = dict(os.environ, JVPVJP_CACHE_DIR=str(tmp_path))
    env.pop("JVPVJP_BACKEND", None)
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                         text=True, check=True).stdout.split()
    assert out == ["True", "False"]


def test_a_disk_probe_that_misses_does_not_swallow_promotion(auto, monkeypatch):
    """A new kernel asks the disk cache after its first call (in the background); calls
    that make it hot meanwhile still get it compiled when the probe finds nothing."""
    import time
    from jvpvjp.backend import tiers
    from jvpvjp.oplist import OpList
    monkeypatch.setattr(tiers, "_disk_state", [True])
    monkeypatch.setattr(tiers, "tape_tier", lambda oplists: None)    # numpy, then numba
    probes, built = [], []

    def probe():
        time.sleep(0.2)       # the hot calls happen while the probe runs
        probes.append(1)
        return False

    def make(backend):
        built.append(backend)
        return lambda *a: (backend,)

    k = tiers.Tiered(make, [OpList([], [], [])], "probe", on_disk=probe)
    k._target = "numba"              # pretend the op list compiles (no Numba needed)
    monkeypatch.setattr(tiers, "load_runtime", lambda: True)
    assert k.tier == "numpy"
    for _ in range(4):
        assert k() in (("numpy",), ("numba",))
    assert jvpvjp.wait_for_compiles(30)
    assert probes == [1] and k.tier == "numba" and k() == ("numba",)
    assert "hot after" in k.history[-1][2]


def test_long_programs_move_to_the_vector_tape_without_a_compile_budget(monkeypatch, rng):
    """A program too long to compile has nothing to compile on its way to the vector tape
    (its loop is shared): a few calls move it there, not seconds of interpreted time."""
    from jvpvjp.backend import tiers
    monkeypatch.setattr(config, "backend", "auto")
    monkeypatch.setattr(config, "compile_max_ops", 20)       # 60 ops counts as long here
    monkeypatch.setattr(config, "compile_seconds_fixed", 0.0)
    assert tiers.load_runtime()
    monkeypatch.setattr(tiers, "runtime_ready", lambda: False)   # start on the interpreter

    def f(x):
        for _ in range(30):
            x = np.sin(x) * 1.001
        return np.sum(x)
    x = rng.normal(size=3)
    g = grad(f)
    with use_backend("numpy"):
        ref = grad(f)(x)
    for _ in range(5):
        np.testing.assert_allclose(g(x), ref, rtol=1e-13)
    assert jvpvjp.wait_for_compiles(60)
    assert _tiers(g) == ["numpy", "vtape"]     # the reference's pinned path, then ours
    np.testing.assert_allclose(g(x), ref, rtol=1e-13)


def test_jvpvjp_imported_through_a_path_with_dots_is_not_user_code(tmp_path):
    """jvpvjp's own closures (caches that grow) are not part of a user function's
    environment, however jvpvjp was imported: a step that calls a transformed function
    is traced once, not on every call."""
    src = os.path.dirname(os.path.dirname(jvpvjp.__file__))
    dotted = os.path.join(src, "..", os.path.basename(src))
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {dotted!r})
        import numpy as np, jvpvjp
        from jvpvjp import optim
        assert ".." in jvpvjp.__file__
        def loss(p, X):
            return np.sum(np.tanh(X @ p["w"]) ** 2)
        opt = optim.Adam(1e-2)
        step = opt.step(loss)
        p, s, X = {{"w": np.ones(3)}}, None, np.arange(12.0).reshape(4, 3) / 10
        s = opt.init(p)
        for _ in range(4):
            p, s, _ = step(p, s, X)
        print(opt._steps[loss, "auto"].__closure__[0].cell_contents.cache_info()["traces"])
        def bad(x):
            return float(np.sum(x))       # refused: errors name this line, not jvpvjp's
        try:
            jvpvjp.grad(bad)(np.ones(2))
        except jvpvjp.TracingError as e:
            print("script.py" in str(e) and "return float(np.sum(x))" in str(e))
    """)
    script = tmp_path / "script.py"
    script.write_text(code)
    env = dict(os.environ, JVPVJP_CACHE_DIR="", JVPVJP_BACKEND="numpy")
    p = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                       timeout=300, cwd=str(tmp_path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["1", "True"]


def test_the_runtime_is_requested_once(monkeypatch):
    """Every interpreted call past `config.runtime_after` asks for the Numba runtime; it is
    submitted to the worker once (it was a job per call until the worker got to the first:
    under a tight loop of quick calls, hundreds of thousands)."""
    from jvpvjp.backend import tiers
    submitted = []
    monkeypatch.setattr(tiers, "_runtime", {"state": "cold", "seconds": None})
    monkeypatch.setattr(tiers._worker, "submit", lambda priority, fn: submitted.append(fn))
    for _ in range(1000):
        tiers._request_runtime()
    assert submitted == [tiers.load_runtime]
    assert tiers._runtime["state"] == "requested"
