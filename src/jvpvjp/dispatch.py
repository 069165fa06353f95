"""The call path: one dispatcher per function and transform, and the checks that keep its
cache right.

Design notes
------------
* Every transformed function (``grad(f)``, ``jvp``, ``vjp``, ``jacfwd``, ``jit``, ``vmap``
  ...) is a thin wrapper around a `Dispatcher`, found in one process-wide table by the
  function's identity and the transform with its parameters. The identity is the code
  object, the globals, the closure *cells* and the defaults, not the function object: a
  lambda written inline (``grad(lambda x: ...)(x)`` in a loop) is a new object each time
  but has the same code and cells, so it reuses the traced and compiled paths.
* `Dispatcher.lookup` and `Dispatcher.new_path` are the one place that does "look up, else
  trace, transform, compile, store". A signature (argument structure, shapes, dtypes,
  static values, backend) maps to paths, newest last. A path is valid while the values the
  function reads from its environment are unchanged and its guards hold.
* The environment of a function is what it names in its globals, its closure cells and
  defaults, and the same for the user functions it reaches that way, one level into
  containers and objects. Each value is recorded by identity (rebinding retraces) and each
  array also by content (``config.env_check = "content"``): a trace bakes in arrays it did
  not get as arguments, and their values reach it through derived arrays (``W.T``,
  ``W * 2``) and Python control flow that no identity check sees. Snapshots are taken
  before and after tracing; a function that changes its own environment while it runs is
  traced again on every call, since no cached program reproduces that.
"""
from __future__ import annotations

import collections
import functools
import logging
import os
import sys
import sysconfig
import threading
import time
import types
import weakref

import numpy as np

from . import config
from .oplist import gc_paused
from .pytree import tree_flatten, tree_unflatten
from .tracing import Builder, Tracer, tracing_active

log = logging.getLogger("jvpvjp")
_STATIC = (bool, int, str, bytes, type(None))


# -- arguments --------------------------------------------------------------------------------
def _leaf_value(leaf):
    """A dynamic leaf as an array (or tracer), or None when the leaf is a static value."""
    if isinstance(leaf, np.ndarray):
        if leaf.dtype.kind not in "fiubc":
            raise TypeError(f"arrays of dtype {leaf.dtype} are not supported")
        if not leaf.dtype.isnative:        # the other byte order: the same values, native
            return leaf.astype(leaf.dtype.newbyteorder("="))
        return leaf if leaf.flags.c_contiguous else np.ascontiguousarray(leaf)
    if isinstance(leaf, Tracer):
        return leaf
    if isinstance(leaf, float):
        return np.asarray(leaf, np.float64)
    if isinstance(leaf, np.generic):
        return np.asarray(leaf)
    if isinstance(leaf, _STATIC):
        return None
    if isinstance(leaf, complex):
        return np.asarray(leaf, np.complex128)
    if hasattr(leaf, "__array__") and not callable(leaf):
        return np.ascontiguousarray(leaf)
    try:
        hash(leaf)
    except TypeError:
        raise TypeError(f"argument leaf of type {type(leaf).__name__} is neither an array nor "
                        f"a hashable static value") from None
    return None


def _float_check(value, where):
    dt = value.dtype
    if dt.kind not in "fc":
        raise TypeError(f"{where} has dtype {dt}; differentiation needs real floating-point "
                        f"inputs (use x.astype(float))")


