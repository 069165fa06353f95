"""Loop nests of generated kernels: the pass plan (fusion of producers, reductions and
their consumers), partial results along the innermost axis, scratch arrays reused across
calls (never aliased by a result, one set per thread)."""
import re
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


def _lane_sum(x, keep):
    """The sum over all but the first ``keep`` axes of x in the kernels' order: partial
    results by position modulo 16 along the last axis, each summed in order (row-major over
    the reduced axes), then combined in order."""
    rows = x.reshape(x.shape[:keep] + (-1, x.shape[-1]))
    partial = np.zeros(rows.shape[:-2] + (16,))
    for r in range(rows.shape[-2]):
        for j in range(rows.shape[-1]):
            partial[..., j % 16] = partial[..., j % 16] + rows[..., r, j]
    total = partial[..., 0]
    for lane in range(1, 16):
        total = total + partial[..., lane]
    return total


@pytest.mark.filterwarnings("error")
def test_partial_results_of_outer_and_whole_reductions_live_in_the_stack_frame(rng):
    """A reduction over the innermost axes (all of them, or those after the rows it keeps)
    keeps its 16 partials in the kernel's stack frame, reset per row; one over other axes
    keeps them in an array. Either way the order of the sums is the documented one."""
    x = rng.normal(size=(6, 5, 77))

    def f(x):
        y = x * 0.25 + 1.0
        return (np.sum(y), np.sum(y, axis=2), np.sum(y, axis=(1, 2)), np.sum(y, axis=(0, 2)),
                np.max(y, axis=2))

    sources, got = _sources(f, x, transform=jvpvjp.jit)
    assert len(re.findall(r"= _local\(16, ", sources[0])) == 4
    assert re.search(r"a\d+ = _full\(\(5, 16\), ", sources[0])      # axes (0, 2)
    y = x * 0.25 + 1.0
    want = (_lane_sum(y, 0), _lane_sum(y, 2), _lane_sum(y, 1))
    for a, b in zip(got, want):
        assert np.asarray(a).tobytes() == np.asarray(b).tobytes()
    np.testing.assert_allclose(got[3], y.sum(axis=(0, 2)), rtol=1e-13)
    np.testing.assert_array_equal(got[4], y.max(axis=2))


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
    g = e / np.sum(e)              # (e is read after g's element: g cannot take its array)
    return g, np.sum(e * g * x)


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
    np.testing.assert_allclose(rb[1], _scratchy(b)[1], rtol=1e-12)


def _recurrence(x, a):
    h = x
    for _ in range(4):
        h = np.tanh(a @ h) + 0.5 * h
    return np.sum(h * h)


def test_dead_scratch_arrays_are_reused(rng):
    """A work array whose value has no reader left holds a later value: the reverse pass
    of a recurrence reuses the forward pass's arrays, and the results stay the
    interpreter's (to rounding), call after call."""
    x, a = rng.normal(size=(96, 96)), rng.normal(size=(96, 96)) / 10
    vg = jvpvjp.value_and_grad(_recurrence, argnums=(0, 1))
    sources, got = _sources(_recurrence, x, a,
                            transform=lambda f: jvpvjp.value_and_grad(f, argnums=(0, 1)))
    src = sources[0]
    assigned = re.findall(r"^    (v\d+) = (w\d+)$", src, re.M)
    arrays = {w for _, w in assigned}
    taken_over = re.findall(r"^    (v\d+) = (v\d+)$", src, re.M)   # an output over a value
    assert len(assigned) + len(taken_over) >= len(arrays) + 4, src   # values share arrays
    for v, w in assigned:           # a value's array is not taken over while it is read
        later = src.split(f"    {v} = {w}\n", 1)[1]
        taken = re.search(rf"^    v\d+ = {w}$", later, re.M)
        if taken:
            assert not re.search(rf"\b{v}\b", later[taken.end():]), (v, w)
    with jvpvjp.testing.use_backend("numba"):
        for args in ((x, a), (x * 0.5, a), (x, a)):
            with jvpvjp.testing.use_backend("numpy"):
                want = vg(*args)
            got = vg(*args)
            assert got[0] == want[0] or np.isclose(got[0], want[0], rtol=1e-13)
            for p, q in zip(got[1], want[1]):
                np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-12)


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


def test_loops_read_through_views_without_building_them(rng):
    """Reshapes, transposes and broadcasts that only loop nests read are read through
    (their operand indexed where the view's element is), never built; the results are
    the interpreter's (to vtanh's and vexp's few ulp)."""
    def f(a, b, v):
        t = np.tanh(a)                                  # (3, 4), in a loop nest
        s = t.T[None] + np.squeeze(np.reshape(b, (3, 1, 4)), 1).T[None]   # axes moved, added
        w = np.reshape(np.exp(v), (1, 12))              # a flat vector as a row
        return np.sum(s * s) + np.sum(np.reshape(w, (3, 4)) * t) + \
            np.sum(np.broadcast_to(v[:4], (3, 4)) * a)

    a, b, v = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=12)
    sources, (val, grads) = _sources(f, a, b, v,
                                     transform=lambda g: jvpvjp.value_and_grad(g, (0, 1, 2)))
    body = sources[0].split("def kernel", 1)[1]
    assert ".reshape(" not in body and ".T" not in body and ".transpose(" not in body \
        and "broadcast_to" not in body, body
    with jvpvjp.testing.use_backend("numpy"):
        want_val, want_grads = jvpvjp.value_and_grad(f, (0, 1, 2))(a, b, v)
    np.testing.assert_allclose(val, want_val, rtol=1e-14)
    for g, w in zip(grads, want_grads):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15)


