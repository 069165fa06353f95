"""The primitive registry.

Each `Primitive` keeps together everything jvpvjp knows about one operation:

* ``impl(*arrays, **params)``: the NumPy forward computation (traces, interpreter);
* ``abstract_eval(*avals, **params) -> (shape, dtype)``: static shape and dtype rule;
* ``jvp_rule(primals, tangents, out, **params)``: tangent of the output, emitted as ops
  (tangents are abstract tracers or ``None`` for zero; return ``None`` for zero);
* ``vjp_rule(ct, primals, out, needs, **params)``: cotangent per input, emitted as ops
  (``needs[i]`` says whether input i wants one; return ``None`` where not);
* ``vjp_accumulate(ct, primals, out, needs, current, **params)``: optional, a VJP rule given
  the cotangent accumulated so far per input (``current[i]``, None for none) that returns
  the totals, adding its contributions in the order the inlined ops would (checkpoint:
  results equal the plain gradient's to the bit);
* ``sparsity(op, constants)``: optional, which operand elements each output element reads,
  for sparsity patterns (`jvpvjp.sparsity`; elementwise, view, reduction and shape rows
  need none: their kind says it);
* ``lower(args, op)``: a Numba expression computing the op from argument expressions (or
  ``(lines, expression)``: statements first, ``{out}`` naming a variable of the op's own);
* ``tests``: test cases; the test suite is generated from them.

Primitives whose outputs carry no derivative (comparisons) set ``differentiable=False``.

What kind of operation a primitive is lives on it too, never in lists kept elsewhere: the
backends, the simplifier and the NumPy front end read these fields.

* ``kind``: ``"elementwise"`` (``nin`` operands broadcast against each other), ``"reduction"``,
  ``"view"`` (the output is the input's data: reshape, transpose, broadcast_to,
  stop_gradient), ``"product"``, ``"shape"`` (other data movement), ``"index"`` or
  ``"other"``;
* ``numpy``: the NumPy ufuncs the primitive implements as they are (``np.sin`` -> ``sin``);
* ``scalar``: for elementwise primitives, a Numba expression over float64 scalars ``{0}``,
  ``{1}``, ... with exactly NumPy's results (NaN, signed zeros): the tapes run it. Defaults
  to the ``lower`` template of rows built by `elementwise.unary` / `binary` / `comparison`;
* ``identity``: the output is the first operand's value (the other operands, if any, only
  carry derivative rules: ``stop_gradient``, custom rules); simplification removes the op
  before a program is compiled;
* ``commutative``; ``fuses`` (an elementwise lowering that may be inlined into its consumer);
  ``numpy_faster`` (NumPy's SIMD loop beats Numba's scalar one on large arrays);
  ``numpy_name`` (a reduction's NumPy function, called from compiled code on large arrays);
* ``loop``, ``pointwise``, ``accumulate``, ``cost``: how generated loop nests compute it,
  ``array_loop`` how large arrays do outside them, ``view_index`` how they read a view
  without building it (see the field comments below and `backend.numba_backend`);
  ``view_compose``, how two views of one kind make one;
* ``tapes``: the tape interpreters run it. ``False`` for ops that do much work per element
  or have integer results (sorting, linear algebra): a program holding one starts in the
  NumPy interpreter, where such an op costs what NumPy's call costs;
* ``complex``: it takes complex values, and its rules hold for them in JAX's convention
  (a holomorphic op's VJP multiplies by its derivative, unconjugated). `bind` refuses
  complex operands of the others.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..tracing import bind

REGISTRY = {}


# Numba helpers that kernels call through a symbol (`backend.opaque`, which checks this
# list): a lowering passes them, first, the name of the dtype they run on.
OPAQUE = frozenset({"_det_batched", "_cholesky_batched", "_eigh_batched", "_svd_batched",
                    "_qr_batched", "_lu_batched", "_lu_solve_batched", "_lu_inverse_batched",
                    "_batched_matmul_nn", "_batched_matmul_tn", "_batched_matmul_nt",
                    "_batched_matmul_tt", "_argsort_rows"})


def flat_as(expr, shape):
    """Lowering text: the elements of array expression ``expr``, in C order, seen with
    ``shape`` (a view when ``expr`` is C-contiguous; ``backend.numba_arrays``)."""
    return f"_shaped(_flat({expr}), {tuple(shape)!r})"


def typed(text, dtype):
    """Lowering text: the scalar ``text`` (a number, ``np.inf``...) as a value of ``dtype``.
    A float64 is written bare, as Numba types a float literal: the call
    ``np.float64(2.0)`` costs about 2 ms of compile time, and kernels hold hundreds."""
    dtype = np.dtype(dtype)
    return f"({text})" if dtype == np.float64 else f"np.{dtype.name}({text})"


def permuted(expr, perm):
    """Lowering text: array expression ``expr`` with its axes in the order ``perm`` (a
    view; ``backend.numba_arrays``)."""
    perm = tuple(int(p) for p in perm)
    if perm == tuple(range(len(perm))):
        return expr
    if perm == tuple(range(len(perm)))[::-1]:
        return f"{expr}.T"
    return f"_permuted({expr}, {','.join(map(str, perm))!r})"


@dataclass
class Case:
    """A test case: ``fn`` applied to arrays of ``shapes`` drawn from ``domain``.

    ``shapes`` is a tuple of shapes, or ``"broadcast"`` to let the test draw mutually
    broadcastable shapes. ``domain`` holds one ``(low, high)`` per argument; ``avoid`` is a
    value each argument keeps ``gap`` away from (kinks); ``distinct`` keeps arguments apart
    (ties of maximum/minimum); ``unique`` keeps the elements of each argument apart (ties of
    max/min reductions).
    """

    fn: object
    shapes: object = "broadcast"
    domain: tuple = ((-2.0, 2.0),)
    avoid: float | None = None
    distinct: bool = False
    unique: bool = False
    gap: float = 0.1
    eps: float = 1e-6
    rtol: float = 1e-5
    atol: float = 1e-6
    name: str = ""


@dataclass(eq=False)
class Primitive:
    name: str
    impl: object
    abstract_eval: object
    jvp_rule: object = None
    vjp_rule: object = None
    lower: object = None
    differentiable: bool = True
    tests: list = field(default_factory=list)
    # the Numba lowering needs its array arguments C- or F-contiguous (BLAS)
    contiguous_args: bool = False
    # batch_rule(args, batched, size, **params): the op on arguments of which those with
    # batched[i] carry a leading axis of ``size``; returns the batched result
    batch_rule: object = None
    # one_hot_rule(hot, k, args, op): the batched result when operand k is a block of
    # one-hot slices (`batching.OneHot`, e.g. Jacobian seeds) and no other operand is
    # batched, without building it: a dense batched value, ``(shape, scale_fn)`` for a
    # result one-hot too (its hot values ``scale_fn(idx, scale)``), or None (build it).
    # The dense op's numbers wherever the other operands are finite (and divisors nonzero):
    # it only adds zeros. Where they are not, the dense op's 0 * inf spreads NaN into
    # entries the one-hot value does not touch; the rule leaves those entries right.
    one_hot_rule: object = None
    kind: str = "other"
    nin: int | None = None
    numpy: tuple = ()
    scalar: str | None = None
    commutative: bool = False
    fuses: bool = True
    numpy_faster: bool = False
    numpy_name: str | None = None
    tapes: bool = True
    complex: bool = False
    identity: bool = False
    vjp_accumulate: object = None
    sparsity: object = None
    # Inside generated loop nests (``backend.numba_backend``): ``loop`` is the expression of
    # one element when it differs from ``lower`` on scalars (a template used for real
    # floating dtypes, e.g. a vectorisable ``backend.vmath`` function, or a function of
    # (args, op) for any dtype); ``pointwise`` says a non-elementwise op (a cast) may be
    # computed element by element there; ``accumulate`` gives a reduction's (identity,
    # combine template of (accumulator, element)) so it is accumulated in the nest of its
    # operand; ``cost`` is one element's cost relative to an add, which plans use to
    # decide whether a value is stored or recomputed where it is read again.
    # ``array_loop``: a template over one array argument computing the op on a whole real
    # floating array in compiled code, used instead of a loop nest for large arrays (those
    # NumPy would run otherwise: see ``numpy_faster``).
    # ``whole_operands``: positions of operands a pointwise op reads whole, at positions of
    # its own rather than at the element it computes (a gather's source): inside a loop
    # nest they are complete arrays before it, and ``loop`` gets them as C-ordered vectors.
    loop: object = None
    array_loop: str | None = None
    pointwise: bool = False
    whole_operands: tuple = ()
    accumulate: tuple | None = None
    cost: int = 1
    # For an op whose output elements are elements of its first operand (views, gathers):
    # ``view_index(op, idx, consts)`` gives, from the index expressions of one output element
    # (strings: loop indices, "0", sums of products), those of the operand element it is, or
    # None where that takes more than adds and multiplies (``consts``: the op list's
    # constants, e.g. a gather's positions). Loop nests read the operand through it instead
    # of building the result (the simplifier drops views that change nothing with it too).
    # ``view_compose(inner, op)``: the params of one view equal to ``op`` applied to the same
    # primitive's view with params ``inner``.
    view_index: object = None
    view_compose: object = None

    KINDS = ("elementwise", "reduction", "view", "product", "shape", "index", "other")

    def __post_init__(self):
        if self.kind not in self.KINDS:
            raise ValueError(f"primitive {self.name!r}: kind must be one of {self.KINDS}, "
                             f"got {self.kind!r}")
        if self.kind == "elementwise" and self.nin is None:
            raise ValueError(f"elementwise primitive {self.name!r} needs nin")
        if self.batch_rule == "elementwise":
            self.batch_rule = elementwise_batching(self)
        if self.name in REGISTRY:
            raise ValueError(f"primitive {self.name!r} registered twice")
        REGISTRY[self.name] = self

    def bind(self, *args, **params):
        return bind(self, *args, **params)

    def __call__(self, *args, **params):
        return bind(self, *args, **params)

    def __repr__(self):
        return f"Primitive({self.name})"

    @property
    def fusible(self):
        """An elementwise op whose lowering may be inlined into the op that reads it."""
        return self.kind == "elementwise" and self.fuses

    @property
    def in_loops(self):
        """Computed element by element inside generated loop nests."""
        return self.kind == "elementwise" or self.pointwise

    @property
    def broadcasting(self):
        """An elementwise op of several operands, broadcast against each other."""
        return self.kind == "elementwise" and self.nin >= 2


def broadcast_shapes(*shapes):
    first = shapes[0]
    for s in shapes[1:]:
        if s != first:
            return tuple(np.broadcast_shapes(*shapes))
    return tuple(first)


def unbroadcast(ct, shape):
    """Sum cotangent ``ct`` down to ``shape``: the one place broadcasting is undone."""
    from .reductions import reduce_sum
    from .shape import reshape
    if ct.shape == tuple(shape):
        return ct
    lead = len(ct.shape) - len(shape)
    axes = tuple(range(lead)) + tuple(
        lead + i for i, d in enumerate(shape) if d == 1 and ct.shape[lead + i] != 1)
    if axes:
        ct = reduce_sum(ct, axes=axes)
    if ct.shape != tuple(shape):
        ct = reshape(ct, shape=tuple(shape))
    return ct


class NotBatchable(Exception):
    """An op whose batching rule does not cover its operands (the caller falls back)."""


def item_shape(x, batched):
    """The shape of one slice of ``x`` (without the batch axis when ``batched``)."""
    return tuple(x.shape[1:]) if batched else tuple(np.shape(x))


def with_item_rank(x, batched, rank):
    """A batched ``x`` as ``(size, 1, ..., 1, *item)`` with ``rank`` item axes, so that it
    broadcasts against unbatched operands by NumPy's right-aligned rule."""
    from .shape import reshape
    item = item_shape(x, batched)
    if not batched or len(item) == rank:
        return x
    return reshape(x, shape=(x.shape[0],) + (1,) * (rank - len(item)) + item)


def batch_all(x, batched, size):
    """``x`` with the batch axis, broadcast when it has none."""
    from .shape import broadcast_to
    return x if batched else broadcast_to(x, shape=(size,) + tuple(np.shape(x)))


def elementwise_batching(prim):
    """The batching rule of an elementwise primitive: align ranks, broadcasting does it."""
    def rule(args, batched, size, **params):
        rank = len(broadcast_shapes(*[item_shape(x, b) for x, b in zip(args, batched)]))
        return bind(prim, *[with_item_rank(x, b, rank) for x, b in zip(args, batched)],
                    **params)
    return rule


def zeros(shape, dtype):
    """An op-list value of zeros (a broadcast scalar constant, never a big literal)."""
    from .shape import broadcast_to
    z = np.zeros((), dtype)
    if tuple(shape) == ():
        return z
    return broadcast_to(z, shape=tuple(shape))


def load_all():
    from . import elementwise, linalg, reductions, shape  # noqa: F401
    from .. import custom  # noqa: F401  (the custom-rule op and the checkpoint barrier)
    return REGISTRY