class Args:
    """Flattened arguments: dynamic leaves (arrays) and the cache key."""

    __slots__ = ("trees", "leaves", "dyn", "dyn_idx", "key", "nested", "arg_slices", "diff")

    def __init__(self, args, kwargs, diff_argnums, fname):
        trees, leaves, slices = [], [], []
        for a in args:
            lv, tr = tree_flatten(a)
            slices.append((len(leaves), len(leaves) + len(lv)))
            leaves.extend(lv)
            trees.append(tr)
        kw_leaves, kw_tree = tree_flatten(kwargs)
        leaves.extend(kw_leaves)
        trees.append(kw_tree)
        self.trees, self.leaves, self.arg_slices = trees, leaves, slices
        dyn, dyn_idx, sig = [], [], []
        nested = False
        diff_leaf = set()
        for i in diff_argnums:
            lo, hi = slices[i]
            diff_leaf.update(range(lo, hi))
        for i, leaf in enumerate(leaves):
            v = _leaf_value(leaf)
            if v is None:
                if i in diff_leaf:
                    raise TypeError(
                        f"{fname}: argument {_argnum_of(i, slices)} holds a {type(leaf).__name__}"
                        f" ({leaf!r}); differentiation needs real floating-point arrays or "
                        f"floats")
                sig.append(("static", type(leaf), leaf))
                continue
            if i in diff_leaf and v.dtype.kind not in "fc":
                _float_check(v, f"{fname}: argument {_argnum_of(i, slices)}")
            nested = nested or isinstance(v, Tracer)
            dyn.append(v)
            dyn_idx.append(i)
            sig.append((v.shape, v.dtype.char, i in diff_leaf))
        self.diff = [i in diff_leaf for i in dyn_idx]     # per dynamic leaf
        # Inside another trace, derivative programs are inlined rather than compiled.
        self.dyn, self.dyn_idx = dyn, dyn_idx
        self.nested = nested or tracing_active()
        self.key = (config.backend, tuple(trees), tuple(sig))

    def kernel_inputs(self):
        return [x[()] if x.ndim == 0 else x for x in self.dyn]

    def per_argument(self, nums, flat):
        """Split values for the dynamic leaves of arguments ``nums`` (given in leaf order,
        as derivative programs produce them) into one pytree per entry of ``nums``, in the
        order of ``nums``."""
        wanted = set()
        for n in nums:
            lo, hi = self.arg_slices[n]
            wanted.update(range(lo, hi))
        value_of = dict(zip([i for i in self.dyn_idx if i in wanted], flat))
        out = []
        for n in nums:
            lo, hi = self.arg_slices[n]
            out.append(tree_unflatten(self.trees[n], [value_of[i] for i in self.dyn_idx
                                                      if lo <= i < hi]))
        return tuple(out)

    def rebuild(self, dyn_values):
        leaves = list(self.leaves)
        for i, v in zip(self.dyn_idx, dyn_values):
            leaves[i] = v
        args = []
        for (lo, hi), tr in zip(self.arg_slices, self.trees):
            args.append(tree_unflatten(tr, leaves[lo:hi]))
        kwargs = tree_unflatten(self.trees[-1], leaves[self.arg_slices[-1][1] if
                                                       self.arg_slices else 0:])
        return args, kwargs


def _argnum_of(leaf_index, slices):
    for n, (lo, hi) in enumerate(slices):
        if lo <= leaf_index < hi:
            return n
    return "(keyword)"


def _as_output(x, what):
    if isinstance(x, Tracer):
        x.check_fresh()
        return x
    if isinstance(x, (np.ndarray, np.generic, float, int, bool)):
        return x
    raise TypeError(f"{what} must be a pytree of arrays or numbers, found a "
                    f"{type(x).__name__}")


class Trace:
    """The result of tracing a function once on concrete arguments."""

    @gc_paused
    def __init__(self, fun, args, has_aux, fname):
        with Builder(concrete=True) as b, np.errstate(all="ignore"):
            inputs = [b.new_input(value=(v.value if isinstance(v, Tracer) else v))
                      for v in args.dyn]
            for t, v, d in zip(inputs, args.dyn, args.diff):
                # differentiated here, or a value an outer trace differentiates
                if d or (isinstance(v, Tracer) and v.builder.depends_on_diff(v.node)):
                    b.diff_vars.add(t.node)
            if any(isinstance(v, Tracer) and v.value is None for v in args.dyn):
                raise NotImplementedError(f"{fname} inside an abstract derivative program")
            a, kw = args.rebuild(inputs)
            out = fun(*a, **kw)
            if has_aux:
                if not (isinstance(out, (tuple, list)) and len(out) == 2):
                    raise TypeError(f"{fname}: has_aux=True needs the function to return a "
                                    f"pair (output, aux), got {type(out).__name__}")
                out, aux = out
            else:
                aux = None
            out_leaves, self.out_tree = tree_flatten(out)
            aux_leaves, self.aux_tree = tree_flatten(aux)
            out_leaves = [_as_output(x, "the function's output") for x in out_leaves]
            aux_leaves = [_as_output(x, "aux output") for x in aux_leaves]
            self.n_out, self.n_aux = len(out_leaves), len(aux_leaves)
            self.out_avals = [(np.shape(x), _dtype(x)) for x in out_leaves]
            self.oplist = b.finish(out_leaves + aux_leaves)
            self.captured = [t for t, _ in b.captured]


def _dtype(x):
    return x.dtype if isinstance(x, (Tracer, np.ndarray, np.generic)) else np.asarray(x).dtype


