"""Tracing: Python functions over NumPy arrays become op lists.

Design notes
------------
* A `Tracer` stands for one `Var` of the op list being built by a `Builder`. During a user
  trace it also carries its concrete NumPy value, so ordinary Python control flow runs.
  Derivative rules run on *abstract* tracers (no value) and emit ops the same way, which is
  why a derivative program is an op list and transforms compose.
* Every Python value taken out of a traced value (``bool``, ``int``, ``float``, an index)
  goes through `Tracer._take`, which records a `Guard`. A compiled kernel returns the
  guarded values and the caller checks them, so a cached derivative is never replayed on a
  path it was not traced on.
* Builders nest. A tracer of an outer builder that meets an inner one is *captured*: it
  becomes an input of the inner op list, bound back to the outer tracer when the inner
  derivative program is inlined. Perturbations of different levels are never confused.
* `bind` is the only place an op is recorded, and the place errors get the user's line.
"""
from __future__ import annotations

import linecache
import os
import sys
import threading

import numpy as np

from .oplist import Guard, Op, OpList, Var

_asarray = np.asarray        # NumPy's, bound before any trace replaces np.asarray

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__))

class _TraceState(threading.local):
    """Per-thread tracing state: each thread traces with its own stack of builders."""

    def __init__(self):
        self.builders = []   # active builders, innermost last


_state = _TraceState()


def tracing_active():
    """Whether this thread is inside a trace (transforms then inline, not compile)."""
    return bool(_state.builders)


# NumPy functions that NumPy does not dispatch to ``__array_function__`` (``np.array``,
# ``np.asarray``, ``np.r_``, ...): name -> replacement, filled in by `numpy_api`. The
# replacements are installed on the ``numpy`` module while a user function is traced, and
# pass every call through unchanged unless it is this thread's trace and holds a tracer.
NUMPY_PATCHES = {}
_patch_lock = threading.Lock()
_patch_depth = [0, {}]      # traces open in any thread, the originals


def _patch_numpy(enter):
    with _patch_lock:
        depth, originals = _patch_depth
        if enter:
            if depth == 0:
                for name, fn in NUMPY_PATCHES.items():
                    originals[name] = getattr(np, name)
                    setattr(np, name, fn)
            _patch_depth[0] = depth + 1
        else:
            _patch_depth[0] = depth - 1
            if depth == 1:
                for name, fn in originals.items():
                    setattr(np, name, fn)
                originals.clear()


class TracingError(TypeError):
    """Raised when traced code does something jvpvjp cannot differentiate faithfully."""


# conversions that drop a derivative (bool() and int() stay guards: their derivative is 0)
_LOSSY = {"float": "float()", "complex": "complex()", "item": ".item()",
          "array": "converting to a NumPy value"}


_internal_files = {}


def _is_internal(fn):
    r = _internal_files.get(fn)
    if r is None:      # (by the absolute path: jvpvjp may be imported through "..")
        path = fn if fn.startswith("<") else os.path.abspath(fn)
        r = _internal_files[fn] = (path.startswith(_PACKAGE_DIR) or path.startswith(_NUMPY_DIR)
                                   or fn.startswith("<__array_function__"))
    return r


