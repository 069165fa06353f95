"""The rolled tape: periodic stretches of the scalar tape run as compiled loops, to the
bit what the tape computes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jvpvjp
from jvpvjp import explain_cache, value_and_grad
from jvpvjp.backend import compile_oplist, rolled, tape
from jvpvjp.testing import use_backend

H = 0.01


def chain(steps):
    def f(x, y):
        for _ in range(steps):
            x = x + H * y
            y = y - H * np.sin(x)
        return 0.5 * y * y - np.cos(x)
    return f


def _table(k):
    return np.stack([k.code.astype(np.int64), k.a, k.b, k.c, k.out], axis=1)


def _programs(fn, *args):
    """The op lists of fn's primal, value_and_grad and jvp, as the tiers get them."""
    seen = []
    real = tape.TapeKernel.__init__

    def keep(self, ol):
        seen.append(ol)
        real(self, ol)
    tape.TapeKernel.__init__ = keep
    try:
        with use_backend("tape"):
            jvpvjp.jit(fn)(*args)
            value_and_grad(fn, argnums=tuple(range(len(args))))(*args)
            jvpvjp.jvp(fn, args, tuple(np.float64(1.0) for _ in args))
    finally:
        tape.TapeKernel.__init__ = real
    return seen


def _both(ol, *values):
    """Tape and rolled results of ``ol`` at ``values`` (then 1.0, -0.5, ... for the rest of
    its inputs: tangents)."""
    extra = [1.0, -0.5, 0.25, 2.0]
    args = (list(values) + extra)[:len(ol.invars)]
    return rolled.RolledKernel(ol)(*args), tape.TapeKernel(ol)(*args)


def _same(a, b):
    assert len(a) == len(b)
    for p, q in zip(a, b):
        assert type(p) is type(q)
        np.testing.assert_array_equal(p, q)       # bits (nan where nan)


def test_an_unrolled_loop_is_rolled_and_gives_the_tapes_bits():
    f = chain(300)
    for ol in _programs(f, 0.3, 0.5):
        t, r = tape.TapeKernel(ol), rolled.RolledKernel(ol)
        assert r.rolled_ops >= 0.95 * len(t.code)     # all but the ends
        for x, y in ((0.3, 0.5), (-2.0, 1.5)):
            _same(*_both(ol, x, y))


@pytest.fixture
def short_loops(monkeypatch):
    """Roll stretches from 48 instructions (the default leaves shorter ones to the tape's
    loop, where a call costs more than rolling saves)."""
    monkeypatch.setattr(rolled, "MIN_OPS", 48)


def test_forward_and_reverse_sweeps_are_separate_loops():
    (_, vg, _) = _programs(chain(200), 0.3, 0.5)
    segs = rolled.segments(_table(tape.TapeKernel(vg)))
    assert [p for _, p, _ in segs] == [3, 4]       # x += h y; sin; y -= h sin | adjoint
    assert all(hi - lo >= 195 * p for lo, p, hi in segs)


def test_branches_give_several_loops_and_constants_per_step(short_loops):
    coeffs = np.linspace(0.5, 1.5, 240)

    def f(x, y):
        for i, c in enumerate(coeffs):                # a constant of its own each step
            if i < 120:
                x = np.tanh(x * c + y)
            else:                                     # another body: another loop
                x = x * y - np.exp(-x * x) * c
        return x + y
    for ol in _programs(f, 0.2, 0.7):
        t, r = tape.TapeKernel(ol), rolled.RolledKernel(ol)
        assert r.rolled_ops >= 0.8 * len(t.code)
        assert sum(fn is not tape.run_loop() for fn, _ in r.steps) >= 2
        _same(*_both(ol, 0.2, 0.7))


def test_short_and_aperiodic_programs_stay_on_the_tape_loop():
    def f(x, y):
        return np.sin(x) * y + np.exp(y - x) / (1.0 + x * x)
    for ol in _programs(f, 0.2, 0.7):
        r = rolled.RolledKernel(ol)
        assert r.rolled_ops == 0 and len(r.steps) <= 1
        _same(*_both(ol, 0.2, 0.7))


def test_every_opcode_in_a_loop_body():
    """One body holding every opcode the tape runs (one compile), against the tape's loop
    on the same instructions, operands in and out of every primitive's domain."""
    table = tape.opcodes()
    names = list(table)
    k = len(names)
    reps = 8
    inputs = np.array([0.5, -0.3, 0.9, 2.5, -0.0, np.inf, np.nan, 1e-310, 0.0])
    n_in = len(inputs)
    rng = np.random.default_rng(0)
    operands = rng.integers(0, n_in, (k, 3))        # each position reads fixed slots
    rows = [(table[name], *operands[i], n_in + j * k + i)
            for j in range(reps) for i, name in enumerate(names)]
    code = np.array(rows, np.int64)
    buf_tape = np.concatenate([inputs, np.zeros(reps * k)])
    buf_rolled = buf_tape.copy()
    tape.run_loop()(code[:, 0].astype(np.int32), code[:, 1].copy(), code[:, 2].copy(),
                    code[:, 3].copy(), code[:, 4].copy(), buf_tape)
    segs = rolled.segments(code)
    assert segs == [(0, k, reps * k)]
    signature, base, stride = rolled.body_plan(code, 0, k)
    assert sorted(name for name, _ in signature) == sorted(names)
    rolled.compiled_body(signature)(reps, base, stride, buf_rolled)
    np.testing.assert_array_equal(buf_rolled, buf_tape)


