"""Item assignment on traced arrays: NumPy's semantics recorded as functional updates, with
derivatives in both modes; views taken before an assignment and used after it, and
assignments NumPy would make visible elsewhere, raise clear errors."""
import numpy as np
import pytest

import jvpvjp
from jvpvjp import grad, jit
from jvpvjp.testing import check_grads, use_backend
from jvpvjp.tracing import TracingError

X = np.array([0.5, -1.2, 2.0, 0.3])


def updates(x):
    y = np.zeros_like(x)
    y[0] = x[1] * 2.0                              # an element
    y[1:3] = np.sin(x[:2])                         # a slice
    y[np.array([3, 3])] = np.stack([x[0], x[2]])   # repeated index: the last write wins
    y[1:-1] += x[2]                                # augmented
    y[y > 0.5] *= 3.0                              # a mask (a guard on its value)
    z = x.copy()
    z[::2] = np.exp(z[1::2])                       # strided, read before written
    return np.sum(y * x) + np.sum(z ** 2)


def updates_2d(m):
    out = np.ones_like(m)
    out[0, :] = m[1, :] * m[0, :]
    out[:, 1] -= np.tanh(m[:, 0])
    out[1] = 7.0                                   # a constant row cuts the derivative
    return np.sum(out * m)


def test_values_equal_numpys():
    assert jit(updates)(X) == pytest.approx(updates(X.copy()), rel=1e-14)
    m = np.arange(6.0).reshape(2, 3) / 5.0
    assert jit(updates_2d)(m) == pytest.approx(updates_2d(m.copy()), rel=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "numba", "vtape"])
def test_derivatives_against_finite_differences(backend):
    order = 2 if backend == "numpy" else 1      # (compiled: fewer programs to compile)
    with use_backend(backend):
        check_grads(updates, (X,), order=order)
        check_grads(updates_2d, (np.arange(6.0).reshape(2, 3) / 5.0,), order=order)


def test_inf_and_signed_zero_are_kept():
    def f(x):
        y = np.full_like(x, np.inf)
        y[0] = x[0]
        return y
    out = jit(f)(np.array([-0.0, 1.0]))
    assert np.signbit(out[0]) and np.isinf(out[1])
    np.testing.assert_array_equal(jvpvjp.jacfwd(f)(np.array([-0.0, 1.0])), [[1, 0], [0, 0]])


def _stale_view(x):
    y = x.copy()
    v = y[1:3]
    y[0] = 5.0
    return np.sum(v)                      # NumPy's v would show y's new values


def _stale_reshape(x):
    y = x.copy()
    v = y.reshape(2, 2)
    y[0] = 5.0
    return v


def _into_argument(x):
    x[0] = 1.0
    return np.sum(x)


def _into_view(x):
    y = x.copy()
    y[1:3][0] = 2.0
    return np.sum(y)


@pytest.mark.parametrize("fn,words", [
    (_stale_view, "is used after the array was assigned to"),
    (_stale_reshape, "is used after the array was assigned to"),
    (_into_argument, "assignment into an argument"),
    (_into_view, "assignment into a view"),
])
def test_what_would_silently_differ_from_numpy_raises(fn, words):
    with pytest.raises(TracingError, match=words) as info:
        grad(lambda x: np.sum(fn(x)))(X)
    assert __file__ in str(info.value)


def test_a_view_taken_after_the_assignment_is_fine():
    def f(x):
        y = x.copy()
        y[0] = 5.0
        v = y[1:3]
        return np.sum(v) + np.sum(y)
    np.testing.assert_allclose(grad(f)(X), [0.0, 2.0, 2.0, 1.0])


def test_differentiated_values_into_integer_arrays_raise():
    def f(x):
        y = np.zeros_like(x, dtype=np.int64)
        y[0] = x[0]
        return np.sum(y * x)
    with pytest.raises(TracingError, match="drop its derivative"):
        grad(f)(X)


def _recurrence(x):
    y = np.zeros_like(x)
    y[0] = x[0]
    for i in range(1, x.size):
        y[i] = y[i - 1] * 0.5 + x[i]
    return np.sum(y ** 2)


