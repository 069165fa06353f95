"""The vector tape (`backend/vector_tape.py`) against the NumPy interpreter.

Every registry case runs as traced, as its JVP and VJP programs, and simplified, on fixed
shapes with broadcasting; elementwise arithmetic must agree bit for bit, transcendental
functions within a few ulps (the C library inside Numba, NumPy's SIMD loops outside),
reductions and products within 1e-13. Then views, reductions, products and indexing on
shapes the registry does not draw, NaN / signed-zero semantics, a long unrolled program,
what supports() refuses, and that results are never views of the tape's buffer.
"""
import subprocess
import sys
import threading
import types

import numpy as np
import pytest

import jvpvjp
from jvpvjp import make_oplist
from jvpvjp.backend import InterpreterKernel
from jvpvjp.backend import vector_tape as vt
from jvpvjp.oplist import Op, OpList, Var
from jvpvjp.primitives import REGISTRY, load_all
from jvpvjp.simplify import simplify
from jvpvjp.testing import fixed_case_arguments
from jvpvjp.transforms import jvp_oplist, vjp_oplist

load_all()
CASES = [(prim, case) for prim in REGISTRY.values() for case in prim.tests]
IDS = [f"{p.name}-{c.name or i}" for i, (p, c) in enumerate(CASES)]

# prims whose Numba (libm) results may differ from NumPy's in the last bits
TRANSCENDENTAL = {p.name for p in REGISTRY.values() if p.numpy_faster}
ROUNDING = {"reduce_sum", "reduce_prod", "matmul"}     # summation order may differ
# more broadcasting patterns per arity (operand strides 1, 0 and a strided copy)
MORE = {1: [((),), ((3, 1, 2),)],
        2: [((2, 1), (1, 3)), ((), (2, 3)), ((3, 1, 2), (4, 1)), ((2, 2), (1,)),
            ((1, 3), (2, 3))],
        3: [((), (2, 3), (1, 3)), ((2, 3), (), ()), ((3, 1), (1, 1, 2), (2,))]}


@pytest.fixture(scope="module", autouse=True)
def _loop():
    vt.warm_up()         # the one-time compile (or the disk cache), outside any timing


_args = fixed_case_arguments


def _inputs(ol, rng, primals=()):
    """Values for the inputs of a derivative program: ``primals`` first, then seeds
    (normal; primals too when not given: near 1)."""
    out = list(primals)
    for v in ol.invars[len(out):]:
        if v.dtype == np.bool_:
            x = rng.uniform(size=v.shape) > 0.5
        else:
            x = rng.standard_normal(v.shape) if primals else rng.uniform(0.6, 1.4, v.shape)
        out.append(x if v.shape != () else x[()])
    return out


def _bits_equal(a, b, what=""):
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (what, a.shape, b.shape, a.dtype, b.dtype)
    if a.dtype.kind == "f":
        nan = np.isnan(b)
        assert np.array_equal(np.isnan(a), nan), what
        assert np.array_equal(a[~nan].view(np.int64), b[~nan].view(np.int64)), (what, a, b)
    else:
        assert np.array_equal(a, b), (what, a, b)


def _check_types(got, ol):
    results = list(ol.outvars) + [g.var for g in ol.guards]
    assert len(got) == len(results)
    for x, v in zip(got, results):
        if v.shape == ():
            assert type(x) is v.dtype.type, (type(x), v)
        else:
            assert type(x) is np.ndarray and x.shape == v.shape and x.dtype == v.dtype


