"""Tiers: a kernel starts on an interpreter and is compiled off the caller's thread.

Design notes
------------
* A `Tiered` kernel has one calling convention whatever runs it (the backends' own:
  ``kernel(*inputs) -> outputs + guard values``). Its ``call`` attribute is the current
  implementation; moving up a tier is one attribute assignment, atomic between two calls,
  so a call never sees half a swap and never waits for one.
* Tier 0 is the NumPy interpreter: no Numba import, no compile, results at once. Tier 1
  is a precompiled tape (scalar or vector), usable once the Numba runtime is loaded, which
  happens in the background the first time interpreted calls add up. Tier 2 is the
  generated, compiled Numba kernel. Long programs stop at tier 1: Numba's front end takes
  seconds per hundred array ops, so they never become one giant function.
* Promotion is a ski-rental rule: a kernel is compiled once the time its calls have spent
  on the lower tiers reaches ``config.compile_after`` times its expected compile time. The
  compile runs on one background worker thread; the kernel it makes is called once there
  (Numba compiles at the first call), then swapped in. A kernel whose compiled code is
  already in the disk cache is loaded right away, in the background too.
* ``config.backend`` other than ``"auto"`` pins one backend and builds it synchronously;
  `Tiered.compile_now` does the same for one kernel (``compile="eager"``).
"""
from __future__ import annotations

import atexit
import gc
import itertools
import logging
import os
import queue
import sys
import threading
import time

import numpy as np

from .. import config

log = logging.getLogger("jvpvjp")

TIERS = ("numpy", "tape", "vtape", "rolled", "numba")
_RANK = {"numpy": 0, "tape": 1, "vtape": 1, "rolled": 2, "numba": 2}