def test_assignments_in_a_loop_are_one_update():
    """n assignments into one array are one update of it, not n whole-array updates
    (O(n^2) work, and as much again in reverse mode); a read of an element just written
    is the value written. The op list's length grows linearly with n."""
    counts = {}
    for n in (50, 200):
        x = np.linspace(-1.0, 1.0, n)
        ol = jvpvjp.make_oplist(jvpvjp.value_and_grad(_recurrence))(x)
        names = [op.prim.name for op in ol.ops]
        assert names.count("where") <= 2, names.count("where")
        counts[n] = len(names)
        value, g = jvpvjp.value_and_grad(_recurrence)(x)
        assert value == pytest.approx(_recurrence(x.copy()), rel=1e-13)
    assert counts[200] < 4.5 * counts[50], counts
    check_grads(_recurrence, (np.linspace(-1.0, 1.0, 12),), order=2)

    def rows(x):                # rows of 100 elements, each computed from the last
        a = np.zeros_like(np.outer(np.ones(30), x))
        a[0] = x
        for i in range(1, 30):
            a[i] = np.tanh(a[i - 1]) * 0.9 + x
        return np.sum(a ** 2)

    x = np.linspace(-1.0, 1.0, 100)
    ol = jvpvjp.make_oplist(jvpvjp.value_and_grad(rows))(x)
    assert [op.prim.name for op in ol.ops].count("where") <= 2
    assert jit(rows)(x) == pytest.approx(rows(x.copy()), rel=1e-13)


def pending(x):
    y = np.ones_like(x)
    for i in range(4):
        y[i] = x[i] * (i + 1.0)
    y[1] = y[1] * y[0]                 # read then overwrite the same element
    a = y[2:5] * x[:3]                 # positions 2, 3 written, 4 not: the update
    b = y[6] + y[5]                    # written by none: the array before the writes
    y[np.array([5, 5, 6])] = x[:3]     # repeated position: the last write wins
    c = y[5] * y[6]
    z = y * 2.0                        # the whole array: all writes so far
    y[0] = -0.0 * x[0]
    y.flat[7] = z[1] + y[0]
    return np.sum(a) + b * c + np.sum(z * x) + np.sum(y ** 3)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_pending_assignments_read_as_numpy_does(backend):
    """Reads of elements while assignments are pending: one write's values, the array as
    it was, or (positions some writes cover and some not) the update; repeated positions,
    signed zeros and flat assignment; values as NumPy's, derivatives against finite
    differences, in both modes and under vmap."""
    x = np.array([0.7, -1.1, 0.4, 1.3, -0.2, 0.9, 0.5, -0.6])
    with use_backend(backend):
        assert jit(pending)(x) == pytest.approx(pending(x.copy()), rel=1e-14)
        check_grads(pending, (x,), order=1)
        xs = np.stack([x, x[::-1]])
        np.testing.assert_allclose(jvpvjp.vmap(pending)(xs),
                                   [pending(xs[0].copy()), pending(xs[1].copy())], rtol=1e-14)


def test_views_of_pending_assignments_still_raise():
    """A view taken while assignments are pending and used after another assignment
    still raises, as it would show the new values in NumPy."""
    def f(x):
        y = np.zeros_like(x)
        y[0] = x[0]
        v = y[0:2]
        y[1] = x[1]
        return np.sum(v)

    with pytest.raises(TracingError, match="view"):
        grad(f)(X)


def _aliased_value(x):
    z = x * 1.0
    y = np.zeros_like(np.concatenate([x, x[:2]]))
    y[0:4] = z                  # NumPy copies z's values now
    z[0] = 100.0                # so this does not reach y
    return y * 2.0 + y[0]


def _shift(x):
    y = x * 1.0
    y[1:] = y[:-1]              # the value is a view of y itself
    y[0] = y[3]
    return y


def _swap(x):
    w = x.copy()
    y = np.zeros_like(x)
    for i in range(x.size):
        y[i] = w[i]             # an element: a copy in NumPy, not a view
        w[i] = 0.0
    a = w[0]
    w[0] = 5.0
    return y * a + w