def _compare(ol, args, mode="auto"):
    """Run ``ol`` on the tape and the interpreter; mode "auto" picks the tolerance from
    the prims the op list uses."""
    assert vt.supports(ol), ol
    got = vt.VectorTapeKernel(ol)(*args)
    want = InterpreterKernel(ol)(*args)
    _check_types(got, ol)
    names = {op.prim.name for op in ol.ops}
    if mode == "auto":
        mode = "close" if names & ROUNDING else ("ulp" if names & TRANSCENDENTAL else "exact")
    for k, (x, y) in enumerate(zip(got, want)):
        if mode == "exact" or np.asarray(y).dtype == np.bool_:
            _bits_equal(x, y, f"result {k}")
        elif mode == "ulp":
            assert np.shape(x) == np.shape(y)
            np.testing.assert_array_max_ulp(np.asarray(x), np.asarray(y), maxulp=4)
        else:
            assert np.shape(x) == np.shape(y) and np.asarray(x).dtype == np.asarray(y).dtype
            np.testing.assert_allclose(x, y, rtol=mode if isinstance(mode, float) else 1e-13,
                                       atol=1e-13, err_msg=f"result {k}")
    return got


def _derivatives(ol):
    floats = [v.dtype == np.float64 for v in ol.invars]
    yield jvp_oplist(ol, floats)
    yield vjp_oplist(ol, floats, n_seeded=len(ol.outvars)).oplist


# -- the registry ----------------------------------------------------------------------------
def _supported_case(ol):
    return all(v.dtype in (np.float64, np.bool_) for op in ol.ops for v in (op.outvar,))


@pytest.mark.parametrize("prim,case", CASES, ids=IDS)
def test_registry_case(prim, case, rng):
    ol = make_oplist(case.fn)(*_args(case, rng))
    if not _supported_case(ol) or any(not op.prim.tapes for op in ol.ops):
        assert not vt.supports(ol)        # float32 (the convert case), or a declined op
        return
    programs = [ol, simplify(ol)]
    if prim.differentiable:
        for d in _derivatives(ol):
            programs += [d, simplify(d)]
    for k, p in enumerate(programs):
        args = _args(case, np.random.default_rng(k))
        if k >= 2:
            args = _inputs(p, np.random.default_rng(k), args)
        got = _compare(p, args, "auto" if k < 2 else 1e-12)
        assert not any(np.isnan(x).any() for x in got if np.asarray(x).dtype.kind == "f")


BROADCAST = [(p, c, s) for p, c in CASES if c.shapes == "broadcast"
             for s in MORE[len(c.domain)]]


@pytest.mark.parametrize("prim,case,shapes", BROADCAST,
                         ids=[f"{p.name}-{s}" for p, c, s in BROADCAST])
def test_elementwise_broadcasting(prim, case, shapes, rng):
    ol = make_oplist(case.fn)(*_args(case, rng, shapes))
    args = _args(case, np.random.default_rng(3), shapes)
    _compare(ol, args)
    if prim.differentiable:
        for d in _derivatives(ol):
            _compare(simplify(d), _inputs(d, rng, args), 1e-12)


def test_every_registry_primitive_is_covered():
    missing = set(REGISTRY) - vt.supported() - vt.declined()
    assert not missing, missing
    assert not vt.supported() & vt.declined()


# -- elementwise semantics -------------------------------------------------------------------
SPECIAL = np.array([0.0, -0.0, 1.0, -1.5, np.nan, np.inf, -np.inf, 2.0, -0.0, 0.0, np.nan, 3.0])


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "maximum", "minimum", "lt",
                                  "le", "gt", "ge", "eq", "ne", "logical_and", "logical_or",
                                  "logical_xor", "pow", "arctan2"])
def test_binary_special_values(name):
    a = SPECIAL
    b = np.roll(SPECIAL, 5)
    x = np.add.outer(a, np.zeros(3)).T.copy()          # (3, 12) against (12,) and (3, 12)
    p = REGISTRY[name]
    for u, v in [(a, b), (b, a), (x, np.tile(b, (3, 1))), (x, b), (b[None, :3], x[:, :1])]:
        ol = make_oplist(lambda u, v: p(u, v))(u, v)
        _compare(ol, (u, v), "ulp" if name in TRANSCENDENTAL else "exact")
    ol = make_oplist(lambda u, s: p(u, s))(a, np.float64(-0.0))
    for s in (-0.0, 0.0, np.nan, 1.0):
        _compare(ol, (a, np.float64(s)), "ulp" if name in TRANSCENDENTAL else "exact")