def unflatten_outputs(trace, values):
    if trace.out_tree == "*" and trace.aux_tree is None:    # one leaf, no aux
        return values[0], None
    out = tree_unflatten(trace.out_tree, values[:trace.n_out])
    aux = tree_unflatten(trace.aux_tree, values[trace.n_out:trace.n_out + trace.n_aux])
    return out, aux


_FAST_SCALARS = frozenset([float, np.float64, np.float32])


def fast_signature(args):
    """A key for plain positional arguments (arrays, floats), or None.

    Arrays enter by shape, strides and dtype: a C-contiguous array's strides follow from
    its shape, so a non-contiguous array never matches the key of a contiguous one and no
    flags need reading. The backend is not part of it: each backend has its own fast table.
    Only a call that went through the general path registers its key (`Dispatcher.add_fast`,
    for contiguous arrays only), so a key found here has passed that path's argument
    checks."""
    types_ = tuple(map(type, args))
    if np.ndarray not in types_:
        return types_ if _FAST_SCALARS.issuperset(types_) else None
    sig = []
    for x in args:
        t = type(x)
        if t is np.ndarray:
            if not x.dtype.isnative:          # converted by the general path (_leaf_value)
                return None
            sig.append((x.shape, x.strides, x.dtype))
        elif t in _FAST_SCALARS:
            sig.append(t)
        else:
            return None
    return tuple(sig)


class FastTable(dict):
    """One backend's fast table: {fast signature: replayer}, and an inline cache in front
    of it (as CPython's specialising interpreter keeps one per call site): a function
    generated for the last signature served, which compares each argument's type, shape,
    strides and dtype in place, without building and hashing a signature (about 2 us for
    six arrays), and runs the replayer's work in the same function."""

    def __init__(self):
        super().__init__()
        self.last = None         # args -> (path, results) or None
        self.checks = {}         # signature -> its generated function

    def remember(self, sig, replay):
        check = self.checks.get(sig)
        if check is None:
            check = self.checks[sig] = _inline_check(sig, replay)
        self.last = check


def _inline_check(sig, replay):
    """``check(args) -> replay(args)`` if ``args`` has fast signature ``sig``, else None;
    the replay inlined when it is one of `Dispatcher._replayer`'s single-path kinds (its
    ``inline`` attribute: the kernel, its extra arguments, the environment check). While
    the kernel has a ``fast_call`` (a compiled kernel that itself refuses other dtypes,
    memory layouts, byte orders and read-only arrays), arrays are checked for their type
    and shape only."""
    n = len(sig)
    names = [f"a{i}" for i in range(n)]
    tests, light, env = [], [], {"replay": replay, "ndarray": np.ndarray}
    for i, s in enumerate(sig):
        if isinstance(s, tuple):              # (shape, strides, dtype) of an array
            env[f"S{i}"], env[f"T{i}"], env[f"D{i}"] = s
            light.append(f"type(a{i}) is ndarray and a{i}.shape == S{i}")
            tests.append(f"{light[-1]} and a{i}.strides == T{i} and a{i}.dtype is D{i}")
        else:                                 # a scalar's type
            env[f"K{i}"] = s
            light.append(f"type(a{i}) is K{i}")
            tests.append(light[-1])
    unpack = f"    {', '.join(names)}{',' if n == 1 else ''} = args\n" if n else ""
    inline = getattr(replay, "inline", None)
    if inline is None:
        body = (f"    if {' and '.join(tests) if tests else 'True'}:\n"
                f"        return replay(args)\n")
    else:
        kernel, extra, same, path, stats = inline
        env.update(kernel=kernel, path=path, stats=stats, same=same)
        env.update({f"e{i}": e for i, e in enumerate(extra)})
        call = ", ".join(names + [f"e{i}" for i in range(len(extra))])
        checked = (f"        if not same():\n"
                   f"            return None\n") if same is not None else ""
        count = "        path.calls += 1\n" if same is not None else ""
        body = (f"    fast = kernel.fast_call\n"
                f"    if fast is not None:\n"
                f"        if not ({' and '.join(light) if light else 'True'}):\n"
                f"            return None\n{checked}"
                f"        results = fast({call})\n"
                f"        if results is None:\n"
                f"            return None\n{count}"
                f"        stats['calls'] += 1\n"
                f"        return path, results\n"
                f"    if {' and '.join(tests) if tests else 'True'}:\n{checked}{count}"
                f"        stats['calls'] += 1\n"
                f"        return path, kernel.call({call})\n")
    src = (f"def check(args):\n"
           f"    if len(args) != {n}:\n"
           f"        return None\n{unpack}{body}"
           f"    return None\n")
    exec(src, env)
    return env["check"]