def _constants(x):
    y = x.copy()
    y[0:2] = 1.0
    y[0:2] += x[2:4]            # a read of constants written: an array that adds
    y[2:2] = x[:0]              # nothing written
    return y


@pytest.mark.parametrize("f", [_aliased_value, _shift, _swap, _constants])
def test_written_values_are_taken_when_written(f):
    """A write takes the value's elements when it is made, as NumPy copies them: the
    value's array may be assigned to afterwards, or be a view of the array written
    (whose assignment makes that view stale only after the write). Reads of written
    constants are traced arrays; an empty write writes nothing."""
    x = np.array([0.5, -1.2, 2.0, 0.3])
    np.testing.assert_array_equal(jit(f)(x), f(x.copy()))
    np.testing.assert_array_equal(jvpvjp.jacfwd(f)(x), jvpvjp.jacrev(f)(x))
    check_grads(lambda x: np.sum(np.sin(f(x))), (x,), order=1)


def test_views_of_written_constants_still_raise():
    def stale(x):
        y = x.copy()
        y[0:2] = 7.0
        v = y[0:2]
        y[0] = x[3]
        return v * 1.0

    def through(x):
        y = x.copy()
        y[0:2] = 7.0
        v = y[0:2]
        v[0] = 1.0              # NumPy writes through to y
        return y

    for f in (stale, through):
        with pytest.raises(TracingError, match="view"):
            jit(f)(X)


def test_values_of_an_enclosing_trace_written_in_an_inner_one():
    """An inner function (vmap, grad) writing a value of the enclosing trace into its own
    array: the write captures it like any other read of it."""
    rows = np.random.default_rng(3).standard_normal((4, 3))

    def loss(w):
        def per(r):
            h = np.zeros_like(r)
            h[0] = w[0]
            h[1:] = r[1:] * w[1:]
            return np.sum(h ** 2)
        return np.sum(jvpvjp.vmap(per)(rows)) + jvpvjp.grad(per)(rows[0])[1] * w[2]

    check_grads(loss, (np.array([0.5, -1.0, 2.0]),), order=1)


def test_concrete_values_after_writes_into_fortran_ordered_values():
    """The value a trace sees after a write (what float() and guards read) is NumPy's,
    whatever the memory order of the array's value."""
    def f(x):
        y = x.T.copy()
        y[0, 1] = 100.0
        return float(jvpvjp.stop_gradient(y).sum()) * np.sum(y)

    x = np.arange(6.0).reshape(2, 3)
    assert jit(f)(x) == f(x.copy())


@pytest.mark.parametrize("copy", [lambda y: y.astype(np.float64), lambda y: y.flatten(),
                                  lambda y: np.concatenate([y]), lambda y: +y,
                                  lambda y: y[np.array([0, 1, 2])]])
def test_what_numpy_copies_is_a_copy(copy):
    """Writing into what NumPy returns as a copy leaves the original alone."""
    def f(x):
        y = x * 1.0
        z = copy(y)
        z[0] = 100.0
        return np.sum(y) + np.sum(z)

    x = np.array([0.3, -0.7, 1.1])
    assert jit(f)(x) == pytest.approx(f(x.copy()), rel=1e-15)


def test_integer_keys_give_the_positions_numpy_does():
    from jvpvjp.primitives.shape import index_positions
    for shape in [(5,), (3, 4), (2, 3, 4), (3, 0)]:
        table = np.arange(int(np.prod(shape))).reshape(shape)
        for key in [0, -1, 2, (1, -1), (-2, 3), (1, 2, -1), np.int64(1), (np.int32(-1),)]:
            try:
                expected = np.asarray(table[key])
            except IndexError as e:
                with pytest.raises(IndexError, match=str(e).split(" with")[0]):
                    index_positions(shape, key)
                continue
            got = index_positions(shape, key)
            assert got.dtype == np.int64 and got.shape == expected.shape
            np.testing.assert_array_equal(got, expected)
