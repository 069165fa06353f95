"""The op list: jvpvjp's intermediate representation.

An `OpList` is a flat, ordered list of `Op`s over numbered `Var`s. Every Var has a static
shape and dtype and is defined exactly once: as an input, as a constant, or as the output
of one op. Derivative programs are op lists too, so transforms compose.
"""
from __future__ import annotations

import functools
import gc
import itertools
import math
from dataclasses import dataclass, field

import numpy as np

_ids = itertools.count()


def gc_paused(fn):
    """Run ``fn`` with Python's cyclic garbage collector off (restored afterwards).

    Tracing and transforming allocate millions of small objects that live until the op
    list is done; each allocation burst would otherwise trigger collections that walk
    them all again (a 240,000-op program traced and transformed in 7.7 s with the
    collector on, 4.7 s with it off). Nothing here relies on collecting cycles early."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if not gc.isenabled():
            return fn(*args, **kwargs)
        gc.disable()
        try:
            return fn(*args, **kwargs)
        finally:
            gc.enable()
    return wrapper


_DTYPE_TYPE = {np.dtype(t): type(np.dtype(t)) for t in (np.float64, np.float32, np.int64,
                                                          np.int32, np.bool_)}


class Var:
    """A value in an op list: a static shape and dtype, compared by identity."""

    __slots__ = ("id", "shape", "dtype")

    def __init__(self, shape, dtype):
        self.id = next(_ids)
        self.shape = shape if type(shape) is tuple else tuple(int(d) for d in shape)
        self.dtype = dtype if type(dtype) is _DTYPE_TYPE.get(dtype) else np.dtype(dtype)

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)      # Python ints: exact, and cheap to call

    @property
    def aval(self):
        return (self.shape, self.dtype)

    def __repr__(self):
        return f"Var({self.id}, {self.shape}, {self.dtype})"


@dataclass(eq=False)
class Op:
    """One primitive application: ``outvar = prim(*invars, **params)``."""

    prim: object
    invars: tuple
    outvar: Var
    params: dict
    where: str | None = None   # "file:line: source" of the user code that emitted it


@dataclass(eq=False)
class Guard:
    """A Python value taken out of a traced value: the path is valid while it holds."""

    var: Var
    value: np.ndarray
    kind: str            # "bool", "int", "float", "index", "array"
    where: str | None = None

    def holds(self, value):
        return np.array_equal(np.asarray(value), self.value)


@dataclass(eq=False)
class OpList:
    invars: list
    outvars: list
    ops: list
    consts: dict = field(default_factory=dict)   # Var -> np.ndarray
    guards: list = field(default_factory=list)

    def __str__(self):
        return format_oplist(self)

    __repr__ = __str__

    def copy(self):
        return OpList(list(self.invars), list(self.outvars), list(self.ops),
                      dict(self.consts), list(self.guards))


def _fmt_dtype(dtype):
    return {"float64": "f64", "float32": "f32", "int64": "i64", "int32": "i32",
            "bool": "bool"}.get(dtype.name, dtype.name)


def _fmt_type(v):
    return f"{_fmt_dtype(v.dtype)}[{','.join(map(str, v.shape))}]"


def _fmt_param(v):
    if isinstance(v, np.dtype):
        return v.name
    if isinstance(v, type) and issubclass(v, np.generic):
        return np.dtype(v).name
    return repr(v)


def format_oplist(ol):
    names = {}

    def name(v):
        if v not in names:
            names[v] = _letters(len(names))
        return names[v]

    def ref(v):
        if v in ol.consts and v.shape == () and v not in names:
            return repr(ol.consts[v].item())
        return name(v)

    ins = " ".join(f"{name(v)}:{_fmt_type(v)}" for v in ol.invars)
    lines = [f"{{ lambda {ins} ."]
    array_consts = [v for v in ol.consts if v.shape != ()]
    for v in array_consts:
        lines.append(f"    {name(v)}:{_fmt_type(v)} = const")
    for op in ol.ops:
        params = ", ".join(f"{k}={_fmt_param(p)}" for k, p in op.params.items()
                           if not k.startswith("_"))
        params = f"[{params}]" if params else ""
        args = " ".join(ref(v) for v in op.invars)
        lines.append(f"    {name(op.outvar)}:{_fmt_type(op.outvar)} = "
                     f"{op.prim.name}{params} {args}")
    for g in ol.guards:
        lines.append(f"    guard {ref(g.var)} == {g.value.tolist()!r}"
                     + (f"   # {g.where}" if g.where else ""))
    outs = ", ".join(ref(v) for v in ol.outvars)
    lines.append(f"  in ({outs}) }}")
    return "\n".join(lines)


def _letters(i):
    s = ""
    i += 1
    while i:
        i, r = divmod(i - 1, 26)
        s = chr(ord("a") + r) + s
    return s


def used_vars(ol):
    """Vars read by some op, an output or a guard."""
    used = set(ol.outvars) | {g.var for g in ol.guards}
    for op in ol.ops:
        used.update(op.invars)
    return used


def dead_code_elimination(ol):
    """Drop ops whose results reach no output or guard, and constants nobody reads."""
    live = set(ol.outvars) | {g.var for g in ol.guards}
    kept = []
    for op in reversed(ol.ops):
        if op.outvar in live:
            kept.append(op)
            live.update(op.invars)
    kept.reverse()
    consts = {v: c for v, c in ol.consts.items() if v in live}
    return OpList(list(ol.invars), list(ol.outvars), kept, consts, list(ol.guards))


def validate(ol):
    """Check that every Var is defined once before it is read (a debugging aid and test)."""
    defined = set(ol.invars) | set(ol.consts)
    if len(defined) != len(ol.invars) + len(ol.consts):
        raise ValueError("a Var is both an input and a constant")
    for op in ol.ops:
        for v in op.invars:
            if v not in defined:
                raise ValueError(f"{op.prim.name} reads {v} before it is defined")
        if op.outvar in defined:
            raise ValueError(f"{op.outvar} is defined twice")
        shape, dtype = op.prim.abstract_eval(*[v.aval for v in op.invars], **op.params)
        if tuple(shape) != op.outvar.shape or np.dtype(dtype) != op.outvar.dtype:
            raise ValueError(f"{op.prim.name}: recorded type {op.outvar.aval} but "
                             f"abstract evaluation gives {(shape, dtype)}")
        defined.add(op.outvar)
    for v in list(ol.outvars) + [g.var for g in ol.guards]:
        if v not in defined:
            raise ValueError(f"output {v} is never defined")
