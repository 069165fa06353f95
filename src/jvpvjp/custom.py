"""Custom derivative rules and checkpointing: `custom_jvp`, `custom_vjp`, `checkpoint`.

Design notes
------------
* Called inside a trace, a decorated function records its own ops on `stop_gradient`-ed
  arguments (no transform differentiates them) and then one ``custom`` op,
  ``out = custom(primal_out, *inputs, *extras)``. Its value is its first operand; its
  derivative rules are the `Rule` it carries as a parameter: the user's rules, traced on
  the transform's values, so they emit ops and compile with the rest of the program.
  Simplification drops the op (and stop_gradient) before compiling: the primal costs what
  the function costs, and a rule that recomputes the primal shares its ops.
* One op covers every float output: several are raveled and concatenated into one vector
  (``_pack``), so a reverse sweep calls the backward rule once with every cotangent.
* The transform a rule does not give is derived by transposition. A JVP rule is linear in
  the tangents, so its reverse mode is the VJP of the traced tangent map; a VJP rule is
  linear in the cotangent, so its forward mode is the VJP of the traced cotangent map.
  Higher orders differentiate the rule's ops (JAX's semantics).
* Batching (`vmap`) keeps the op and records the batch size in ``layers``; a rule then runs
  on one example's shapes, traced and batched by `batching.batch_oplist` (`_run`).
* `checkpoint` is the same op with a rule that differentiates the function's own op list,
  in reverse mode on copies of its inputs that depend on the cotangent (``barrier``): the
  forward values are recomputed in the backward pass, never stored, and no rewrite
  merges the recomputation with the forward pass.
* A function that closes over a traced value being differentiated is refused, as in JAX:
  its rule only says how the output depends on the explicit arguments.
"""
from __future__ import annotations

import functools
import inspect
import threading

import numpy as np

from .oplist import dead_code_elimination
from .primitives import Case, Primitive, batch_all, zeros
from .primitives import elementwise as _ew
from .pytree import tree_flatten, tree_unflatten
from .tracing import Builder, Tracer, TracingError, format_where, user_frame

__all__ = ["custom_jvp", "custom_vjp", "checkpoint", "remat"]


def _is_float(x):
    return np.dtype(x.dtype).kind in "fc"


def _shape(x):
    return tuple(np.shape(x))


def _dtype_of(x):
    return x.dtype if isinstance(x, (Tracer, np.ndarray, np.generic)) else np.asarray(x).dtype


# -- the op ---------------------------------------------------------------------------------
def _custom_impl(primal, *rest, rule, layers):
    return np.array(primal, copy=True)


def _custom_abstract(primal, *rest, rule, layers):
    return primal


def _custom_jvp(primals, tangents, out, rule, layers):
    return rule.jvp(primals, tangents, out, layers)


def _custom_vjp(ct, primals, out, needs, rule, layers):
    return rule.vjp(ct, primals, out, needs, layers)


def _custom_vjp_accumulate(ct, primals, out, needs, current, rule, layers):
    return rule.vjp(ct, primals, out, needs, layers, current)


def _custom_sparsity(op, constants):
    if op.params["layers"]:
        return None           # batched: dense (a superset)
    return op.params["rule"].sparsity(op)


def _custom_batch(args, batched, size, rule, layers):
    args = [batch_all(a, b, size) for a, b in zip(args, batched)]
    return custom_p.bind(*args, rule=rule, layers=layers + (size,))


def _custom_case_fn(x):
    return _softplus_case(x) * 2.0


custom_p = Primitive(
    "custom", _custom_impl, _custom_abstract, _custom_jvp, _custom_vjp,
    lambda args, op: args[0], batch_rule=_custom_batch, kind="other", complex=True,
    identity=True, vjp_accumulate=_custom_vjp_accumulate, sparsity=_custom_sparsity,
    tests=[Case(_custom_case_fn, ((3,),), ((-3.0, 3.0),), name="custom_jvp")])


def _barrier_abstract(x, dep):
    return x


def _barrier_batch(args, batched, size):
    from .primitives import with_item_rank
    x, dep = args
    x = batch_all(x, batched[0], size)
    return barrier(x, with_item_rank(batch_all(dep, batched[1], size), True, x.ndim - 1))


# The value of x, read only once ``dep`` is known: the recomputation of a checkpoint reads
# its inputs through it, so it runs in the backward pass (``dep`` is a cotangent element)
# and no common-subexpression rewrite merges it with the forward pass.
barrier = Primitive(
    "barrier", lambda x, dep: np.array(x, copy=True), _barrier_abstract,
    lambda primals, tangents, out: tangents[0],
    lambda ct, primals, out, needs: (ct, None),
    _ew._ufunc_lower("{0}"), batch_rule=_barrier_batch, kind="elementwise", nin=2,
    scalar="{0}", complex=True,
    tests=[Case(lambda x, y: barrier(x, y[0]) * x, ((3,), (2,)), ((-2.0, 2.0), (-2.0, 2.0)),
                name="barrier")])