def test_flat_copies_arrays_that_are_not_c_contiguous():
    from numba import njit
    from jvpvjp.backend.numba_helpers import _flat, _shaped

    @njit
    def flat_then_shape(x):
        return _shaped(_flat(x), (2, 3))

    base = np.arange(24.0).reshape(4, 6)
    for x in (base[::2, ::2].copy(), base[::2, ::2], base[1::2, 1::2], np.asfortranarray(base[:2, :3]),
              base[1:3, 1:4], base[:2, :3].T.copy().T):
        np.testing.assert_array_equal(flat_then_shape(x), np.reshape(x, (2, 3)))
    y = np.arange(6.0)
    view = flat_then_shape(y)
    view[1, 1] = -1.0                   # a C-contiguous operand is viewed, not copied
    assert y[4] == -1.0
    from numba.core.errors import TypingError
    with pytest.raises(TypingError):
        njit(lambda x: _shaped(x, (2, 3)))(base[:2, :3])     # not C-contiguous: refused


def test_views_and_concatenation_helpers_match_numpy():
    """Transposes, broadcasts and concatenations in kernels are our own helpers, not
    Numba's (whose run-time checks compile its string formatting into the kernel): views
    of any layout, and flat placement of each input of a concatenation."""
    from numba import njit
    from jvpvjp.backend.numba_helpers import _broadcast, _flat, _permuted, _place, _shaped

    base = np.arange(120.0).reshape(4, 5, 6)
    permute = njit(lambda x: _permuted(x, "2,0,1"))
    for x in (base, base[:, ::2, 1:]):
        got = permute(x)
        np.testing.assert_array_equal(got, np.transpose(x, (2, 0, 1)))
        got[0, 0, 0] = -1.0                      # a view: writes reach the operand
        assert x[0, 0, 0] == -1.0
        x[0, 0, 0] = 0.0
    broadcast = njit(lambda x: _broadcast(x, (3, 4, 5)))
    for x in (np.arange(5.0), base[0, :, :1][::-1, :].T[:, :4].T):
        got = broadcast(x)
        np.testing.assert_array_equal(got, np.broadcast_to(x, (3, 4, 5)))
        assert not got.flags.writeable

    @njit
    def concat(a, b):
        out = np.empty(2 * 7 * 3)
        return _shaped(_place(_place(out, _flat(a), 2, 21, 0), _flat(b), 2, 21, 12), (2, 7, 3))

    a, b = np.arange(24.0).reshape(2, 4, 3), -np.arange(18.0).reshape(3, 2, 3).transpose(1, 0, 2)
    np.testing.assert_array_equal(concat(a, b), np.concatenate([a, b], axis=1))
    f = jvpvjp.jit(lambda a, b: np.concatenate([np.transpose(a, (1, 2, 0)), b.T], axis=1))
    a, b = np.arange(24.0).reshape(2, 3, 4), np.arange(12.0).reshape(2, 2, 3)
    with jvpvjp.testing.use_backend("numba"):
        np.testing.assert_array_equal(f(a, b), np.concatenate([np.transpose(a, (1, 2, 0)), b.T], 1))

    def g(a, b):
        c = np.concatenate([np.transpose(a, (1, 2, 0)), np.broadcast_to(b[:1], (3, 2, 2))], 1)
        return np.sort(c, axis=0)

    b = b[:, :, :2].copy()
    seen, got = _sources(g, a, b, transform=jvpvjp.jit)
    np.testing.assert_array_equal(got, g(a, b))
    assert "_permuted(" in seen[0] and "_place(" in seen[0] and "_broadcast(" in seen[0]
    assert "np.concatenate" not in seen[0] and ".transpose(" not in seen[0]