@pytest.mark.parametrize("name", ["neg", "abs", "sign", "square", "sqrt", "logical_not",
                                  "exp", "sin", "tanh", "log"])
def test_unary_special_values(name):
    p = REGISTRY[name]
    ol = make_oplist(lambda u: p(u))(SPECIAL)
    _compare(ol, (SPECIAL,), "ulp" if name in TRANSCENDENTAL else "exact")


def test_where_convert_and_bools():
    def f(m, x, y):
        c = m & (x > 0.5)
        z = np.where(c, x, y[None, :])
        return z, c, np.logical_not(m)[0], (x > y).astype(np.float64), x.astype(bool)
    m = np.array([[True, False, True], [False, True, True]])
    x = np.array([[0.0, 1.0, np.nan], [-0.0, 2.0, 0.7]])
    y = np.array([3.0, -0.0, 0.25])
    ol = make_oplist(f)(m, x, y)
    got = _compare(ol, (m, x, y), "exact")
    assert got[1].dtype == np.bool_ and got[2].dtype == np.bool_
    _compare(ol, (~m, y[::-1] + x, y), "exact")


def test_sums_agree_bit_for_bit_over_trailing_axes(rng):
    """Sums over trailing axes use NumPy's pairwise order: equal bits, not just close."""
    for shape, axes in [((1000,), (0,)), ((3, 257), (1,)), ((2, 3, 140), (1, 2)),
                        ((7,), (0,)), ((4, 9), (0, 1)), ((5, 1, 130), (2,))]:
        x = rng.standard_normal(shape) * 10.0 ** rng.uniform(-3, 3, shape)
        ol = make_oplist(lambda x: np.sum(x, axis=axes))(x)
        _compare(ol, (x,), "exact")


# -- shapes the registry does not draw -----------------------------------------------------
def _program_cases():
    r = np.random.default_rng(5)
    A = r.standard_normal((2, 3, 4))
    B = r.standard_normal((4, 3))
    C = r.standard_normal((3, 1, 4))
    D = r.standard_normal((2, 1, 1, 3, 1, 2))

    def views(a, c):
        t = np.transpose(a, (2, 0, 1))                       # (4, 2, 3)
        u = np.broadcast_to(c, (3, 2, 4)).transpose(2, 1, 0) * t[:, :, ::-1]
        s = np.sum(t, axis=1).reshape(4, 1, 3)[:, 0, :]
        return u.reshape(8, 3) + np.concatenate([s, s[::-1]], axis=0), u.T + 1.0

    def reductions(a):
        out = []
        for ax in [0, 1, 2, (0, 1), (0, 2), (1, 2), (0, 1, 2), (2, 0)]:
            for red in (np.sum, np.max, np.min, np.prod):
                out.append(red(a, axis=ax))
                out.append(red(np.transpose(a, (1, 2, 0)), axis=ax))
                out.append(red(np.broadcast_to(a[:, :1, :], a.shape), axis=ax))
        return out

    def matmuls(a, b):
        out = [a @ b, np.swapaxes(a, 1, 2) @ a, a[0] @ b, b @ a[1], a[0].T @ b.T,
               a @ a[1].T, b.T @ np.swapaxes(a, 1, 2) @ b.T]
        return [np.sum(o * o) for o in out] + out

    def concat(a, c):
        t = np.transpose(a, (1, 0, 2))                                 # (3, 2, 4)
        return [np.concatenate([t, np.broadcast_to(c, (3, 2, 4)), t * 2], axis=k)
                for k in range(3)] + [np.concatenate([a[0], a[1].T.reshape(3, 4)], axis=0)]

    def indexing(a, d):
        return [a[1, ::-1, [0, 2, 2]], a[..., 1:3] * a[:, None, 0, :2], a[a > 0.1],
                d[0, :, 0, ::-1, 0, 1], d.reshape(12)[np.array([5, 0, 11])]]

    def rank6(d):
        e = np.transpose(d, (5, 4, 3, 2, 1, 0)) * np.ones((2, 1, 3, 1, 1, 2))
        return np.sum(e, axis=(0, 2, 4)), np.max(e, axis=(1, 3, 5)), e + e

    def chain(a, b):
        h = a[0]
        for _ in range(6):
            h = np.tanh(h @ b) @ b.T + np.where(h > 0, h, 0.1 * h)
        return np.sum(h ** 2)

    return {"views": (views, (A, C)), "reductions": (reductions, (A,)),
            "matmuls": (matmuls, (A, B)), "concat": (concat, (A, C)),
            "indexing": (indexing, (A, D)), "rank6": (rank6, (D,)),
            "chain": (chain, (A, B))}