@st.composite
def _loops(draw):
    """A random loop body over two carried scalars, a prefix and a repeat count."""
    unary = ["sin", "tanh", "exp_small", "neg", "sq", "abs"]
    body = draw(st.lists(st.tuples(st.sampled_from(unary + ["add", "mul", "sub", "div"]),
                                   st.integers(0, 1), st.integers(0, 1),
                                   st.floats(-1.5, 1.5, allow_nan=False)),
                         min_size=1, max_size=6))
    return body, draw(st.integers(10, 40)), draw(st.integers(0, 3))


def _run_body(body, steps, prefix):
    def f(x, y):
        for _ in range(prefix):
            x = x * 1.5 + y
        for _ in range(steps):
            v = [x, y]
            for op, i, j, c in body:
                a, b = v[i], v[j]
                r = {"sin": lambda: np.sin(a), "tanh": lambda: np.tanh(a + c),
                     "exp_small": lambda: np.exp(-a * a), "neg": lambda: -a,
                     "sq": lambda: a * a * 0.5, "abs": lambda: np.abs(a) * c,
                     "add": lambda: a + b * c, "mul": lambda: a * b,
                     "sub": lambda: a - c * b, "div": lambda: a / (1.0 + b * b)}[op]()
                v[(i + 1) % 2] = np.tanh(r)       # keeps values bounded
            x, y = v
        return x * y + x
    return f


# each example compiles its own loop bodies (about 1.5 s): half the profile's examples
@settings(max_examples=max(4, settings().max_examples // 2))
@given(_loops())
def test_random_loops_match_the_tape_to_the_bit(loop):
    body, steps, prefix = loop
    f = _run_body(body, steps, prefix)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(rolled, "MIN_OPS", 48)
        for ol in _programs(f, 0.4, -0.3):
            for args in ((0.4, -0.3), (1.1, 0.6)):
                _same(*_both(ol, *args))


def _table_rows(rows):
    return np.array(rows, np.int64)


def test_an_outer_loop_is_found_around_its_inner_loop(short_loops):
    rows, o = [], 10
    add, mul, neg = (tape.opcodes()[n] for n in ("add", "mul", "neg"))
    for _ in range(40):                  # outer body: an inner loop (3 x 12 ops) and glue
        for _ in range(3):
            for k in range(12):
                rows.append(((add, mul, neg)[k % 3], o - 12, 3, 0, o))
                o += 1
        for _ in range(5):
            rows.append((neg, o - 1, 4, 0, o))
            o += 1
    assert rolled.segments(_table_rows(rows)) == [(0, 41, len(rows))]


def test_a_slot_written_before_it_is_read_again_is_not_kept_in_a_register(short_loops):
    """A hand-made table (the tape's own encoder never makes one): op 1 reads, at the
    first repetition, a slot op 0 has just written, which also looks like op 1's result of
    the repetition before. It must be read from memory, not from before the loop."""
    neg, add = tape.opcodes()["neg"], tape.opcodes()["add"]
    rows = []
    for j in range(30):
        rows.append((neg, 0, 1, 1, 1000 - j))
        rows.append((add, 1000 + 2 * j, 0, 1, 1002 + 2 * j))
    table = _table_rows(rows)
    assert rolled.segments(table) == [(0, 2, 60)]
    signature, base, stride = rolled.body_plan(table, 0, 2)
    assert signature[1][1][0] is None
    buf = np.zeros(1100)
    buf[0], buf[1] = 1.0, 0.0
    want = buf.copy()
    tape.run_loop()(table[:, 0].astype(np.int32), *(table[:, i].copy() for i in (1, 2, 3, 4)),
                    want)
    rolled.compiled_body(signature)(30, base, stride, buf)
    np.testing.assert_array_equal(buf, want)


def test_a_long_scalar_program_ends_on_the_rolled_tier():
    f = chain(400)
    vg = value_and_grad(f, argnums=(0, 1), compile="eager")
    got = vg(0.3, 0.5)
    with use_backend("tape"):
        want = value_and_grad(f, argnums=(0, 1))(0.3, 0.5)
    _same(jvpvjp.tree_flatten(got)[0], jvpvjp.tree_flatten(want)[0])
    assert "rolled" in explain_cache(vg)
    with use_backend("rolled"):       # pinned, and through compile_oplist
        again = value_and_grad(f, argnums=(0, 1))(0.3, 0.5)
    _same(jvpvjp.tree_flatten(again)[0], jvpvjp.tree_flatten(want)[0])


def test_guards_are_read_after_the_loops():
    def f(x, y):
        for _ in range(200):
            x = x * 0.99 + y * 0.01
        if x > 0.25:                                  # a guard on the loop's result
            return x * y
        return x - y
    g = value_and_grad(f, compile="eager")
    for x in (0.3, 0.1, 0.3):
        with use_backend("numpy"):
            want = value_and_grad(f)(x, 0.2)
        got = g(x, 0.2)
        np.testing.assert_allclose(got[0], want[0], rtol=1e-13)
        np.testing.assert_allclose(got[1], want[1], rtol=1e-13)


def test_compile_oplist_names_the_backend():
    ol = jvpvjp.make_oplist(chain(5))(0.3, 0.5)
    assert isinstance(compile_oplist(ol, "rolled"), rolled.RolledKernel)
    with pytest.raises(ValueError, match="scalar"):
        compile_oplist(jvpvjp.make_oplist(lambda x: np.sin(x))(np.ones(3)), "rolled")


def test_one_encoding_per_op_list_and_nothing_kept_after_it():
    import gc
    import weakref
    ol = jvpvjp.make_oplist(chain(150))(0.3, 0.5)
    alive = weakref.ref(ol)
    on_tape, rolled_ = compile_oplist(ol, "tape"), compile_oplist(ol, "rolled")
    assert rolled_.tape is on_tape                 # encoded once, for both tiers
    _same(rolled_(0.3, 0.5), on_tape(0.3, 0.5))
    del ol, on_tape, rolled_
    gc.collect()
    assert alive() is None