def test_concatenations_of_many_inputs_are_statements(rng, monkeypatch):
    """A concatenation of many inputs (an array built from a list of 300 scalars) is
    lowered one statement per input: as one nested expression, Python refused its source
    (at most 200 nested parentheses) and the function stayed on the interpreter. The
    statement form, run with a low threshold so it compiles quickly, gives the bits of
    the nested one, for scalars and array pieces along any axis."""
    import jvpvjp.primitives.shape as shape
    from jvpvjp.simplify import simplify

    n = 300
    x = rng.normal(size=n)
    ol = simplify(jvpvjp.make_oplist(
        lambda x: np.sum(np.array([x[i] * 2.0 for i in range(n)]) ** 2))(x))
    source = numba_backend.generate_source(ol)[0]
    compile(source, "kernel", "exec")          # Python parses it
    assert source.count("_place(") == 0 and "] = _flat(v" in source

    def f(a, b, c):
        rows = np.concatenate([a, b[None] * 2.0, c[:2, 1:]], axis=0)
        cols = np.concatenate([a, c[:2, :3], np.sin(a)], axis=1)
        return np.sum(rows * 3.0) + np.sum(np.cos(cols)) + \
            np.sum(np.array([a[0, 0], b[1] * b[2], c[2, 3]]) ** 2)

    args = rng.normal(size=(2, 3)), rng.normal(size=3), rng.normal(size=(3, 4))
    nested, expected = _sources(f, *args)
    monkeypatch.setattr(shape, "_NESTED_PLACES", 1)
    lines, got = _sources(f, *args)
    statement = re.compile(r"^ +cat\d+ = _empty\(", re.M)
    assert statement.search(lines[0]) and not statement.search(nested[0])
    assert got[0] == expected[0] and np.isclose(got[0], f(*args), rtol=1e-13)
    np.testing.assert_array_equal(got[1], expected[1])


def test_gathers_at_computed_positions_are_read_where_they_are_used(rng):
    """A gather whose positions are computed in the kernel is an element read inside the
    loop nest that uses it (no positions nor gathered values stored), with NumPy's bounds:
    an out-of-range position raises IndexError, for array and scalar gathers alike."""
    def f(x, y):
        i = np.argmax(y, axis=1)
        return np.sum(np.tanh(x[i + 2]) * 2.0) + x[np.argmax(y) % 4 + 3]

    x, y = rng.normal(size=6), np.zeros((40, 5))
    y[:, 1] = 1.0
    y[7, 3] = 2.0
    (source,), value = _sources(f, x, y, transform=jvpvjp.jit)
    body = source.split("def kernel", 1)[1]
    assert "_at(" in body and "_take(" not in body and "'int64'" not in body, body
    assert value == f(x, y)
    g = jvpvjp.jit(f, compile="eager")
    assert g(x, y) == f(x, y)
    y[3, 4] = 9.0                         # position 6 of 6: out of range
    with pytest.raises(IndexError):
        f(x, y)
    with pytest.raises(IndexError):
        g(x, y)


@pytest.mark.filterwarnings("error")
def test_gathers_from_a_0d_value_compile():
    """np.repeat and np.tile of a 0-d array are gathers from a scalar: compiled (no
    fall-back warning), in loop nests and outside them."""
    x = np.asarray(1.5)
    for f, value, slope in ((lambda a: np.sum(np.repeat(a, 3) * np.arange(3.0)), 4.5, 3.0),
                            (lambda a: np.sum(np.tile(a, 4) ** 2), 9.0, 12.0),
                            (lambda a: np.repeat(a, 2)[1] * 3.0, 4.5, 3.0)):
        (source, *_), got = _sources(f, x, transform=jvpvjp.jit)
        assert got == value and "_full((1,), x0)" in source, source
        assert jvpvjp.grad(f, compile="eager")(x) == slope


def test_loops_read_slices_in_place(rng):
    """A gather at constant positions that walk the operand's axes (basic slicing: rows,
    columns, strides, reversals, negative starts) is read in place by loop nests: no
    gather call, no positions passed. Fancy indexing still gathers, element by element
    inside the nest that reads it, without building the gathered array; its constant
    positions are in range, so without a bounds check per element (`_at`)."""
    def sliced(x, v):
        return (np.sum(np.tanh(x[1:, ::-2]) * x[:-1, 1::2]) + np.sum(x[:, 0] * v[::-1][:3])
                + np.sum(np.exp(v[-4:]) * x[2]))

    def fancy(x, v):
        return np.sum(np.tanh(x[np.array([2, 0, 2])]) * v[:4])

    x, v = rng.normal(size=(3, 4)), rng.normal(size=5)
    for f, gathers in ((sliced, False), (fancy, True)):
        (source,), value = _sources(f, x, v, transform=jvpvjp.jit)
        body = source.split("def kernel", 1)[1]
        assert "_at(" not in body and "_take(" not in body, body
        assert ("k0" in body.split(")", 1)[0]) == gathers, body    # positions passed
        np.testing.assert_allclose(value, f(x, v), rtol=1e-14)
        # and the derivatives (whose scatters still build what they read)
        _, (val, grads) = _sources(f, x, v,
                                   transform=lambda g: jvpvjp.value_and_grad(g, (0, 1)))
        with jvpvjp.testing.use_backend("numpy"):
            want_val, want_grads = jvpvjp.value_and_grad(f, (0, 1))(x, v)
        np.testing.assert_allclose(val, want_val, rtol=1e-14)
        for g, w in zip(grads, want_grads):
            np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15)