PROGRAMS = _program_cases()


@pytest.mark.parametrize("name", list(PROGRAMS))
def test_programs_and_derivatives(name, rng):
    fn, args = PROGRAMS[name]
    ol = make_oplist(fn)(*args)
    _compare(ol, args)
    _compare(simplify(ol), args)

    def scalar(*a):
        return sum(np.sum(o * 1.0) for o in jvpvjp.tree_flatten(fn(*a))[0])
    s = make_oplist(scalar)(*args)
    for d in _derivatives(s):
        _compare(d, _inputs(d, rng, args), 1e-12)
        _compare(simplify(d), _inputs(d, rng, args), 1e-12)


def _op(name, ins, out_shape, dtype=np.float64, **params):
    return Op(REGISTRY[name], tuple(ins), Var(out_shape, dtype), params)


def test_gather_scatter_tables_and_negative_positions():
    x = Var((2, 3), np.float64)
    idx = Var((4,), np.int64)
    idx2 = Var((2, 2), np.int64)
    g = _op("gather", (x, idx), (4,))
    s = _op("scatter_add", (g.outvar, idx), (3, 2), shape=(3, 2))
    g2 = _op("gather", (s.outvar, idx2), (2, 2))
    consts = {idx: np.array([-1, 0, 5, -6]), idx2: np.array([[5, 5], [0, 1]])}
    bad = OpList([x], [s.outvar], [g, s], consts)       # scatter to -1: NumPy refuses
    assert not vt.supports(bad)
    consts[idx] = np.array([5, 0, 5, 3])
    ol = OpList([x], [g.outvar, s.outvar, g2.outvar], [g, s, g2], consts)
    xv = np.arange(6.0).reshape(2, 3) - 2.5
    _compare(ol, (xv,), "exact")
    consts[idx] = np.array([-1, 0, 5, -6])
    ol = OpList([x], [g.outvar], [g], consts)
    _compare(ol, (xv,), "exact")
    consts[idx] = np.array([1, 0, 6, 0])                  # out of bounds
    assert not vt.supports(OpList([x], [g.outvar], [g], consts))


def test_outputs_that_are_inputs_constants_and_views():
    def f(x, s):
        return x, np.reshape(x, (3, 2)), np.array([1.0, 2.0]), np.broadcast_to(s, (2, 2)), \
            x.T, s, np.float64(4.0) * 1.0
    x = np.arange(6.0).reshape(2, 3)
    ol = make_oplist(f)(x, np.float64(2.5))
    _compare(ol, (x, np.float64(2.5)), "exact")
    _compare(ol, (x + 1, 7.0), "exact")                 # a Python float for a () input


# -- a long unrolled program -----------------------------------------------------------------
def test_long_unrolled_value_and_grad():
    def f(x, w):
        for i in range(500):
            x = x * 1.0001 + np.sin(x) * w * 1e-3
        return np.sum(x * x)
    x = np.array([0.3, -1.2, 0.5])
    w = np.float64(0.7)
    ol = make_oplist(f)(x, w)
    vg = simplify(vjp_oplist(ol, [True, True], n_seeded=1).oplist)
    assert len(vg.ops) >= 2000
    k = vt.VectorTapeKernel(vg)
    total = sum(op.outvar.size for op in vg.ops)
    assert k.n_slots < total / 2        # regions reused as values die
    for args in [(x, w, np.float64(1.0)), (x[::-1] * 2, np.float64(-0.2), np.float64(3.0))]:
        got = k(*args)
        want = InterpreterKernel(vg)(*args)
        _check_types(got, vg)
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, rtol=1e-12)


