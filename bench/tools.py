"""How each tool computes a workload's primal and derivative, as zero-argument callables.

Each builder returns ``{metric: (call, normalize)}``: ``call()`` runs the tool once on
arguments converted beforehand (the conversion is not timed); ``normalize(call())`` turns
its result into NumPy values for the equality check. Metrics: ``primal`` and ``vg``
(value_and_grad) for scalar workloads; ``primal``, ``jacfwd``, ``jacrev`` and ``jac`` (a
closed form) for the Jacobian workload.
"""
from __future__ import annotations

import importlib

import numpy as np

import jvpvjp

PEERS = ("jax", "torch", "autograd")
INSTALL = "pip install .[bench]"


class Skip(Exception):
    """The tool does not run this case; the message says why."""


def load_peers(wanted, threads):
    """Import the peers that are installed. Returns (modules, notes): a missing peer gets
    a note, never an error."""
    from .threads import configure_torch
    mods, notes = {}, {}
    for name in PEERS:
        if name not in wanted:
            notes[name] = "not requested (--peers)"
            continue
        try:
            if name == "jax":
                jax = importlib.import_module("jax")
                jax.config.update("jax_enable_x64", True)
                for sub in ("jax.numpy", "jax.scipy.special"):
                    importlib.import_module(sub)
                mods[name] = jax
            elif name == "torch":
                torch = importlib.import_module("torch")
                importlib.import_module("torch.func")
                configure_torch(torch, threads)
                mods[name] = torch
            else:
                ag = importlib.import_module("autograd")
                for sub in ("autograd.numpy", "autograd.scipy.special"):
                    importlib.import_module(sub)
                mods[name] = ag
        except ImportError as e:
            notes[name] = f"not installed ({e.name}); {INSTALL} to include it"
    return mods, notes


def version_of(mod):
    try:
        from importlib.metadata import version
        return version(mod.__name__)
    except Exception:
        return getattr(mod, "__version__", "?")


def _scalar(v):
    return float(np.asarray(v))


# -- scalar-valued workloads -----------------------------------------------------------------
def grad_tool(case, tool, mods):
    args, nums = case.args, case.argnums
    lib = tool.split(" ")[0]
    if tool in case.skip:
        raise Skip(case.skip[tool])
    if tool == "jvpvjp":
        # steady state is what is timed here: compile before the first call returns
        fj = jvpvjp.jit(case.fn, compile="eager")
        vg = jvpvjp.value_and_grad(case.fn, argnums=nums, compile="eager")
        return {"primal": (lambda: fj(*args), _scalar),
                "vg": (lambda: vg(*args), lambda r: (_scalar(r[0]), list(r[1])))}
    if tool == "njit":
        if case.njit_vg is None:
            raise Skip("no hand-written version")
        p, g = case.njit_primal, case.njit_vg
        return {"primal": (lambda: p(*args), _scalar),
                "vg": (lambda: g(*args), lambda r: (_scalar(r[0]), list(r[1:])))}
    if tool == "numpy":
        return {"primal": (lambda: case.fn(*args), _scalar)}
    if tool not in case.peers:
        raise Skip("no version written for this tool")
    if lib not in mods:
        raise Skip("not installed")
    mod = mods[lib]
    f = case.peers[tool](mod)
    if lib == "jax":
        jnp = mod.numpy
        jargs = [jnp.asarray(a) for a in args]
        pj = mod.jit(f)
        vgj = mod.jit(mod.value_and_grad(f, argnums=nums))
        block = mod.block_until_ready
        return {"primal": (lambda: block(pj(*jargs)), _scalar),
                "vg": (lambda: block(vgj(*jargs)),
                       lambda r: (_scalar(r[0]), [np.asarray(x) for x in r[1]]))}
    if lib == "torch":
        torch = mod
        targs = [torch.from_numpy(np.array(a, dtype=np.float64)) for a in args]
        leaves = [t.clone().requires_grad_(i in nums) for i, t in enumerate(targs)]
        diff = [leaves[i] for i in nums]

        def primal():
            with torch.no_grad():
                return f(*targs)

        def value_and_grad():
            out = f(*leaves)
            return out, torch.autograd.grad(out, diff)

        return {"primal": (primal, lambda r: float(r)),
                "vg": (value_and_grad, lambda r: (float(r[0].detach()),
                                      [g.numpy() for g in r[1]]))}
    if lib == "autograd":
        vga = mod.value_and_grad(f, argnum=nums)
        return {"primal": (lambda: f(*args), _scalar),
                "vg": (lambda: vga(*args), lambda r: (_scalar(r[0]), list(r[1])))}
    raise Skip(f"unknown tool {tool}")