def fast_hit(table, args):
    """``(path, results)`` for ``args`` from ``table`` (one backend's `FastTable`), or None:
    the inline cache first, then the table's lookup, cheaper for scalar arguments (whose
    key is their types tuple) than building the arrays' signature."""
    last = table.last
    if last is not None:
        hit = last(args)
        if hit is not None:
            return hit
    n = len(args)          # (tuple(map(type, args)) costs more than the kernel call)
    if n == 1:
        types_ = (type(args[0]),)
    elif n == 2:
        a, b = args
        types_ = (type(a), type(b))
    elif n == 3:
        a, b, c = args
        types_ = (type(a), type(b), type(c))
    else:
        types_ = tuple(map(type, args))
    replay = table.get(types_)
    if replay is None and np.ndarray in types_:
        sig = fast_signature(args)
        if sig is not None:
            replay = table.get(sig)
            if replay is not None:
                table.remember(sig, replay)
    return None if replay is None else replay(args)


def _contiguous(args):
    return all(x.flags.c_contiguous for x in args if type(x) is np.ndarray)


def normalize_argnums(argnums, nargs, fname):
    single = isinstance(argnums, int)
    nums = (argnums,) if single else tuple(argnums)
    for n in nums:
        if not isinstance(n, int) or not -nargs <= n < nargs:
            raise ValueError(f"{fname}: argnums {argnums!r} out of range for {nargs} "
                             f"positional argument(s)")
    return single, tuple(n % nargs for n in nums)


# -- the function's identity ------------------------------------------------------------------
class _Id:
    """Hashes and compares by identity (holding the object, so its id is never reused)."""

    __slots__ = ("obj",)

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return type(other) is _Id and other.obj is self.obj


_VALUE_TYPES = frozenset([int, float, complex, str, bytes, bool, type(None)])


def _value_key(x, depth=0):
    t = type(x)
    if t in _VALUE_TYPES:
        return (t, x)
    if t is tuple and depth < 4:
        return ("tuple",) + tuple(_value_key(e, depth + 1) for e in x)
    if callable(x) and depth < 4:
        return function_key(x, depth + 1)
    return _Id(x)


def function_key(fun, depth=0):
    """What makes two callables the same function for the cache (see the module notes)."""
    t = type(fun)
    if t is types.FunctionType:
        cells = tuple(_Id(c) for c in fun.__closure__) if fun.__closure__ else ()
        kw = fun.__kwdefaults__
        return ("fn", fun.__code__, _Id(fun.__globals__), _value_key(fun.__defaults__, depth),
                tuple(sorted((k, _value_key(v, depth)) for k, v in kw.items())) if kw else (),
                cells)
    if t is types.MethodType:
        return ("method", function_key(fun.__func__, depth), _Id(fun.__self__))
    if t is functools.partial:
        return ("partial", function_key(fun.func, depth), _value_key(fun.args, depth),
                tuple(sorted((k, _value_key(v, depth)) for k, v in fun.keywords.items())))
    key = getattr(fun, "_jvpvjp_key", None)      # a transformed function: its dispatcher
    if key is not None:
        return key
    return _Id(fun)


_table = collections.OrderedDict()
_table_lock = threading.Lock()
TABLE_SIZE = 1024


def dispatcher_for(fun, transform, fname):
    """The dispatcher shared by every wrapper of ``fun`` under ``transform`` (a hashable
    tuple: the transform's name and parameters)."""
    try:
        d = _by_object[fun][transform]    # the same function object: no key to compute
        if d is not None:
            return d
    except (KeyError, TypeError):
        pass
    if tracing_active():      # created inside a trace: it may close over tracers
        return Dispatcher(fun, fname)
    try:
        key = (transform, function_key(fun))
        hash(key)
    except TypeError:
        return Dispatcher(fun, fname)
    with _table_lock:
        d = _table.get(key)
        if d is None:
            d = _table[key] = Dispatcher(fun, fname)
            d.key = key
            if len(_table) > TABLE_SIZE:
                _table.popitem(last=False)
        else:
            _table.move_to_end(key)
    try:
        _by_object.setdefault(fun, {})[transform] = d
    except TypeError:      # not weak-referenceable
        pass
    return d


_by_object = weakref.WeakKeyDictionary()


def clear_caches():
    """Forget every traced path in this process (the disk cache stays)."""
    with _table_lock:
        _table.clear()
        _by_object.clear()


