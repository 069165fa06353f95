"""Loop nests of generated kernels: the pass plan (fusion of producers, reductions and
their consumers), partial results along the innermost axis, scratch arrays reused across
calls (never aliased by a result, one set per thread)."""
import threading

import numpy as np
import pytest

import jvpvjp
import jvpvjp.testing
from jvpvjp.backend import numba_backend


def _sources(fun, *args, transform=jvpvjp.value_and_grad):
    """The kernel sources transform(fun) compiles on the Numba backend, and its value."""
    seen = []
    original = numba_backend.generate_source

    def spy(ol, *a, **k):
        src, consts = original(ol, *a, **k)
        seen.append(src)
        return src, consts
    numba_backend.generate_source = spy
    try:
        with jvpvjp.testing.use_backend("numba"):
            jvpvjp.clear_caches()
            result = transform(fun)(*args)
    finally:
        numba_backend.generate_source = original
    return seen, result


def _user_logsumexp(x):
    m = np.max(x)
    return m + np.log(np.sum(np.exp(x - m)))


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("n", [10, 5000])
def test_user_written_logsumexp_gradient_in_three_passes(n):
    x = np.random.default_rng(2).normal(size=n) * 3
    x[n // 2] = x.max()           # a tie in the maximum: the derivative is shared
    sources, (v, g) = _sources(_user_logsumexp, x)
    passes = [numba_backend.passes_of(s) for s in sources]
    assert passes[0] == 3 and all(p <= 3 for p in passes)    # (a primal may compile too)
    assert "vexp(" in sources[0] and "with objmode" not in sources[0]
    e = np.exp(x - x.max())
    np.testing.assert_allclose(v, np.log(e.sum()) + x.max(), rtol=1e-14)
    np.testing.assert_allclose(g, e / e.sum(), rtol=1e-12, atol=1e-16)


@pytest.mark.filterwarnings("error")
def test_reductions_in_loops_match_numpy_with_nans_and_partial_axes(rng):
    """Sums, products, maxima and minima accumulated in loop nests (with partial results
    along the innermost axis) against NumPy: axes, keepdims shapes, NaN propagation."""
    x = rng.normal(size=(3, 70))
    x[1, 40] = np.nan

    def f(x):
        y = np.exp(x * 0.5)
        return (np.sum(y, axis=1), np.max(y, axis=1), np.min(y * 2.0, axis=0),
                np.prod(y[:, :20] * 0.9, axis=1), np.max(y), np.sum(y * y))

    with jvpvjp.testing.use_backend("numba"):
        got = jvpvjp.jit(f)(x)
    with np.errstate(invalid="ignore"):
        want = f(x)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-13)


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("fun, passes", [
    (lambda x: np.sum(x * 2.0 / np.sum(x * 2.0)), 2),   # a cheap value recomputed
    (lambda x: np.sum(np.sin(np.exp(x) / np.sum(np.exp(x)))), 2),  # an expensive one stored
    (lambda x: np.sum(np.tanh(x) ** 2) + np.max(x) * np.sum(x), 1),  # siblings: one pass
])
def test_pass_plan(fun, passes):
    x = np.random.default_rng(3).normal(size=300)
    sources, got = _sources(fun, x, transform=jvpvjp.jit)
    assert [numba_backend.passes_of(s) for s in sources] == [passes]
    np.testing.assert_allclose(got, fun(x), rtol=1e-13)


def _scratchy(x):
    e = np.exp(x)                  # read by two passes, only by loops: a scratch array
    return e / np.sum(e), np.sum(e * x)


def test_results_never_alias_scratch(rng):
    sources, _ = _sources(_scratchy, rng.normal(size=5000), transform=jvpvjp.jit)
    assert " = w0" in sources[0]          # e (40 KB) lives in a scratch array
    with jvpvjp.testing.use_backend("numba"):
        f = jvpvjp.jit(_scratchy)
        a, b = rng.normal(size=5000), rng.normal(size=5000)
        ra = f(a)
        keep = [np.copy(r) for r in ra]
        rb = f(b)
        for r, k in zip(ra, keep):      # the second call left the first results alone
            np.testing.assert_array_equal(r, k)
        assert not np.shares_memory(ra[0], rb[0])
    np.testing.assert_allclose(rb[0], np.exp(b) / np.sum(np.exp(b)), rtol=1e-13)


def test_scratch_is_per_thread(rng):
    """Threads calling one kernel at once each get their own work arrays."""
    with jvpvjp.testing.use_backend("numba"):
        f = jvpvjp.value_and_grad(lambda x: np.sum(_scratchy(x)[0] * x))
        xs = [rng.normal(size=5000) for _ in range(4)]
        want = [f(x) for x in xs]
        errors = []

        def work(k):
            for _ in range(40):
                v, g = f(xs[k])
                if v != want[k][0] or not np.array_equal(g, want[k][1]):
                    errors.append(k)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