def check_grad(metric, got, ref, rtol, atol):
    """(ok, largest error relative to the reference's scale)."""
    pairs = [(got, ref[0])] if metric == "primal" else \
        [(got[0], ref[0])] + list(zip(got[1], ref[1]))
    if metric != "primal" and len(got[1]) != len(ref[1]):
        return False, float("inf")
    ok, worst = True, 0.0
    for a, b in pairs:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if a.shape != b.shape:
            return False, float("inf")
        scale = max(1.0, float(np.max(np.abs(b)))) if b.size else 1.0
        err = float(np.max(np.abs(a - b))) / scale if b.size else 0.0
        worst = max(worst, err)
        ok = ok and bool(np.allclose(a, b, rtol=rtol, atol=atol * scale))
    return ok, worst


# -- the Jacobian workload -------------------------------------------------------------------
def jacobian_tool(wl, n, m, tool, mods):
    W, V, b, x = wl.data(n, m)
    if tool == "jvpvjp":
        f = wl.generic(np, W, V, b)
        fj = jvpvjp.jit(f, compile="eager")
        fw, rv = jvpvjp.jacfwd(f, compile="eager"), jvpvjp.jacrev(f, compile="eager")
        blk = (lambda J: J.reshape(m, n))
        return {"primal": (lambda: fj(x), np.asarray),
                "jacfwd": (lambda: fw(x), blk),
                "jacrev": (lambda: rv(x), blk)}
    if tool == "njit":
        return {"primal": (lambda: wl.njit_primal(x, W, V, b), np.asarray),
                "jac": (lambda: wl.njit_jac(x, W, V, b), np.asarray)}
    if tool == "numpy":
        f = wl.generic(np, W, V, b)
        return {"primal": (lambda: f(x), np.asarray)}
    if tool not in mods:
        raise Skip("not installed")
    mod = mods[tool]
    if tool == "jax":
        jnp = mod.numpy
        f = wl.generic(jnp, jnp.asarray(W), jnp.asarray(V), jnp.asarray(b))
        jx = jnp.asarray(x)
        pj, fw, rv = mod.jit(f), mod.jit(mod.jacfwd(f)), mod.jit(mod.jacrev(f))
        blk = mod.block_until_ready
        return {"primal": (lambda: blk(pj(jx)), np.asarray),
                "jacfwd": (lambda: blk(fw(jx)), np.asarray),
                "jacrev": (lambda: blk(rv(jx)), np.asarray)}
    if tool == "torch":
        torch = mod
        t = [torch.from_numpy(a.copy()) for a in (W, V, b, x)]
        f = wl.generic(torch, *t[:3])
        tx = t[3]
        fw, rv = torch.func.jacfwd(f), torch.func.jacrev(f)

        def primal():
            with torch.no_grad():
                return f(tx)
        return {"primal": (primal, lambda r: r.numpy()),
                "jacfwd": (lambda: fw(tx), lambda r: r.detach().numpy()),
                "jacrev": (lambda: rv(tx), lambda r: r.detach().numpy())}
    if tool == "autograd":
        f = wl.generic(mod.numpy, W, V, b)
        jac = mod.jacobian(f)
        return {"primal": (lambda: f(x), np.asarray), "jacrev": (lambda: jac(x), np.asarray)}
    raise Skip(f"unknown tool {tool}")