# -- the environment ------------------------------------------------------------------------
def _library_dirs():
    dirs = {os.path.dirname(os.path.abspath(np.__file__)),
            os.path.dirname(os.path.abspath(__file__))}
    paths = sysconfig.get_paths()
    for k in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(k):
            dirs.add(os.path.abspath(paths[k]))
    return tuple(sorted(dirs))


_LIBRARY_DIRS = _library_dirs()
_library_file = {}
_names_of_code = {}
_MISSING = object()
_MAX_ITEMS = 64


def _is_library(filename):
    r = _library_file.get(filename)
    if r is None:      # (a module imported through a path with "..": its file unnormalised)
        r = _library_file[filename] = (filename.startswith("<frozen") or (
            not filename.startswith("<")
            and os.path.abspath(filename).startswith(_LIBRARY_DIRS)))
    return r


def _global_names(code):
    names = _names_of_code.get(code)
    if names is None:
        found = set(code.co_names)
        for c in code.co_consts:
            if isinstance(c, types.CodeType):
                found.update(_global_names(c))
        names = _names_of_code[code] = tuple(sorted(found))
    return names


class Environment:
    """Values a function reads besides its arguments, as they were when it was traced."""

    __slots__ = ("refs", "arrays")

    def __init__(self):
        self.refs = []      # (kind, holder, key, value, label)
        self.arrays = []    # (array, bytes, label)

    def __bool__(self):
        return bool(self.refs or self.arrays)

    def quick_check(self):
        """A function of no arguments, true while every recorded reference is the same
        object and every recorded array has its length (a generated conjunction, about a
        third of `changed`'s cost); arrays' contents are compared by `changed` itself, so
        the function calls it when there are arrays."""
        tests, env = [], {"MISSING": _MISSING, "changed": self.changed}
        for i, (kind, holder, key, value, label) in enumerate(self.refs):
            env[f"h{i}"], env[f"k{i}"], env[f"v{i}"] = holder, key, value
            tests.append({"global": f"h{i}.get(k{i}, MISSING) is v{i}",
                          "cell": f"h{i}.cell_contents is v{i}",
                          "attr": f"getattr(h{i}, k{i}, MISSING) is v{i}",
                          "item": f"h{i}[k{i}] is v{i}",
                          "len": f"len(h{i}) == v{i}"}[kind])
        if self.arrays:
            tests.append("changed() is None")
        src = (f"def same():\n"
               f"    try:\n"
               f"        return {' and '.join(tests) or 'True'}\n"
               f"    except (ValueError, IndexError, KeyError):\n"   # an emptied cell, a
               f"        return False\n")                             # removed item
        exec(src, env)
        return env["same"]

    def changed(self):
        """None while every recorded value is the same; else what changed."""
        for kind, holder, key, value, label in self.refs:
            if kind == "global":
                now = holder.get(key, _MISSING)
            elif kind == "cell":
                try:
                    now = holder.cell_contents
                except ValueError:
                    now = _MISSING
            elif kind == "attr":
                now = getattr(holder, key, _MISSING)
            elif kind == "item":
                try:
                    now = holder[key]
                except (IndexError, KeyError):
                    now = _MISSING
            else:                                   # "len": a container's length
                now = len(holder)
                if now != value:
                    return f"{label} changed length"
                continue
            if now is not value:
                return f"{label} was rebound"
        for arr, data, label in self.arrays:
            if not _same_bytes(arr, data):
                return f"{label} was changed in place"
        return None

    def same_as(self, other):
        return [(k, id(h), key, id(v)) for k, h, key, v, _ in self.refs] == \
            [(k, id(h), key, id(v)) for k, h, key, v, _ in other.refs] and \
            all(a is b and d == e for (a, d, _), (b, e, _) in zip(self.arrays, other.arrays))


def capture_environment(fun):
    """The `Environment` of ``fun`` (see the module notes); None when it reads nothing."""
    env = Environment()
    _scan_callable(fun, env, set(), 0)
    return env if env else None