# -- the background worker ------------------------------------------------------------------
class _Worker:
    """One daemon thread running jobs by priority (disk loads, runtime, compiles)."""

    def __init__(self):
        self._queue = queue.PriorityQueue()
        self._seq = itertools.count()
        self._thread = None
        self._lock = threading.Lock()
        self.stopping = False
        self.busy = threading.Event()

    def submit(self, priority, fn):
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="jvpvjp-compiler",
                                                daemon=True)
                self._thread.start()
        self._queue.put((priority, next(self._seq), fn))

    def _loop(self):
        while not self.stopping:
            _, _, fn = self._queue.get()
            if self.stopping:
                break
            self.busy.set()
            try:
                fn()
            except Exception:     # a job reports its own failure; never kill the worker
                log.exception("jvpvjp: background job failed")
            finally:
                self.busy.clear()
                self._queue.task_done()

    def drain(self, timeout=None):
        """Wait until every submitted job has run (tests and benchmarks)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def reset_after_fork(self):
        self.__init__()


_worker = _Worker()
atexit.register(lambda: setattr(_worker, "stopping", True))
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_worker.reset_after_fork)


def wait_for_compiles(timeout=None):
    """Block until background compiles and loads submitted so far are done; returns
    whether they finished within ``timeout`` seconds."""
    return _worker.drain(timeout)


# -- the Numba runtime (tier 1 needs it loaded) --------------------------------------------
_runtime = {"state": "cold", "seconds": None}   # cold -> requested -> loading -> ready | failed
_runtime_lock = threading.Lock()
_interpreted = [0.0]     # seconds all kernels spent on the NumPy interpreter


def runtime_ready():
    return _runtime["state"] == "ready"


def load_runtime():
    """Import Numba and load the precompiled tapes (their machine code is cached on disk
    after the first time on a machine). Runs on the worker, or inline when eager."""
    with _runtime_lock:
        if _runtime["state"] in ("ready", "failed"):
            return _runtime["state"] == "ready"
        _runtime["state"] = "loading"
    t0 = time.perf_counter()
    try:
        from . import tape, vector_tape
        tape.warm_up()
        vector_tape.warm_up()
    except Exception as e:      # no usable Numba: stay on the NumPy interpreter
        _runtime["state"] = "failed"
        log.warning("jvpvjp: the Numba runtime could not be loaded (%s: %s); running on the "
                    "NumPy interpreter", type(e).__name__, e)
        return False
    # Importing Numba (and compiling the loops, the first time) leaves a large heap of new
    # objects; the first full collection after it takes ~0.1 s. Run it here, off the
    # caller's path, rather than in whatever traced call happens to trigger it later.
    gc.collect()
    _runtime["seconds"] = time.perf_counter() - t0
    _runtime["state"] = "ready"
    log.debug("jvpvjp: Numba runtime loaded in %.2f s", _runtime["seconds"])
    return True


def _request_runtime():
    with _runtime_lock:
        if _runtime["state"] != "cold":
            return
        _runtime["state"] = "requested"     # (once: not a job per interpreted call)
    _worker.submit(1, load_runtime)


# -- which tiers an op list can use --------------------------------------------------------
def tape_tier(oplists):
    """"tape", "vtape" or None: the precompiled tape all of ``oplists`` run on."""
    from . import tape, vector_tape
    if all(tape.supports(ol) for ol in oplists):
        return "tape"
    if all(vector_tape.supports(ol) and _small_arrays(ol) for ol in oplists):
        return "vtape"
    return None


def _small_arrays(ol):
    """Programs over small arrays: the vector tape's loops beat NumPy's per-call overhead
    there, while big matrix products belong to BLAS."""
    limit = config.vtape_max_elements
    for op in ol.ops:
        if op.outvar.size > limit:
            return False
        if op.prim.name == "matmul" and op.invars[0].size * op.invars[1].shape[-1] > 16 * limit:
            return False
    return True


def _direct(kernel):
    """The cheapest callable with ``kernel``'s results: a compiled Numba kernel that has run
    once is called without its Python wrapper, its scalar outputs converted back to their
    NumPy types and its small array outputs (`numba_backend.Out`) passed in, by a function
    generated for exactly those inputs and outputs (fixed arity, everything it calls bound
    as a local).

    The arrays passed in for the outputs are reused across calls when nothing else holds
    them: each thread keeps its last two sets, and a set is taken again only if each of
    its arrays is referenced by the set alone (``sys.getrefcount``), so a result the caller
    still holds, or a view of it, is never written again. Two sets let the usual loop
    (``g = f(x)``, the previous ``g`` still bound during the call) reuse memory.
    """
    fn = getattr(kernel, "fn", None)
    kind = type(kernel).__name__
    if kind not in ("NumbaKernel", "NumbaJacobianKernel") or fn is None:
        return kernel
    consts = tuple(kernel.consts)
    if getattr(kernel, "scratch", None):   # work arrays, one set per thread
        tail = kernel.tail
        consts = ()
    else:
        tail = None
    conv = dict(kernel._scalar_out)
    outs = list(getattr(kernel, "outs", ()))
    if not conv and not outs:
        if tail is None and not consts:
            return fn
        call = (lambda *a: fn(*a, *tail())) if tail is not None else \
            (lambda *a: fn(*a, *consts))
        locked = _locked_copy(kernel, fn, consts, tail, outs)      # (see below)
        if locked is not None:
            extra = tail if tail is not None else (lambda: consts)

            def fast(*a):
                try:
                    return locked(*a, *extra())
                except Exception:
                    return None
            call.fast = fast
        return call
    if kind != "NumbaKernel":    # a Jacobian's results are not its op list's outputs
        return kernel
    n = len(kernel.oplist.outvars) + len(kernel.oplist.guards)
    params = ", ".join(f"a{i}" for i in range(len(kernel.oplist.invars)))
    ns = {"fn": fn, "tail": tail,
          **({"local": threading.local(), "rc": sys.getrefcount, "empty": np.empty}
             if outs else {}),
          **{f"c{i}": c for i, c in enumerate(consts)},
          **{f"t{i}": t for i, t in conv.items()},
          **{f"S{k}": o[0] for k, o in enumerate(outs)},
          **{f"D{k}": o[1] for k, o in enumerate(outs)}}
    bound = ", ".join(f"{name}={name}" for name in ns if name != "tail" or tail is not None)
    out_at = {o[2]: k for k, o in enumerate(outs)}
    ret_names = [f"r{i}" for i in range(n) if i not in out_at]
    out_names = "".join(f"o{k}, " for k in range(len(outs)))
    call_args = ", ".join([params] * bool(params) + [f"c{i}" for i in range(len(consts))]
                          + ["*tail()"] * (tail is not None) + [out_names[:-2]] * bool(outs))
    items = ", ".join(f"o{out_at[i]}" if i in out_at else f"t{i}(r{i})" if i in conv
                      else f"r{i}" for i in range(n))
    lines = [f"def call({params + ', ' if params else ''}*, {bound}):"]
    if outs:
        def free(i):
            return " and ".join(f"rc(pool[{i}][{k}]) == {_FREE_REFS}"
                                for k in range(len(outs)))
        lines += ["    try:",
                  "        pool = local.pool",
                  "    except AttributeError:",
                  "        pool = local.pool = []",
                  "    n = len(pool)",
                  f"    if n and {free(0)}:",
                  "        outs = pool.pop(0)",
                  f"    elif n > 1 and {free(1)}:",
                  "        outs = pool.pop(1)",
                  "    else:",
                  "        outs = (" + "".join(f"empty(S{k}, D{k}), "
                                             for k in range(len(outs))) + ")",
                  f"    {out_names}= outs"]
    result = f"{', '.join(ret_names)}, = " if ret_names else ""
    after = ["    pool.append(outs)", "    if len(pool) > 2:", "        del pool[0]"] \
        if outs else []
    after.append(f"    return ({items},)")
    exec("\n".join(lines + [f"    {result}fn({call_args})"] + after) + "\n", ns)
    call = ns["call"]
    # the same, through a copy of the dispatcher that holds only the overload for the
    # kernel's own argument types and compiles nothing: other types raise a TypeError (a
    # byte order Numba does not type, its own error), and the call returns None, so
    # callers that found the kernel by shapes alone need not check dtypes, memory layout,
    # byte order or the writeable flag (see dispatch._inline_check); an error of the
    # kernel itself comes again from the general path, which runs it once more
    locked = _locked_copy(kernel, fn, consts, tail, outs)
    if locked is not None:
        ns["fn"] = locked
        exec("\n".join(lines + ["    try:", f"        {result}fn({call_args})",
                                 "    except Exception:", "        return None"] + after)
             + "\n", ns)
        call.fast = ns["call"]
    return call


def _free_refs():
    """What ``sys.getrefcount(pool[i][k])`` gives for an array that only its set (a tuple
    in a list) references, measured with that very expression: interpreters that borrow
    references on their stack count one less, and an array the caller still holds must
    count more, never the same."""
    ns = {"rc": sys.getrefcount}
    exec("def probe(pool, i, k):\n    return rc(pool[i][k])\n", ns)
    return ns["probe"]([(np.empty(1),)], 0, 0)


_FREE_REFS = _free_refs()


def _locked_copy(kernel, fn, consts, tail, outs):
    """A dispatcher with only ``fn``'s overload for ``kernel``'s input types (C-contiguous,
    writeable arrays) and the given trailing arguments, compiling nothing; or None."""
    try:
        from numba import typeof
        from numba.core.registry import CPUDispatcher
        example = [np.empty(v.shape, v.dtype) if v.shape else v.dtype.type(0)
                   for v in kernel.oplist.invars]
        example += list(consts) + (list(tail()) if tail is not None else [])
        example += [np.empty(o[0], o[1]) for o in outs]
        cres = fn.overloads.get(tuple(typeof(x) for x in example))
        if cres is None:
            return None
        copy = CPUDispatcher(fn.py_func, locals={}, targetoptions=dict(fn.targetoptions))
        copy.add_overload(cres)
        copy.disable_compile()
        return copy
    except Exception:           # a Numba without these internals: no fast variant
        return None


def _n_ops(oplists):
    return sum(len(ol.ops) for ol in oplists)


def expected_compile_seconds(n_ops):
    """What a Numba compile of ``n_ops`` ops costs here (measured: about 0.4 s per 100
    array ops through Numba's front end, plus a fixed part)."""
    return config.compile_seconds_fixed + config.compile_seconds_per_op * n_ops


# -- the tiered kernel ---------------------------------------------------------------------
class Tiered:
    """A kernel that moves up the tiers: ``kernel(*inputs)`` always works."""

    __slots__ = ("call", "fast_call", "tier", "label", "history", "calls", "seconds", "_make",
                 "_oplists",
                 "_threshold", "_pending", "_example", "_note", "_done", "_target",
                 "_lock", "_on_disk", "__weakref__")

    def __init__(self, make, oplists, label="kernel", note=None, pinned=None, on_disk=None):
        """``make(backend)`` builds this kernel on a backend; ``oplists`` are the op lists it
        runs (their size and ops decide the tiers); ``note(message)`` records events;
        ``pinned`` names one backend to use instead of ``config.backend``; ``on_disk()``
        (run on the worker) tells whether the compiled kernel is in the disk cache, in which
        case it is loaded after the first call instead of waiting until the kernel is hot."""
        self._make, self._oplists, self.label = make, list(oplists), label
        self._on_disk = on_disk
        self._note = note or (lambda msg: None)
        self.history = []          # (tier, seconds to build, how)
        self.calls, self.seconds = 0, 0.0
        self._pending, self._example, self._done = False, None, threading.Event()
        self._lock = threading.Lock()
        self.call = self.fast_call = self.tier = self._target = None
        backend = pinned or config.backend
        if backend != "auto":                        # pinned: built now, never promoted
            self._build(backend, "pinned", synchronous=True)
            self._target = None
            self._done.set()
            return
        n_ops = _n_ops(self._oplists)
        if on_disk is not None:
            _disk_has_kernels()      # the cache as this process found it, before it wrote
        tape = tape_tier(self._oplists) if runtime_ready() else None
        self._target = self._final_tier(n_ops)
        if self._target in ("tape", "vtape"):    # nothing to compile: the loop is shared
            cost = (0.0 if runtime_ready() else config.compile_seconds_fixed) + 1e-5 * n_ops
        elif self._target == "rolled":           # a loop body or two, whatever the length
            cost = 2 * config.compile_seconds_fixed + 1e-5 * n_ops
        else:
            cost = expected_compile_seconds(n_ops)
        self._threshold = config.compile_after * cost
        if tape is not None:
            self._build(tape, "first call", synchronous=True)
        else:
            self._set("numpy", make("numpy"), 0.0, "first call")
        if self.tier == self._target:
            self._done.set()

    def __call__(self, *args):
        return self.call(*args)

    # -- building and swapping -------------------------------------------------------------
    def _final_tier(self, n_ops):
        if n_ops <= config.compile_max_ops:
            return "numba"
        # long programs: a tape if one runs them (the tape's loop is compiled once; scalar
        # ones with their repeating stretches as compiled loops), else the NumPy
        # interpreter; never one giant Numba function
        from . import tape, vector_tape
        if all(tape.supports(ol) for ol in self._oplists):
            return "rolled"
        if all(vector_tape.supports(ol) for ol in self._oplists):
            return "vtape"
        return "numpy"

    def _set(self, tier, kernel, seconds, how, ran=False):
        self.history.append((tier, seconds, how))
        self.tier = tier
        # ``fast_call``: the kernel for arguments known to have its input shapes only, or
        # None (see `_direct`). Cleared first and set before ``call``: the inline cache
        # reads it first, and either callable computes the same results
        self.fast_call = None
        if _RANK[tier] < 2 and self._target is not None:
            self.call = self._counting(kernel, tier)
        elif ran:
            direct = _direct(kernel)
            self.fast_call = getattr(direct, "fast", None)
            self.call = direct
        elif type(kernel).__name__ != "NumbaKernel":
            self.call = kernel
        else:                       # its wrapper until one call succeeded, then without it
            def first(*args):
                out = kernel(*args)
                if self.call is first:
                    direct = _direct(kernel)
                    self.fast_call = getattr(direct, "fast", None)
                    self.call = direct
                return out
            self.call = first
        if tier != "numpy" or how != "first call":
            self._note(f"{self.label}: now on {tier} ({how}"
                       + (f", {seconds:.2f} s" if seconds else "") + ")")

    def _build(self, tier, how, synchronous, example=None):
        t0 = time.perf_counter()
        kernel = self._make(tier)
        if example is not None:          # Numba compiles at the first call: do it here
            kernel(*example)
        self._set(tier, kernel, time.perf_counter() - t0, how, ran=example is not None)

    def _counting(self, kernel, tier):
        def call(*args):
            t0 = time.perf_counter()
            out = kernel(*args)
            dt = time.perf_counter() - t0
            self.calls += 1
            self.seconds += dt
            if tier == "numpy":
                _interpreted[0] += dt
                if _interpreted[0] >= config.runtime_after:
                    _request_runtime()
                if _worker.busy.is_set():
                    # let the worker have the GIL: a loop of quick calls holds it, and the
                    # worker's imports give it up at every file system call, each time
                    # waiting out the 5 ms switch interval to get it back (the runtime
                    # took minutes to load under a tight loop)
                    time.sleep(0)
            if self.calls == 1 and self._on_disk is not None and self._target == "numba" \
                    and _disk_has_kernels():
                self._promote(args, priority=0, how="found in the disk cache",
                              check=self._on_disk)
            if not self._pending and self._hot() and self._target is not None \
                    and _RANK[self._target] > _RANK[tier]:
                self._promote(args)
            return out
        return call

    def _hot(self):
        return self.calls >= 2 and self.seconds >= self._threshold

    def _why_hot(self):
        return f"hot after {self.calls} calls, {self.seconds:.3f} s"

    def _promote(self, example, priority=2, how=None, check=None):
        with self._lock:
            if self._pending:
                return
            self._pending = True
        self._example = example
        how = how or self._why_hot()

        def job():
            before = self.tier
            self._upgrade(how, check)
            if self.tier != before:
                gc.collect()     # the compile's garbage, now rather than in a later call
        _worker.submit(priority, job)

    def _upgrade(self, how, check=None, eager=False):
        if check is not None:             # only if the disk cache holds it
            try:
                found = check()
            except Exception:
                found = False
            if not found:
                if not self._hot():
                    with self._lock:
                        self._example = None
                        self._pending = False      # promoted again when hot
                    return
                how = self._why_hot()              # it became hot meanwhile
        try:
            target = self._target
            # an eager Numba compile needs no tape: it does not wait for their loops (which
            # a fresh machine compiles first, seconds) and goes straight to its tier
            direct = eager and target == "numba"
            if target in ("tape", "vtape", "rolled", "numba") and not direct \
                    and not load_runtime():
                return
            if target in ("rolled", "numba") and self.tier == "numpy" and not direct:
                # the tape (if it runs this) is ready at once: use it while Numba compiles
                tape = tape_tier(self._oplists)
                if tape is not None:
                    self._build(tape, "runtime loaded", synchronous=False)
            if target is not None and _RANK[target] > _RANK[self.tier]:
                self._build(target, how if eager else f"compiled in the background; {how}",
                            synchronous=False,
                            example=self._example)
        except Exception as e:
            self._note(f"{self.label}: compiling failed ({type(e).__name__}: {e}); staying on "
                       f"{self.tier}")
            self._target = self.tier
        finally:
            self._example = None
            self._done.set()

    def compile_now(self, example):
        """Move to the final tier before returning (``compile="eager"``)."""
        if self._target is None or self.tier == self._target:
            return
        while True:                   # a job in flight: wait for it, unless it gives up
            with self._lock:
                if not self._pending:
                    self._pending = True
                    break
            if self._done.wait(0.005):
                return
        self._example = example
        self._upgrade("compiled eagerly", eager=True)


_disk_state = []


def _disk_has_kernels():
    """Whether the kernel disk cache held any compiled kernel when this process first made
    a tiered kernel (one directory listing per process): only then is a new kernel looked
    up there after its first call. Kernels this process compiles are in memory anyway, and
    a probe costs the caller's thread GIL time (it generates the kernel's source)."""
    if not _disk_state:
        d = os.path.join(config.cache_dir, "kernels") if config.cache_dir else None
        try:
            found = d is not None and any(n.endswith(".ok") for n in os.listdir(d))
        except OSError:
            found = False
        _disk_state.append(found)
    return _disk_state[0]