# -- packing float outputs into one value ---------------------------------------------------
def _pack(leaves, lead):
    """One value holding float ``leaves`` (each with ``lead`` batch axes in front)."""
    if len(leaves) == 1:
        return leaves[0]
    dtype = np.result_type(*[_dtype_of(x) for x in leaves])
    flat = []
    for x in leaves:
        s = _shape(x)
        x = x.astype(dtype) if _dtype_of(x) != dtype else x
        flat.append(np.reshape(x, s[:lead] + (-1,)))
    return np.concatenate(flat, axis=lead)


def _unpack(packed, avals, lead):
    """The leaves of ``avals`` (one example's shapes and dtypes) out of ``_pack``'s value."""
    if len(avals) == 1:
        return [packed]
    front = _shape(packed)[:lead]
    out, k = [], 0
    for shape, dtype in avals:
        n = int(np.prod(shape, dtype=np.int64))
        piece = packed[(slice(None),) * lead + (slice(k, k + n),)]
        piece = np.reshape(piece, front + tuple(shape))
        out.append(piece.astype(dtype) if _dtype_of(piece) != dtype else piece)
        k += n
    return out


# -- running a rule -------------------------------------------------------------------------
def _transpose(fn, in_avals, cts):
    """The transpose of linear ``fn`` (flat values of ``in_avals`` -> flat values) applied
    to ``cts`` (one per output of fn, None for zero): its reverse mode at zero."""
    from .transforms import inline, vjp_oplist
    with Builder(concrete=False) as b:
        ins = [b.new_input(aval=a) for a in in_avals]
        outs = list(fn(*ins))
        keep = [i for i, (o, c) in enumerate(zip(outs, cts)) if c is not None]
        ol = b.finish([outs[i] for i in keep])
        captured = [outer for outer, _ in b.captured]
    prog = vjp_oplist(ol, [True] * len(ins) + [False] * len(captured))
    results = inline(prog.oplist, [zeros(*a) for a in in_avals] + captured
                     + [cts[i] for i in keep])
    return results[len(keep):]


def _add(current, contributions):
    """Totals from the cotangents accumulated before and a rule's contributions."""
    if current is None:
        return contributions
    return tuple(c if a is None else (a if c is None else a + c)
                 for a, c in zip(current, contributions))


class Rule:
    """The derivative rules of one call of a decorated function (the ``custom`` op's
    parameter). Operands of the op: the packed float outputs, the ``n_in`` flat input
    leaves, then the rule's extras."""

    kind = "custom"

    def __init__(self, name, where, in_tree, in_avals, out_avals, n_extra=0):
        self.name, self.where = name, where
        self.in_tree, self.in_avals, self.out_avals = in_tree, in_avals, out_avals
        self.n_in, self.n_extra = len(in_avals), n_extra

    def __repr__(self):
        return f"{self.kind}({self.name})"

    def _closure_error(self):
        return TracingError(
            f"{self.where}: {self.kind} function {self.name} is differentiated with respect "
            f"to a value it closes over; its rule only covers its explicit arguments. Pass "
            f"the value as an argument.")

    def _float_inputs(self):
        return [i for i, (_, dt) in enumerate(self.in_avals) if np.dtype(dt).kind in "fc"]

    def _pairs_to_leaves(self, out_pos, leaf_pos, leaves):
        """Pairs (packed output position, position in the concatenated ``leaves`` (input
        indices)) as the op's (operand, out positions, operand positions) triples."""
        from .sparsity import split_positions
        sizes = [int(np.prod(self.in_avals[i][0], dtype=np.int64)) for i in leaves]
        which, pos = split_positions(leaf_pos, sizes)
        return [(1 + i, out_pos[which == k], pos[which == k]) for k, i in enumerate(leaves)]