def _scan_callable(f, env, seen, depth):
    if depth > 8 or id(f) in seen:
        return
    seen.add(id(f))
    t = type(f)
    if t is types.MethodType:
        _scan_value(f.__self__, "self", env, seen, depth + 1, top=True)
        _scan_callable(f.__func__, env, seen, depth + 1)
        return
    if t is functools.partial:
        _scan_callable(f.func, env, seen, depth + 1)
        for i, a in enumerate(f.args):
            _scan_value(a, f"argument {i} of a partial", env, seen, depth + 1)
        return
    if t is not types.FunctionType:
        inner = getattr(f, "__wrapped__", None)
        if inner is not None:
            _scan_callable(inner, env, seen, depth + 1)
        return
    code = f.__code__
    if _is_library(code.co_filename):
        # a library's wrapper of a user function (jvpvjp's own transforms, decorators
        # using functools.wraps): what the user function reads (jit(grad(f)) bakes in
        # what f reads from its globals)
        inner = getattr(f, "__wrapped__", None)
        if inner is not None:
            _scan_callable(inner, env, seen, depth + 1)
        return
    g = f.__globals__
    for name in _global_names(code):
        value = g.get(name, _MISSING)
        if value is _MISSING or isinstance(value, types.ModuleType):
            continue
        label = f"global {name!r} of {f.__qualname__}"
        env.refs.append(("global", g, name, value, label))
        _scan_value(value, label, env, seen, depth + 1, top=True)
    if f.__closure__:
        for name, cell in zip(code.co_freevars, f.__closure__):
            try:
                value = cell.cell_contents
            except ValueError:
                value = _MISSING
            label = f"closure variable {name!r} of {f.__qualname__}"
            env.refs.append(("cell", cell, None, value, label))
            if value is not _MISSING:
                _scan_value(value, label, env, seen, depth + 1, top=True)
    for i, value in enumerate(f.__defaults__ or ()):
        _scan_value(value, f"default {i} of {f.__qualname__}", env, seen, depth + 1)
    for name, value in (f.__kwdefaults__ or {}).items():
        _scan_value(value, f"default {name!r} of {f.__qualname__}", env, seen, depth + 1)


_MEMCMP_MIN = 1 << 16


@functools.lru_cache(maxsize=None)
def _memcmp():
    """The C library's memcmp, loaded on first use (ctypes costs a first call 2.6 ms), or
    None where it cannot be had."""
    try:
        import ctypes
        fn = ctypes.CDLL(None).memcmp
        fn.restype = ctypes.c_int
        fn.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        return fn
    except (OSError, AttributeError, TypeError):
        return None


def _same_bytes(arr, data):
    """Whether array ``arr`` still holds ``data`` (its bytes when it was traced). Large
    contiguous arrays are compared in place by the C library's memcmp (no copy: about half
    the time of ``tobytes`` for 1 MB, and no fresh pages to fault in)."""
    n = len(data)
    if n >= _MEMCMP_MIN and arr.nbytes == n and arr.flags.c_contiguous:
        memcmp = _memcmp()
        if memcmp is not None:
            return memcmp(arr.__array_interface__["data"][0], data, n) == 0
    return arr.tobytes() == data


def _scan_value(value, label, env, seen, depth, top=False):
    if isinstance(value, np.ndarray):
        if config.env_check == "content":
            env.arrays.append((value, value.tobytes(), label))
        return
    if isinstance(value, Tracer) or type(value) in _VALUE_TYPES or \
            isinstance(value, (np.generic, type, types.ModuleType, types.BuiltinFunctionType)):
        return
    if callable(value) and isinstance(value, (types.FunctionType, types.MethodType,
                                              functools.partial)):
        _scan_callable(value, env, seen, depth)
        return
    if not top:
        return
    if isinstance(value, (list, dict)):
        env.refs.append(("len", value, None, len(value), label))
    if isinstance(value, (list, tuple)):
        items = list(enumerate(value[:_MAX_ITEMS]))
    elif isinstance(value, dict):
        items = list(value.items())[:_MAX_ITEMS]
    else:
        attrs = getattr(value, "__dict__", None)
        if not isinstance(attrs, dict) or _is_library(getattr(
                sys.modules.get(type(value).__module__), "__file__", None) or "<frozen"):
            return
        for name, v in list(attrs.items())[:_MAX_ITEMS]:
            sub = f"{label}.{name}"
            env.refs.append(("attr", value, name, v, sub))
            _scan_value(v, sub, env, seen, depth + 1)
        call = getattr(type(value), "__call__", None)
        if isinstance(call, types.FunctionType):
            _scan_callable(call, env, seen, depth + 1)
        return
    for k, v in items:
        sub = f"{label}[{k!r}]"
        if isinstance(value, list) or isinstance(value, dict):
            env.refs.append(("item", value, k, v, sub))
        _scan_value(v, sub, env, seen, depth + 1)