# -- what the tape refuses -------------------------------------------------------------------
def test_supports_refuses():
    ol32 = make_oplist(lambda x: x * 2.0)(np.ones(3, np.float32))
    assert not vt.supports(ol32)
    x = Var((3,), np.float64)
    fake = types.SimpleNamespace(name="sort", kind="other")
    unknown = OpList([x], [Var((3,), np.float64)], [])
    unknown.ops.append(Op(fake, (x,), unknown.outvars[0], {}))
    assert not vt.supports(unknown)
    with pytest.raises(ValueError):
        vt._compile(unknown)
    ints = make_oplist(lambda b: np.sum(b))(np.array([True, False]))     # int64 result
    assert not vt.supports(ints)
    y = Var((1,) * 7, np.float64)
    rank7 = OpList([y], [], [])
    o = _op("neg", (y,), (1,) * 7)
    rank7.ops.append(o)
    rank7.outvars.append(o.outvar)
    assert not vt.supports(rank7)
    z = Var((2,), np.complex128)
    cplx = OpList([z], [], [])
    o = _op("neg", (z,), (2,), np.complex128)
    cplx.ops.append(o)
    cplx.outvars.append(o.outvar)
    assert not vt.supports(cplx)
    e = Var((0, 2), np.float64)
    o = _op("reduce_max", (e,), (2,), axes=(0,))
    assert not vt.supports(OpList([e], [o.outvar], [o]))
    assert vt.supports(make_oplist(lambda x: np.sum(x, axis=0))(np.ones((0, 2))))


def test_registered_backend():
    from jvpvjp.backend import _BACKENDS
    assert _BACKENDS["vtape"] is vt._compile
    ol = make_oplist(lambda x: np.sum(np.exp(x)))(np.ones(3))
    assert isinstance(vt._compile(ol), vt.VectorTapeKernel)


# -- results are fresh -----------------------------------------------------------------------
def test_outputs_are_not_views_of_the_buffer():
    def f(x):
        y = np.tanh(x) * 2.0
        return y, y > 0.0, np.sum(y), x, y.T, y[0, 1] > 0
    ol = make_oplist(f)(np.ones((2, 3)))
    k = vt.VectorTapeKernel(ol)
    x1 = np.linspace(-1, 1, 6).reshape(2, 3)
    first = k(x1)
    saved = [np.array(r, copy=True) for r in first]
    second = k(-3.0 * x1)
    for a, b, c in zip(first, saved, second):
        _bits_equal(a, b)
        if isinstance(a, np.ndarray):
            assert not np.shares_memory(a, k._buf) and not np.shares_memory(a, c)
    assert not np.shares_memory(first[3], x1)
    _compare(ol, (-3.0 * x1,), "ulp")


def test_a_busy_buffer_gets_a_fresh_one():
    ol = make_oplist(lambda x: np.sin(x) + 1.0)(np.ones(4))
    k = vt.VectorTapeKernel(ol)
    x = np.arange(4.0)
    want = k(x)
    with k._lock:            # as if another thread were running it
        got = k(x + 1.0)
    _bits_equal(k(x)[0], want[0])
    _bits_equal(got[0], vt.VectorTapeKernel(ol)(x + 1.0)[0])
    results = []
    threads = [threading.Thread(target=lambda i=i: results.append((i, k(x * i)[0])))
               for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, r in results:
        _bits_equal(r, k(x * i)[0])


def test_import_compiles_nothing():
    code = ("import sys; import jvpvjp.backend.vector_tape as vt; "
            "assert 'numba' not in sys.modules, 'numba imported'; "
            "from jvpvjp import make_oplist; import numpy as np; "
            "vt.VectorTapeKernel(make_oplist(lambda x: x * 2.0)(np.ones(2))); "
            "assert 'numba' not in sys.modules, 'numba imported by encoding'")
    subprocess.run([sys.executable, "-c", code], check=True)