def _check_leaves(rule, what, leaves, tree, avals, expect_tree):
    """Leaves returned by a user rule, checked against the expected structure and shapes
    (None: zero); dtypes follow the primal's."""
    if tree != expect_tree:
        raise TypeError(f"{rule.where}: the {what} of {rule.kind} function {rule.name} has "
                        f"structure {tree}, expected {expect_tree}")
    out = []
    for i, (x, (shape, dtype)) in enumerate(zip(leaves, avals)):
        if x is None:
            out.append(None)
            continue
        if not isinstance(x, Tracer):
            x = np.asarray(x)
        if _shape(x) != tuple(shape):
            raise ValueError(f"{rule.where}: the {what} of {rule.kind} function {rule.name} "
                             f"has shape {_shape(x)} at leaf {i}, expected "
                             f"{tuple(shape)}")
        if _dtype_of(x) != np.dtype(dtype):
            if np.dtype(dtype).kind not in "fc" or _dtype_of(x).kind not in "fciub" or \
                    _dtype_of(x).kind == "c" and np.dtype(dtype).kind != "c":
                raise TypeError(f"{rule.where}: the {what} of {rule.kind} function "
                                f"{rule.name} has dtype {_dtype_of(x)} at leaf {i}, expected "
                                f"{np.dtype(dtype)}")
            x = x.astype(dtype)
        out.append(x)
    return out


def _run(ol, args, layers):
    """Inline op list ``ol`` (traced for one example) on ``args``, which carry one batch
    axis per entry of ``layers`` in front (every operand of a batched custom op has):
    the innermost vmap's layer first, its axis next to the example's."""
    from .batching import batch_oplist
    from .transforms import inline
    for size in layers:
        ol = batch_oplist(ol, [True] * len(args), size)
    return inline(ol, list(args))


def _trace_rule(fn, avals):
    """Trace a rule on abstract values of ``avals``: (op list over those values and then
    the traced values it closes over, the closed-over tracers)."""
    with Builder(concrete=False) as b:
        ins = [b.new_input(aval=a) for a in avals]
        ol = b.finish(list(fn(*ins)))
        captured = [outer for outer, _ in b.captured]
    return dead_code_elimination(ol), captured