def user_frame():
    """(filename, lineno) of the innermost frame outside jvpvjp and NumPy."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not _is_internal(fn):
            return fn, f.f_lineno
        f = f.f_back
    return None


def format_where(where):
    if where is None:
        return "<unknown location>"
    fn, line = where
    src = linecache.getline(fn, line).strip()
    return f'File "{fn}", line {line}' + (f": {src}" if src else "")


class Builder:
    """Records ops into an op list. ``concrete`` builders also compute values."""

    def __init__(self, concrete=True):
        self.concrete = concrete
        self.invars = []
        self.ops = []
        self.consts = {}
        self.guards = []
        self.captured = []        # [(outer tracer, inner Var)]
        self._captured_ids = {}   # id(outer tracer) -> index into captured
        self._scalar_consts = {}
        self.level = None
        self._thread = None
        self.diff_vars = set()    # inputs being differentiated
        self._producer = {}       # outvar -> op, for ops[:len(self._producer)]

    def __enter__(self):
        builders = _state.builders
        self.level = len(builders)
        builders.append(self)
        self._thread = threading.get_ident()
        if self.concrete:
            _patch_numpy(True)
        return self

    def __exit__(self, *exc):
        builders = _state.builders
        if not builders or builders[-1] is not self:
            raise RuntimeError("internal error: trace builders closed out of order")
        builders.pop()
        self.level = -1   # tracers of a finished trace must not be used again
        if self.concrete:
            _patch_numpy(False)

    def depends_on_diff(self, var):
        """Whether ``var`` depends on a differentiated input (of this trace, or through a
        captured value, of an outer one) other than through a zero-derivative op."""
        if not self.diff_vars and not self.captured:
            return False
        producer = self._producer
        for op in self.ops[len(producer):]:      # ops recorded since the last call
            producer[op.outvar] = op
        captured = {inner: outer for outer, inner in self.captured}
        seen, stack = set(), [var]
        while stack:
            v = stack.pop()
            if v in seen:
                continue
            seen.add(v)
            if v in self.diff_vars:
                return True
            outer = captured.get(v)
            if outer is not None:
                if outer.builder.depends_on_diff(outer.node):
                    return True
                continue
            op = producer.get(v)
            if op is None or not op.prim.differentiable or op.prim.name == "stop_gradient":
                continue
            stack.extend(op.invars)
        return False

    # -- values -> vars -------------------------------------------------------------
    def new_input(self, value=None, aval=None):
        if value is not None:
            value = np.asarray(value)
            var = Var(value.shape, value.dtype)
        else:
            var = Var(*aval)
        self.invars.append(var)
        t = Tracer(self, var, value)
        t.is_input = True
        return t

    def const(self, value):
        if type(value) is float:
            key = (value, "<f8")
            var = self._scalar_consts.get(key)
            if var is not None:
                return var
        value = np.asarray(value)
        if value.ndim == 0:
            key = (value.item(), value.dtype.str)
            var = self._scalar_consts.get(key)
            if var is None:
                var = self._scalar_consts[key] = Var((), value.dtype)
                self.consts[var] = value
            return var
        var = Var(value.shape, value.dtype)
        self.consts[var] = value
        return var

    def to_var(self, x):
        if isinstance(x, Tracer):
            if x.builder is self:
                return x.node
            return self._capture(x)
        if isinstance(x, Var):
            return x
        return self.const(x)

    def _capture(self, outer):
        if outer.builder.level is None or outer.builder.level < 0:
            raise TracingError(
                "a traced value escaped the function that created it (it was stored "
                "outside the traced call and used later); pass it as an argument instead")
        idx = self._captured_ids.get(id(outer))
        if idx is not None:
            return self.captured[idx][1]
        var = Var(outer.shape, outer.dtype)
        self._captured_ids[id(outer)] = len(self.captured)
        self.captured.append((outer, var))
        return var

    def value_of(self, x):
        if isinstance(x, Tracer):
            return x.value
        return np.asarray(x)

    def add_guard(self, tracer, kind, where):
        value = np.array(tracer.value, copy=True)
        self.guards.append(Guard(tracer.node, value, kind, format_where(where)))

    def finish(self, outs):
        """Close the trace: ``outs`` is a flat list of tracers or constants."""
        outvars = [self.to_var(o) for o in outs]
        invars = list(self.invars) + [v for _, v in self.captured]
        return OpList(invars, outvars, list(self.ops), dict(self.consts), list(self.guards))


def _pick_builder(args):
    best = None
    for a in args:
        if isinstance(a, Tracer) and (best is None or _level(a.builder) > _level(best)):
            best = a.builder
    return best


def _level(builder):
    return -2 if builder.level is None else builder.level


def bind(prim, *args, **params):
    """Apply primitive ``prim``: record an op if any argument is traced, else compute."""
    builder = _pick_builder(args)
    if builder is None:
        return prim.impl(*[np.asarray(a) for a in args], **params)
    if builder.level is None or builder.level < 0:
        raise TracingError(
            "a traced value escaped the function that created it (it was stored outside "
            "the traced call and used later); pass it as an argument instead")
    if builder._thread != threading.get_ident():
        raise TracingError("a traced value of one thread's trace was used in another "
                           "thread; pass arrays, not traced values, between threads")
    for a in args:
        if type(a) is Tracer and a._base is not None:
            a.check_fresh()
    invars = [builder.to_var(a) for a in args]
    where = user_frame() if builder.concrete else None
    if not prim.complex:
        for v in invars:
            if v.dtype.kind == "c":
                raise TypeError(f"{prim.name} of complex values is not supported\n  at "
                                f"{format_where(where)}")
    try:
        out = Var(*prim.abstract_eval(*[v.aval for v in invars], **params))
    except (ValueError, TypeError, IndexError) as e:
        raise type(e)(f"{prim.name}: {e}\n  at {format_where(where)}") from None
    value = None
    if builder.concrete:
        # NumPy's own asarray: while tracing, np.asarray is jvpvjp's stand-in
        vals = [a.value if type(a) is Tracer else _asarray(a) for a in args]
        value = _asarray(prim.impl(*vals, **params))    # errstate: set by the tracer
        if value.shape != out.shape or value.dtype != out.dtype:
            raise AssertionError(f"internal error: {prim.name} computed {value.shape} "
                                 f"{value.dtype}, abstract evaluation said {out.shape} "
                                 f"{out.dtype}")
    builder.ops.append(Op(prim, tuple(invars), out, params, where))
    result = Tracer(builder, out, value)
    if prim.kind == "view" and isinstance(args[0], Tracer):
        result.mark_view_of(args[0])
    return result


class Tracer:
    """A traced array. Behaves like a ``numpy.ndarray`` inside traced code (item
    assignment is a functional update: `numpy_api.setitem`)."""

    __slots__ = ("builder", "_node", "value", "_base", "_version", "is_input", "_writes")
    __array_priority__ = 1000
    __hash__ = None

    def __init__(self, builder, var, value=None):
        self.builder = builder
        self._node = var
        self.value = value
        self._base = None      # (array this is a NumPy view of, its _version then)
        self._version = 0      # item assignments so far
        self.is_input = False  # an argument of the traced function (never assigned into)
        self._writes = None    # item assignments not yet in the op list (`Writes`)

    @property
    def node(self):
        """The value in the op list: the one place the program reads a tracer, so item
        assignments still pending are recorded here, as one update (`Writes`)."""
        if self._writes is not None:
            node = self._writes.record().node    # (kept pending if that raises)
            self._writes = None
            self._node = node
        return self._node

    def mark_view_of(self, x):
        """Record that NumPy would make this a view of ``x``: once ``x`` is assigned to,
        using this raises instead of silently showing the old values."""
        root = x if x._base is None else x._base[0]
        self._base = (root, root._version)

    def check_fresh(self):
        """Raise if this is a view of an array assigned to since the view was taken."""
        if self._base is not None and self._base[0]._version != self._base[1]:
            raise TracingError(
                f"{format_where(user_frame())}: a view of a traced array (a slice, reshape "
                f"or transpose of it) is used after the array was assigned to; in NumPy it "
                f"would show the new values. Take the view after the assignment, or copy it "
                f"before (v = y[...].copy())")

    def rebind(self, new):
        """Item assignment: this array now stands for ``new`` (a functional update)."""
        self._writes = None
        self._node, self.value = new.node, new.value
        self._version += 1

    def defer_write(self, write, value):
        """Item assignment kept pending (see `numpy_api.Writes`): ``value`` is the
        array's value after it (None when tracing abstractly)."""
        if self._writes is None:
            from .numpy_api import Writes
            self._writes = Writes(Tracer(self.builder, self._node, self.value))
        self._writes.add(write)
        self.value = value
        self._version += 1

    shape = property(lambda self: self._node.shape)
    dtype = property(lambda self: self._node.dtype)
    ndim = property(lambda self: self._node.ndim)
    size = property(lambda self: self._node.size)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    def __iter__(self):
        if not self.shape:
            raise TypeError("iteration over a 0-d array")
        return (self[i] for i in range(self.shape[0]))

    def __repr__(self):
        v = "" if self.value is None else f", value={np.array2string(self.value, threshold=6)}"
        return f"Tracer(shape={self.shape}, dtype={self.dtype}{v})"

    # -- the one place Python values leave a trace ----------------------------------
    def _take(self, kind):
        if self.value is None:
            raise TracingError(
                f"cannot convert an abstract traced value to a Python {kind}: its value "
                f"is not known while a derivative program is built")
        if self.builder.level is None or self.builder.level < 0:
            return self.value
        self.check_fresh()
        if kind in _LOSSY and self.dtype.kind in "fc" and \
                self.builder.depends_on_diff(self.node):
            raise TracingError(
                f"{format_where(user_frame())}: {_LOSSY[kind]} of a value that depends on a "
                f"differentiated input: its derivative would be lost (silently zero). Keep "
                f"it an array: build arrays from traced values with np.stack / "
                f"np.concatenate / np.where, or assign into y = np.zeros_like(x) (a traced "
                f"array), not into a NumPy array; or, for a "
                f"constant on purpose, use float(jvpvjp.stop_gradient(x)).")
        self.builder.add_guard(self, kind, user_frame())
        return self.value

    def __bool__(self):
        if self.size != 1:
            raise ValueError("The truth value of an array with more than one element is "
                             "ambiguous. Use a.any() or a.all()")
        return bool(self._take("bool"))

    def __float__(self):
        return float(self._take("float"))

    def __int__(self):
        return int(self._take("int"))

    def __index__(self):
        if self.dtype.kind not in "iub":
            raise TypeError("only integer arrays can be used as an index")
        return int(self._take("index"))

    def __complex__(self):
        return complex(self._take("complex"))

    def item(self):
        if self.size != 1:
            raise ValueError("can only convert an array of size 1 to a Python scalar")
        return self._take("item").item()

    def tolist(self):
        return self._take("array").tolist()

    def concrete_value(self):
        """The array's value, recorded as a guard: the result holds only on this path."""
        return self._take("array")

    def __array__(self, dtype=None, copy=None):
        raise TracingError(
            f"{format_where(user_frame())}: a traced value was converted to a NumPy array "
            f"(np.asarray, np.array of a list holding it, assignment into a NumPy array, or "
            f"a function jvpvjp does not handle); its derivative would be lost silently. "
            f"Build arrays with np.stack / np.concatenate, or assign into "
            f"y = np.zeros_like(x); use jvpvjp.stop_gradient first for a constant.")

    # __setitem__: numpy_api.setitem (a functional update)

    def __reduce__(self):
        raise TracingError("traced values cannot be pickled")