# -- paths and the dispatcher ---------------------------------------------------------------
class Path:
    """One traced path: its kernels (tiered), guards and environment."""

    __slots__ = ("trace", "kernels", "guards", "guard_info", "extra", "n_fixed", "env",
                 "volatile", "unpack", "calls", "reason")

    def __init__(self, trace, kernels, n_fixed, extra=()):
        self.trace, self.kernels, self.n_fixed = trace, kernels, n_fixed
        self.extra = tuple(extra)     # trailing kernel arguments (the seed cotangent of grad)
        self.guards = [g.value for g in trace.oplist.guards]
        self.guard_info = [(g.kind, g.where) for g in trace.oplist.guards]
        self.env = None
        self.volatile = False     # the function changes its environment: never replayed
        self.unpack = None
        self.calls = 0
        self.reason = ""

    def run(self, inputs):
        return self.kernels[0].call(*inputs, *self.extra)

    def guards_hold(self, results):
        for expected, got in zip(self.guards, results[self.n_fixed:]):
            if expected.ndim == 0:
                if got != expected:
                    return False
            elif not np.array_equal(got, expected):
                return False
        return True

    def flipped_guard(self, results):
        for (kind, where), expected, got in zip(self.guard_info, self.guards,
                                                results[self.n_fixed:]):
            if not np.array_equal(got, expected):
                return f"a guard flipped ({kind} at {where or 'an unknown line'})"
        return "a guard flipped"

    def compile_now(self, inputs):
        for k in self.kernels:
            k.compile_now(tuple(inputs) + self.extra if k is self.kernels[0] else None)