class JVPRule(Rule):
    """``ol``: (input leaves, float input tangents, outputs, closure) -> float output
    tangents, the user's rule traced when the function was called. Operands of the op
    after the inputs: the non-float outputs, then the closure."""

    kind = "custom_jvp"

    def __init__(self, ol, out_info, n_int_out, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ol, self.out_info, self.n_int_out = ol, out_info, n_int_out

    def _parts(self, primals, out, layers):
        n, k = self.n_in, self.n_int_out
        ins, ints, closure = primals[1:1 + n], primals[1 + n:1 + n + k], primals[1 + n + k:]
        info = self.out_info
        lead = len(layers)
        floats = _unpack(out, info.float_avals, lead)
        outs, fi, ii = [], iter(floats), iter(ints)
        for i in range(len(info.avals)):
            outs.append(next(fi) if i in info.float_idx else next(ii))
        return list(ins), outs, list(closure)

    def _tangent_map(self, primals, out, layers):
        ins, outs, closure = self._parts(primals, out, layers)
        return lambda *ts: _run(self.ol, ins + list(ts) + outs + closure, layers)

    def sparsity(self, op):
        """The rule's tangent map, linear in the tangents: its structure is the Jacobian's."""
        from .sparsity import oplist_pairs
        fl = self._float_inputs()
        n = self.n_in
        seeded = [n <= k < n + len(fl) for k in range(len(self.ol.invars))]
        out_pos, t_pos = oplist_pairs(self.ol, seeded, range(len(self.ol.outvars)))
        return self._pairs_to_leaves(out_pos, t_pos, fl)

    def jvp(self, primals, tangents, out, layers):
        if tangents[0] is not None:
            raise self._closure_error()
        fl = self._float_inputs()
        ts = [tangents[1 + i] for i in fl]
        if all(t is None for t in ts):
            return None
        ins = primals[1:1 + self.n_in]
        ts = [t if t is not None else zeros(_shape(ins[i]), ins[i].dtype)
              for t, i in zip(ts, fl)]
        outs = self._tangent_map(primals, out, layers)(*ts)
        return _pack(outs, len(layers))

    def vjp(self, ct, primals, out, needs, layers, current=None):
        fl = [i for i in self._float_inputs() if needs[1 + i]]
        result = [None] * len(primals)
        if not fl:
            return _add(current, tuple(result))
        ins = primals[1:1 + self.n_in]
        all_fl = self._float_inputs()
        avals = [(_shape(ins[i]), ins[i].dtype) for i in all_fl]
        cts = _unpack(ct, self.out_info.float_avals, len(layers))
        got = _transpose(self._tangent_map(primals, out, layers), avals, cts)
        for i, c in zip(all_fl, got):
            if needs[1 + i]:
                result[1 + i] = c
        return _add(current, tuple(result))


class VJPRule(Rule):
    """``ol``: (residuals, float output cotangents, closure) -> float input cotangents,
    the user's backward rule traced when the function was called. Operands of the op after
    the inputs: the residuals, then the closure."""

    kind = "custom_vjp"

    def __init__(self, ol, out_info, n_res, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.ol, self.out_info, self.n_res = ol, out_info, n_res

    def _cotangent_map(self, primals, layers):
        rest = list(primals[1 + self.n_in:])
        res, closure = rest[:self.n_res], rest[self.n_res:]
        return lambda *cts: _run(self.ol, res + list(cts) + closure, layers)

    def vjp(self, ct, primals, out, needs, layers, current=None):
        result = [None] * len(primals)
        fl = self._float_inputs()
        if not any(needs[1 + i] for i in fl):
            return _add(current, tuple(result))
        cts = _unpack(ct, self.out_info.float_avals, len(layers))
        got = self._cotangent_map(primals, layers)(*cts)
        for i, c in zip(fl, got):
            if needs[1 + i]:
                result[1 + i] = c
        return _add(current, tuple(result))

    def sparsity(self, op):
        """The backward rule maps output cotangents to input ones: the Jacobian transposed."""
        from .sparsity import oplist_pairs
        n_ct = len(self.out_info.float_idx)
        seeded = [self.n_res <= k < self.n_res + n_ct for k in range(len(self.ol.invars))]
        in_pos, out_pos = oplist_pairs(self.ol, seeded, range(len(self.ol.outvars)))
        return self._pairs_to_leaves(out_pos, in_pos, self._float_inputs())

    def jvp(self, primals, tangents, out, layers):
        # (the residuals' tangents matter to higher orders only: bwd's ops carry them)
        if tangents[0] is not None:
            raise AssertionError("internal error: a custom_vjp primal has a tangent")
        fl = self._float_inputs()
        ts = [tangents[1 + i] for i in fl]
        if all(t is None for t in ts):
            return None
        lead = len(layers)
        front = _shape(primals[0])[:lead]
        ct_avals = [(front + tuple(s), d) for s, d in self.out_info.float_avals]
        outs = _transpose(self._cotangent_map(primals, layers), ct_avals, ts)
        return _pack(outs, lead)


class CheckpointRule(Rule):
    kind = "checkpoint"

    def __init__(self, oplist, n_float_out, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.oplist, self.n_float_out = oplist, n_float_out

    def sparsity(self, op):
        from .sparsity import oplist_pairs
        fl = self._float_inputs()
        seeded = [k in fl for k in range(len(self.oplist.invars))]
        out_pos, in_pos = oplist_pairs(self.oplist, seeded, range(self.n_float_out))
        return self._pairs_to_leaves(out_pos, in_pos, fl)

    def jvp(self, primals, tangents, out, layers):
        from .transforms import jvp_oplist
        if tangents[0] is not None:
            raise AssertionError("internal error: a checkpoint's primal has a tangent")
        ins = list(primals[1:])
        mask = [t is not None and _is_float(x) for t, x in zip(tangents[1:], ins)]
        if not any(mask):
            return None
        prog = jvp_oplist(self.oplist, mask)
        n_out = len(self.oplist.outvars)
        ts = [t for t, m in zip(tangents[1:], mask) if m]
        tout = _run(prog, ins + ts, layers)[n_out:n_out + self.n_float_out]
        return _pack(tout, len(layers))

    def vjp(self, ct, primals, out, needs, layers, current=None):
        from .transforms import vjp_oplist
        ins = list(primals[1:])
        wrt = [n and _is_float(x) for n, x in zip(needs[1:], ins)]
        result = [None] * len(primals)
        if not any(wrt):
            return _add(current, tuple(result))
        # sums continue from the cotangents accumulated so far, in the plain program's order
        init = [w and current is not None and current[1 + i] is not None
                for i, w in enumerate(wrt)]
        prog = vjp_oplist(self.oplist, wrt, n_seeded=self.n_float_out, initial=init).oplist
        n_out = len(self.oplist.outvars)
        avals = [(v.shape, v.dtype) for v in self.oplist.outvars[:self.n_float_out]]
        cts = _unpack(ct, avals, len(layers))
        starts = [current[1 + i] for i, m in enumerate(init) if m]
        dep = _one_element(cts[0])
        xs = [barrier(x, _as_dtype(dep, x.dtype)) if isinstance(x, Tracer) and _is_float(x)
              else x for x in ins]
        got = _run(prog, xs + cts + starts, layers)[n_out:]
        for i, c in zip([i for i, w in enumerate(wrt) if w], got):
            result[1 + i] = c
        if current is not None:         # inputs this one does not reach keep theirs
            result = [c if c is not None or k == 0 else current[k]
                      for k, c in enumerate(result)]
        return tuple(result)


def _as_dtype(x, dtype):
    if x.dtype == dtype:
        return x
    if x.dtype.kind == "c" and np.dtype(dtype).kind != "c":
        x = np.real(x)
    return x.astype(dtype)


def _one_element(x):
    """A 0-d value read from ``x`` (the barrier's dependency on a cotangent)."""
    if isinstance(x, Tracer) and x.size >= 1:
        return np.reshape(x, (-1,))[0] if x.ndim else x
    return np.zeros((), np.float64)


# -- the decorators -------------------------------------------------------------------------
class _Outputs:
    """What a call returned: its pytree, the avals of its leaves, which are floats."""

    def __init__(self, leaves, tree):
        self.tree = tree
        self.avals = [(_shape(x), _dtype_of(x)) for x in leaves]
        self.float_idx = [i for i, (_, d) in enumerate(self.avals) if np.dtype(d).kind in "fc"]
        self.float_avals = [self.avals[i] for i in self.float_idx]


class _Decorated:
    """Shared by `custom_jvp`, `custom_vjp` and `checkpoint`: argument handling and the
    recording of a call inside a trace."""

    kind = "custom"

    def __init__(self, fun, nondiff_argnums=()):
        if not callable(fun):
            raise TypeError(f"{self.kind}: expected a function, got {type(fun).__name__}")
        functools.update_wrapper(self, fun)
        self.fun = fun
        self.nondiff_argnums = tuple(sorted(set(
            (nondiff_argnums,) if isinstance(nondiff_argnums, int) else nondiff_argnums)))
        self.name = getattr(fun, "__name__", "fun")
        self._state = threading.local()    # inside its own fwd rule: calls are plain

    def __get__(self, obj, objtype=None):       # methods: bind like a function
        return self if obj is None else functools.partial(self, obj)

    def _positional(self, args, kwargs):
        if not kwargs:
            return tuple(args)
        try:
            bound = inspect.signature(self.fun).bind(*args, **kwargs)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{self.kind} function {self.name}: {e}") from None
        bound.apply_defaults()
        if bound.kwargs:
            raise TypeError(f"{self.kind} function {self.name}: keyword-only arguments are "
                            f"not supported; make them positional")
        return tuple(bound.args)

    def __call__(self, *args, **kwargs):
        args = self._positional(args, kwargs)
        for n in self.nondiff_argnums:
            if n >= len(args):
                raise TypeError(f"{self.kind} function {self.name}: nondiff_argnums {n} is "
                                f"out of range for {len(args)} arguments")
        nondiff = self._nondiff(args)
        diff_args = [a for i, a in enumerate(args) if i not in self.nondiff_argnums]
        leaves, tree = tree_flatten(tuple(diff_args))
        memo = getattr(self._state, "memo", None)
        if memo is not None and memo[0] == tuple(map(id, leaves)):
            return memo[1]
        if getattr(self._state, "plain", False) or \
                not any(isinstance(x, Tracer) for x in leaves):
            return self._plain(args)
        for n, v in zip(self.nondiff_argnums, nondiff):
            for x in tree_flatten(v)[0]:
                if isinstance(x, Tracer) and x.builder.depends_on_diff(x.node):
                    raise TracingError(
                        f"{format_where(user_frame())}: argument {n} of {self.kind} function "
                        f"{self.name} is in nondiff_argnums but depends on a differentiated "
                        f"value; its derivative would be lost")
        for i, x in enumerate(leaves):
            if not isinstance(x, (Tracer, np.ndarray, np.generic, float, int, complex, bool)):
                raise TypeError(f"{self.kind} function {self.name}: argument leaf {i} is a "
                                f"{type(x).__name__}; pass non-array arguments through "
                                f"nondiff_argnums")
        leaves = [x if isinstance(x, Tracer) else np.asarray(x) for x in leaves]
        return self._record(args, leaves, tree, format_where(user_frame()))

    def rebuild(self, leaves, tree):
        """The positional arguments of fun's differentiable part from flat leaves."""
        return tuple(tree_unflatten(tree, leaves))

    def _nondiff(self, args):
        return tuple(args[n] for n in self.nondiff_argnums)

    def full_args(self, diff_args, nondiff):
        it = iter(diff_args)
        nd = dict(zip(self.nondiff_argnums, nondiff))
        n = len(diff_args) + len(nd)
        return tuple(nd[i] if i in nd else next(it) for i in range(n))

    def _plain(self, args):
        return self.fun(*args)

    def _bind(self, rule, outs, out_tree, extras, leaves, stop=False):
        """Bind the custom op over the float outputs; return the function's output.
        ``stop``: the outputs were computed from the inputs themselves, not from
        stop_gradient-ed copies (custom_vjp's residuals must stay differentiable)."""
        outs = list(outs)
        if stop:
            outs = _stopped(outs)
        if not out_tree.float_idx:
            return tree_unflatten(out_tree.tree, outs)
        if not stop:
            for x in outs:
                if isinstance(x, Tracer) and x.builder.depends_on_diff(x.node):
                    raise rule._closure_error()
        float_outs = [outs[i] for i in out_tree.float_idx]
        packed = custom_p.bind(_pack(float_outs, 0), *leaves, *extras, rule=rule, layers=())
        got = _unpack(packed, out_tree.float_avals, 0)
        for i, v in zip(out_tree.float_idx, got):
            outs[i] = v
        return tree_unflatten(out_tree.tree, outs)


def _stopped(leaves):
    return [_ew.stop_gradient(x) if isinstance(x, Tracer) else x for x in leaves]


def _as_leaf(x, what):
    if isinstance(x, (Tracer, np.ndarray)):
        return x
    if isinstance(x, (float, int, complex, bool, np.generic)):
        return np.asarray(x)
    raise TypeError(f"{what} holds a {type(x).__name__}; outputs must be arrays or numbers")


class custom_jvp(_Decorated):
    """A function with its own forward-mode rule (JAX's ``jax.custom_jvp``).

    Decorate the function, then give the rule with ``f.defjvp``: ``rule(primals, tangents)``
    gets the arguments and their tangents (tuples, one entry per argument not in
    ``nondiff_argnums``, those coming first as plain values) and returns
    ``(primal_out, tangent_out)``. Reverse mode, Jacobians, Hessians and vmap all follow
    from the rule (reverse mode by transposing it: it must be linear in the tangents).
    The rule is traced, so it compiles with the rest of the program.

    >>> import numpy as np
    >>> from jvpvjp import grad
    >>> @custom_jvp
    ... def log1pexp(x):
    ...     return np.log1p(np.exp(x))
    >>> @log1pexp.defjvp
    ... def log1pexp_jvp(primals, tangents):
    ...     (x,), (t,) = primals, tangents
    ...     return log1pexp(x), t / (1 + np.exp(-x))   # stable where exp(x) overflows
    >>> print(grad(log1pexp)(800.0))
    1.0
    """

    kind = "custom_jvp"

    def __init__(self, fun, nondiff_argnums=()):
        super().__init__(fun, nondiff_argnums)
        self.jvp_fn = None

    def defjvp(self, jvp):
        """Set the JVP rule (usable as a decorator); returns the rule."""
        if not callable(jvp):
            raise TypeError(f"custom_jvp {self.name}: the rule must be a function")
        self.jvp_fn = jvp
        return jvp

    def _record(self, args, leaves, tree, where):
        if self.jvp_fn is None:
            raise TypeError(f"{where}: custom_jvp function {self.name} is traced but has no "
                            f"rule; give one with {self.name}.defjvp(rule)")
        nondiff = self._nondiff(args)
        diff = self.rebuild(_stopped(leaves), tree)
        out = self.fun(*self.full_args(diff, nondiff))
        outs, out_tree = tree_flatten(out)
        outs = [_as_leaf(x, f"the output of {self.name}") for x in outs]
        info = _Outputs(outs, out_tree)
        in_avals = [(_shape(x), _dtype_of(x)) for x in leaves]
        rule = Rule(self.name, where, tree, in_avals, info.avals)
        rule.kind = self.kind
        fl = rule._float_inputs()

        def traced(*flat):
            n = len(leaves)
            p, ts, o = flat[:n], flat[n:n + len(fl)], flat[n + len(fl):]
            t = [zeros(*in_avals[i]) for i in range(n)]
            for i, v in zip(fl, ts):
                t[i] = v
            # the rule's own call of the function on these primals is this call's output
            # (so a primal with Python control flow works in its rule)
            state = self._state
            saved, state.memo = getattr(state, "memo", None), (
                tuple(map(id, p)), tree_unflatten(info.tree, list(o)))
            try:
                res = self.jvp_fn(*nondiff, self.rebuild(list(p), tree),
                                  self.rebuild(t, tree))
            finally:
                state.memo = saved
            if not (isinstance(res, (tuple, list)) and len(res) == 2):
                raise TypeError(f"{where}: the JVP rule of {self.name} must return a pair "
                                f"(primal_out, tangent_out), got {type(res).__name__}")
            got, got_tree = tree_flatten(res[0])
            _check_leaves(rule, "primal output of the JVP rule", got, got_tree, info.avals,
                          info.tree)
            got, got_tree = tree_flatten(res[1])
            got = _check_leaves(rule, "tangent output", got, got_tree, info.avals,
                                info.tree)
            return [got[i] if got[i] is not None else zeros(*info.avals[i])
                    for i in info.float_idx]

        ol, closure = _trace_rule(traced, in_avals + [in_avals[i] for i in fl] + info.avals)
        ints = [outs[i] for i in range(len(outs)) if i not in info.float_idx]
        rule = JVPRule(ol, info, len(ints), self.name, where, tree, in_avals, info.avals,
                       n_extra=len(ints) + len(closure))
        return self._bind(rule, outs, info, ints + closure, leaves)


class custom_vjp(_Decorated):
    """A function with its own reverse-mode rule (JAX's ``jax.custom_vjp``).

    ``f.defvjp(fwd, bwd)``: ``fwd(*args)`` returns ``(out, residuals)`` (any pytree of
    arrays), ``bwd(residuals, ct)`` returns a tuple with one cotangent per argument not in
    ``nondiff_argnums`` (pytrees like the arguments; ``None`` for zero). Those arguments
    come first to both, as plain values. Under a derivative the primal is ``fwd``'s output.
    Forward mode, Jacobians, Hessians and vmap work too (forward mode by transposing
    ``bwd``, which must be linear in ``ct``). The rules are traced and compiled.

    >>> import numpy as np
    >>> from jvpvjp import grad
    >>> @custom_vjp
    ... def clip_gradient(x):
    ...     return x
    >>> clip_gradient.defvjp(lambda x: (x, None),
    ...                      lambda res, ct: (np.clip(ct, -1.0, 1.0),))
    >>> print(grad(lambda x: np.sum(clip_gradient(x) * 5.0))(np.ones(2)))
    [1. 1.]
    """

    kind = "custom_vjp"

    def __init__(self, fun, nondiff_argnums=()):
        super().__init__(fun, nondiff_argnums)
        self.fwd = self.bwd = None

    def defvjp(self, fwd, bwd):
        """Set the forward and backward rules."""
        if not callable(fwd) or not callable(bwd):
            raise TypeError(f"custom_vjp {self.name}: fwd and bwd must be functions")
        self.fwd, self.bwd = fwd, bwd

    def _record(self, args, leaves, tree, where):
        if self.fwd is None:
            raise TypeError(f"{where}: custom_vjp function {self.name} is traced but has no "
                            f"rules; give them with {self.name}.defvjp(fwd, bwd)")
        nondiff = self._nondiff(args)
        abstract = any(isinstance(x, Tracer) and x.value is None for x in leaves)

        def call_fwd(ins):
            self._state.plain = True       # fwd calling f computes f's value
            try:
                got = self.fwd(*self.full_args(self.rebuild(ins, tree), nondiff))
            finally:
                self._state.plain = False
            if not (isinstance(got, (tuple, list)) and len(got) == 2):
                raise TypeError(f"{where}: the fwd rule of custom_vjp function {self.name} "
                                f"must return a pair (output, residuals), got "
                                f"{type(got).__name__}")
            out, res = got
            outs, out_tree = tree_flatten(out)
            outs = [_as_leaf(x, f"the output of {self.name}'s fwd rule") for x in outs]
            res_leaves, res_def = tree_flatten(res)
            dyn = [i for i, x in enumerate(res_leaves) if isinstance(x, (Tracer, np.ndarray))]
            template = [None if i in dyn else x for i, x in enumerate(res_leaves)]
            return outs, out_tree, [res_leaves[i] for i in dyn], (template, dyn), res_def

        if abstract:        # inside a derivative rule: no closure to check
            outs, out_tree, extras, res_layout, res_def = call_fwd(leaves)
        else:
            # Traced on its own, so that its closure is known: the residuals stay
            # differentiable functions of the inputs (higher orders differentiate bwd),
            # while the output's derivative is the rule's alone (stop_gradient below).
            from .transforms import inline
            with Builder(concrete=True) as b, np.errstate(all="ignore"):
                ins = [b.new_input(value=(x.value if isinstance(x, Tracer) else x))
                       for x in leaves]
                outs, out_tree, extras, res_layout, res_def = call_fwd(ins)
                ol = b.finish(outs + extras)
                captured = [outer for outer, _ in b.captured]
            for c in captured:
                if c.builder.depends_on_diff(c.node):
                    raise TracingError(
                        f"{where}: custom_vjp function {self.name} is differentiated with "
                        f"respect to a value it closes over; its rule only covers its "
                        f"explicit arguments. Pass the value as an argument.")
            vals = inline(ol, list(leaves) + captured)
            outs, extras = vals[:len(outs)], vals[len(outs):]
        info = _Outputs(outs, out_tree)
        template, dyn = res_layout
        in_avals = [(_shape(x), _dtype_of(x)) for x in leaves]
        rule = Rule(self.name, where, tree, in_avals, info.avals)
        rule.kind = self.kind
        fl = rule._float_inputs()
        bwd = self.bwd
        n_diff_args = len(args) - len(self.nondiff_argnums)
        arg_leaves = [len(tree_flatten(a)[0]) for i, a in enumerate(args)
                      if i not in self.nondiff_argnums]

        def traced(*flat):
            res_vals, cts = list(flat[:len(extras)]), list(flat[len(extras):])
            res_leaves = list(template)
            for i, v in zip(dyn, res_vals):
                res_leaves[i] = v
            full = [zeros(*a) for a in info.avals]
            for i, c in zip(info.float_idx, cts):
                full[i] = c
            got = bwd(*nondiff, tree_unflatten(res_def, res_leaves),
                      tree_unflatten(info.tree, full))
            if not isinstance(got, (tuple, list)) or len(got) != n_diff_args:
                raise TypeError(
                    f"{where}: the backward rule of {self.name} must return a tuple with one "
                    f"cotangent per differentiable argument ({n_diff_args}), got "
                    + (f"{len(got)} entries" if isinstance(got, (tuple, list))
                       else type(got).__name__))
            flat_cts = []
            for k, (g, sub, n) in enumerate(zip(got, tree[1], arg_leaves)):
                if g is None:
                    flat_cts.extend([None] * n)
                    continue
                g_leaves, g_tree = tree_flatten(g)
                if g_tree != sub:
                    raise TypeError(f"{where}: the backward rule of {self.name} returned a "
                                    f"cotangent of structure {g_tree} for argument {k}, whose "
                                    f"structure is {sub}")
                flat_cts.extend(g_leaves)
            flat_cts = _check_leaves(rule, "cotangent", flat_cts, tree, in_avals, tree)
            return [flat_cts[i] if flat_cts[i] is not None else zeros(*in_avals[i])
                    for i in fl]

        ol, closure = _trace_rule(traced, [(_shape(x), _dtype_of(x)) for x in extras]
                                  + info.float_avals)
        rule = VJPRule(ol, info, len(extras), self.name, where, tree, in_avals, info.avals,
                       n_extra=len(extras) + len(closure))
        return self._bind(rule, outs, info, list(extras) + closure, leaves, stop=True)


class checkpoint(_Decorated):
    """``f`` whose intermediates reverse mode recomputes instead of storing (JAX's
    ``jax.checkpoint`` / ``remat``); usable as a decorator.

    A reverse sweep through ``checkpoint(f)`` keeps only f's inputs, and runs f's forward
    ops again, then their reverse, when the cotangent arrives. The results are those of the
    plain gradient, bit for bit. Checkpoint every segment of √n steps of an n-step loop to
    store O(√n) states instead of n, for about one more forward pass.

    >>> import numpy as np
    >>> from jvpvjp import grad
    >>> step = checkpoint(lambda x: np.tanh(x) * 2.0)
    >>> print(grad(lambda x: np.sum(step(step(x))))(np.zeros(2)))
    [4. 4.]
    """

    kind = "checkpoint"

    def _record(self, args, leaves, tree, where):
        with Builder(concrete=True) as b, np.errstate(all="ignore"):
            ins = [b.new_input(value=(x.value if isinstance(x, Tracer) else x))
                   for x in leaves]
            if any(isinstance(x, Tracer) and x.value is None for x in leaves):
                raise NotImplementedError(f"checkpoint {self.name} inside an abstract "
                                          f"derivative program")
            out = self.fun(*self.full_args(self.rebuild(ins, tree), self._nondiff(args)))
            outs, out_tree = tree_flatten(out)
            outs = [_as_leaf(x, f"the output of {self.name}") for x in outs]
            info = _Outputs(outs, out_tree)
            order = info.float_idx + [i for i in range(len(outs)) if i not in info.float_idx]
            ol = b.finish([outs[i] for i in order])
            captured = [outer for outer, _ in b.captured]
        from .transforms import inline
        ins_all = leaves + captured
        got = inline(ol, _stopped(ins_all))
        outs = [None] * len(order)
        for k, i in enumerate(order):
            outs[i] = got[k]
        rule = CheckpointRule(ol, len(info.float_idx), self.name, where, tree,
                              [(_shape(x), _dtype_of(x)) for x in ins_all], info.avals)
        if not info.float_idx:
            return tree_unflatten(info.tree, outs)
        float_outs = [outs[i] for i in info.float_idx]
        packed = custom_p.bind(_pack(float_outs, 0), *ins_all, rule=rule, layers=())
        for i, v in zip(info.float_idx, _unpack(packed, info.float_avals, 0)):
            outs[i] = v
        return tree_unflatten(info.tree, outs)


remat = checkpoint


# the registry's test case for the custom op: a softplus with its own JVP rule
@custom_jvp
def _softplus_case(x):
    return np.log1p(np.exp(x))


@_softplus_case.defjvp
def _softplus_case_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    return _softplus_case(x), t / (1.0 + np.exp(-x))