class Dispatcher:
    """The traced paths of one function under one transform, by argument signature."""

    def __init__(self, fun, fname):
        self.fun, self.fname, self.key = fun, fname, None
        self.paths = {}     # signature -> [Path], newest last
        self.fast = {}      # backend -> {fast signature of plain positional arrays: entry}
        self.stats = {"calls": 0, "traces": 0, "compiles": 0, "guard_misses": 0}
        self.events = collections.deque(maxlen=200)
        self.lock = threading.Lock()
        self.t0 = time.perf_counter()

    def note(self, message):
        self.events.append((time.perf_counter() - self.t0, message))
        if log.isEnabledFor(logging.DEBUG):
            log.debug("jvpvjp: %s: %s", self.fname, message)

    def lookup(self, key, inputs):
        """(path, results, None) for the newest valid path, else (None, None, why not)."""
        paths = self.paths.get(key)
        if not paths:
            return None, None, "first call" if not self.paths else "new argument signature"
        reason = None
        for path in reversed(paths):
            if path.volatile:
                reason = reason or "the function changes its globals or closure while it runs"
                continue
            if path.env is not None:
                changed = path.env.changed()
                if changed:
                    reason = reason or changed
                    continue
            results = path.run(inputs)
            if not path.guards or path.guards_hold(results):
                path.calls += 1
                return path, results, None
            reason = reason or path.flipped_guard(results)
        self.stats["guard_misses"] += 1
        return None, None, reason

    @gc_paused
    def new_path(self, args, has_aux, build, reason):
        """Trace on ``args``, let ``build(trace) -> Path`` make the transform's kernels, and
        store the path under the arguments' signature."""
        t0 = time.perf_counter()
        before = capture_environment(self.fun)
        trace = Trace(self.fun, args, has_aux, self.fname)
        path = build(trace)
        path.env = capture_environment(self.fun)
        if (before is None) != (path.env is None) or (before is not None and
                                                      not before.same_as(path.env)):
            path.volatile = True
            self.note("the function changed its environment while it ran: it is traced "
                      "again on every call")
        path.reason = reason
        path.calls = 1
        self.stats["traces"] += 1
        self.stats["compiles"] += len(path.kernels)
        with self.lock:
            paths = self.paths.setdefault(args.key, [])
            paths.append(path)
            if len(paths) > config.max_paths:
                del paths[0]
        n_ops = len(trace.oplist.ops)
        self.note(f"traced ({reason}): {n_ops} ops, {len(trace.oplist.guards)} guards, "
                  f"{(time.perf_counter() - t0) * 1e3:.1f} ms with its transform")
        return path

    def add_fast(self, sig, key, args):
        """Serve calls with fast signature ``sig`` (of ``args``) from the paths of ``key``."""
        if sig is not None and _contiguous(args):
            has_0d = any(type(x) is np.ndarray and x.ndim == 0 for x in args)
            table = self.fast.get(key[0])
            if table is None:
                table = self.fast[key[0]] = FastTable()
            table[sig] = self._replayer(self.paths[key], has_0d)
            table.checks.pop(sig, None)     # a check bound to a replaced replayer
            table.last = None

    def _replayer(self, paths, has_0d):
        """``replay(args) -> (path, results) or None`` for one fast signature."""
        stats = self.stats
        if len(paths) == 1 and not has_0d:
            path = paths[0]
            if not path.guards and path.env is None and not path.volatile:
                # one path that nothing can invalidate: no loop, no checks
                kernel, extra = path.kernels[0], path.extra

                if not extra:
                    def replay_one(args):
                        stats["calls"] += 1
                        return path, kernel.call(*args)
                else:
                    def replay_one(args):
                        stats["calls"] += 1
                        return path, kernel.call(*args, *extra)
                replay_one.inline = (kernel, extra, None, path, stats)
                return replay_one
            if not path.guards and not path.volatile:
                # one path whose globals and closure are checked: that check, the call
                changed, kernel, extra = path.env.changed, path.kernels[0], path.extra

                def replay_checked(args):
                    if changed() is not None:
                        return None
                    stats["calls"] += 1
                    path.calls += 1
                    return path, kernel.call(*args, *extra)   # (.call changes with the tier)
                replay_checked.inline = (kernel, extra, path.env.quick_check(), path, stats)
                return replay_checked

        def replay(call_args):
            if has_0d:
                call_args = [x[()] if type(x) is np.ndarray and x.ndim == 0 else x
                             for x in call_args]
            for path in reversed(paths):
                if path.volatile or (path.env is not None and path.env.changed()):
                    break
                results = path.kernels[0].call(*call_args, *path.extra)
                if not path.guards or path.guards_hold(results):
                    stats["calls"] += 1
                    path.calls += 1
                    return path, results
            return None
        return replay

    def replay_fast(self, sig, call_args):
        """Replay a cached path for plain positional arrays: (path, results) or None."""
        table = self.fast.get(config.backend)
        replay = table.get(sig) if table is not None else None
        return None if replay is None else replay(call_args)

    def replay_args(self, args):
        """`replay_fast` for ``args`` themselves (the signature computed here)."""
        table = self.fast.get(config.backend)
        return None if table is None else fast_hit(table, args)

    def info(self):
        return dict(self.stats, signatures=len(self.paths),
                    paths=sum(len(p) for p in self.paths.values()))

    def explain(self):
        lines = [f"{self.fname}: {self.stats['calls']} calls, {self.stats['traces']} traces, "
                 f"{len(self.paths)} argument signatures"]
        for key, paths in self.paths.items():
            sig = ", ".join(_fmt_sig(s) for s in key[2])
            lines.append(f"  signature ({sig}) [backend {key[0]}]:")
            for i, p in enumerate(paths):
                lines.append(f"    path {i + 1}: traced because {p.reason}; {p.calls} calls; "
                             f"{len(p.trace.oplist.ops)} ops, {len(p.guards)} guards"
                             + ("; retraced on every call (changes its environment)"
                                if p.volatile else ""))
                for k in p.kernels:
                    steps = " -> ".join(f"{t} ({how}{f', {s:.2f} s' if s else ''})"
                                        for t, s, how in k.history)
                    lines.append(f"      {k.label}: {steps}; now {k.tier}, "
                                 f"{k.calls} interpreted calls ({k.seconds:.4f} s)")
        if self.events:
            lines.append("  events:")
            lines.extend(f"    {t:8.3f} s  {m}" for t, m in self.events)
        return "\n".join(lines)


def _fmt_sig(s):
    if s and s[0] == "static":
        return repr(s[2])
    shape, char, diff = s
    return f"{np.dtype(char).name}[{','.join(map(str, shape))}]" + ("" if diff else " (static)")


def explain_cache(fun):
    """Describe the cache of a transformed function: per argument signature and path, why it
    was traced, which tier each kernel runs on and how it got there (first call, compiled in
    the background after N calls, loaded from the disk cache, and the seconds it took), and
    the recent events (retraces because a guard flipped or a global was rebound). The same
    events go to the ``jvpvjp`` logger at DEBUG level.

    >>> import numpy as np
    >>> from jvpvjp import grad
    >>> g = grad(lambda x: np.sum(x ** 2))
    >>> _ = g(np.ones(3))
    >>> print(explain_cache(g).splitlines()[0])      # doctest: +ELLIPSIS
    value_and_grad(<lambda>): 1 calls, 1 traces, 1 argument signatures
    """
    d = getattr(fun, "_dispatcher", None)
    if d is None:
        raise TypeError("explain_cache takes a function returned by a jvpvjp transform "
                        "(grad, value_and_grad, jacfwd, jacrev, hessian, jit, vmap)")
    return d().explain()
