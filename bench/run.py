"""Benchmarks: jvpvjp against a hand-written Numba gradient and, when installed, JAX,
PyTorch and autograd.

    python -m bench --quick          # small and medium sizes, about two minutes
    python -m bench --full           # every size
    python -m bench --only gmm,mlp   # some workloads

For each workload and size: the primal (plain NumPy and ``jvpvjp.jit``), jvpvjp's
value_and_grad, its ratio to the primal, the hand-written ``@njit`` value-and-gradient,
and each peer. Every tool's value and gradient are checked against jvpvjp's (allclose)
before anything is timed. Times are medians over repeats (min and max are in the JSON);
first calls (trace and compile) are reported separately and never timed with the rest.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time


def _set_threads(argv):
    threads = "1"
    for i, a in enumerate(argv):
        if a.startswith("--threads"):
            threads = a.split("=", 1)[1] if "=" in a else argv[i + 1]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMBA_NUM_THREADS"):
        os.environ[var] = threads
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_multi_thread_eigen=" +
                               ("false" if threads == "1" else "true")).strip()
    return int(threads)


THREADS = _set_threads(sys.argv)

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
import jvpvjp  # noqa: E402

from . import peers as peers_mod  # noqa: E402
from .timing import first_call, measure  # noqa: E402
from .workloads import chain, gmm, logsumexp, lstsq, mlp  # noqa: E402

WORKLOADS = [logsumexp, lstsq, gmm, mlp, chain]
RESULTS = os.path.join(os.path.dirname(__file__), "results")


def _allclose(a, b, what, rtol=1e-7, atol=1e-9):
    la, lb = jvpvjp.tree_flatten(a)[0], jvpvjp.tree_flatten(b)[0]
    if len(la) != len(lb):
        raise AssertionError(f"{what}: {len(la)} results against {len(lb)}")
    for x, y in zip(la, lb):
        x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
        if x.shape != y.shape or not np.allclose(x, y, rtol=rtol, atol=atol):
            err = np.max(np.abs(x - y)) if x.shape == y.shape else "shape"
            raise AssertionError(f"{what}: results differ (max abs difference {err})")


def _progress(items, desc):
    try:
        from tqdm import tqdm
        return tqdm(items, desc=desc, leave=False, file=sys.stderr)
    except ImportError:
        return items


def run_problem(p, peers):
    """Time one workload at one size; returns a result row."""
    args = p.params + p.data
    argnums = tuple(range(len(p.params)))
    row = {"label": p.label, "notes": list(p.notes)}
    f = p.fn(np, jvpvjp.stop_gradient)
    vg, primal = jvpvjp.value_and_grad(f, argnums=argnums), jvpvjp.jit(f)
    row["jvpvjp_first_call_s"], (value, grads) = first_call(lambda: vg(*args))
    row["jit_first_call_s"], pv = first_call(lambda: primal(*args))
    ref = (value, grads)
    _allclose(pv, value, "jvpvjp primal vs value_and_grad")
    n_value, n_grads = p.numba_vg(*args)
    _allclose((n_value, n_grads), ref, "hand-written Numba vs jvpvjp")

    checks = {}
    if "jax" in peers:
        checks["jax"] = _jax_setup(p, peers["jax"], args, ref)
    if "torch" in peers:
        checks["torch"] = _torch_setup(p, peers["torch"], args, ref)
    if "autograd" in peers:
        checks["autograd"] = _autograd_setup(p, peers["autograd"], args, ref)

    row["primal_numpy"] = measure(lambda: f(*args))
    row["primal_jit"] = measure(lambda: primal(*args))
    row["jvpvjp"] = measure(lambda: vg(*args))
    row["numba"] = measure(lambda: p.numba_vg(*args))
    for name, (call, compile_s, error) in checks.items():
        if error:
            row["notes"].append(f"{name}: {error}")
            continue
        row[f"{name}_first_call_s"] = compile_s
        row[name] = measure(call)
    med = row["jvpvjp"]["median"]
    row["vg_over_primal"] = med / row["primal_jit"]["median"]
    row["vg_over_numpy_primal"] = med / row["primal_numpy"]["median"]
    row["vs_numba"] = med / row["numba"]["median"]
    for name in ("jax", "torch", "autograd"):
        if name in row:
            row[f"vs_{name}"] = med / row[name]["median"]
    return row


def _jax_setup(p, jax_info, args, ref):
    jax, jnp = jax_info["module"], jax_info["xp"]
    try:
        f = p.jax_fn(jax) if p.jax_fn else p.fn(jnp, jax_info["stop_gradient"])
        k = len(p.params)
        vg = jax.jit(jax.value_and_grad(lambda ps, *d: f(*ps, *d)))
        ps = tuple(jnp.asarray(a) for a in args[:k])
        ds = tuple(jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args[k:])

        def call():
            return jax.block_until_ready(vg(ps, *ds))
        compile_s, (v, g) = first_call(call)
        _allclose((v, g), ref, "JAX vs jvpvjp", rtol=1e-6)
        return call, compile_s, None
    except Exception as e:
        return None, None, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


def _torch_setup(p, torch_info, args, ref):
    torch = torch_info["module"]
    try:
        f = p.torch_fn(torch)
        k = len(p.params)
        ps = [torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=True)
              for a in args[:k]]
        ds = [torch.tensor(a, dtype=torch.float64) if isinstance(a, np.ndarray) else a
              for a in args[k:]]

        def call():
            loss = f(*ps, *ds)
            return loss.detach(), torch.autograd.grad(loss, ps)
        v, g = call()
        _allclose((v.numpy(), tuple(x.numpy() for x in g)), ref, "PyTorch vs jvpvjp",
                  rtol=1e-6)
        return call, None, None
    except Exception as e:
        return None, None, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


def _autograd_setup(p, ag_info, args, ref):
    autograd = ag_info["module"]
    try:
        f = p.fn(ag_info["xp"], ag_info["stop_gradient"])
        k = len(p.params)
        vg = autograd.value_and_grad(lambda ps, *d: f(*ps, *d))
        ps, ds = tuple(args[:k]), tuple(args[k:])

        def call():
            return vg(ps, *ds)
        v, g = call()
        _allclose((v, g), ref, "autograd vs jvpvjp", rtol=1e-6)
        return call, None, None
    except Exception as e:
        return None, None, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"


# -- Jacobians: forward vs reverse -----------------------------------------------------------
def _jac_problem(n, m):
    rng = np.random.default_rng(0)
    W = rng.normal(size=(m, n)) / np.sqrt(n)
    V = rng.normal(size=(m, n)) / np.sqrt(n)
    b = rng.normal(size=m)
    x = rng.normal(size=n)
    return W, V, b, x


def _jac_numba():
    from numba import njit

    @njit(cache=True)
    def jac(W, V, b, x):
        t = np.tanh(W @ x + b)
        s = V @ np.sin(x)
        return ((1.0 - t * t) * s)[:, None] * W + t[:, None] * V * np.cos(x)[None, :]
    return jac


def run_jacobians(grid, peers):
    rows = []
    jac_numba = _jac_numba()
    for n in grid:
        for m in grid:
            W, V, b, x = _jac_problem(n, m)

            def f(x, W=W, V=V, b=b):
                return np.tanh(W @ x + b) * (V @ np.sin(x))

            eye_n, eye_m = np.eye(n), np.eye(m)

            def jac_fwd():
                return np.stack([jvpvjp.jvp(f, (x,), (eye_n[i],))[1] for i in range(n)], 1)

            def jac_rev():
                out, pullback = jvpvjp.vjp(f, x)
                return np.stack([pullback(eye_m[j])[0] for j in range(m)], 0)

            row = {"n": n, "m": m, "notes": []}
            row["jvpvjp_fwd_first_call_s"], J = first_call(jac_fwd)
            row["jvpvjp_rev_first_call_s"], Jr = first_call(jac_rev)
            Jn = jac_numba(W, V, b, x)
            _allclose(J, Jn, "jacobian (forward) vs hand-written")
            _allclose(Jr, Jn, "jacobian (reverse) vs hand-written")
            row["jvpvjp_fwd"] = measure(jac_fwd, budget=0.3)
            row["jvpvjp_rev"] = measure(jac_rev, budget=0.3)
            row["numba"] = measure(lambda: jac_numba(W, V, b, x))
            if "jax" in peers:
                jax, jnp = peers["jax"]["module"], peers["jax"]["xp"]
                Wj, Vj, bj, xj = (jnp.asarray(a) for a in (W, V, b, x))

                def fj(x):
                    return jnp.tanh(Wj @ x + bj) * (Vj @ jnp.sin(x))
                for mode, jac in (("fwd", jax.jacfwd), ("rev", jax.jacrev)):
                    jf = jax.jit(jac(fj))

                    def call(jf=jf):
                        return jax.block_until_ready(jf(xj))
                    row[f"jax_{mode}_first_call_s"], Jj = first_call(call)
                    _allclose(np.asarray(Jj), Jn, f"JAX jac{mode} vs hand-written")
                    row[f"jax_{mode}"] = measure(call)
            best = min(row["jvpvjp_fwd"]["median"], row["jvpvjp_rev"]["median"])
            row["fwd_over_rev"] = row["jvpvjp_fwd"]["median"] / row["jvpvjp_rev"]["median"]
            if "jax_fwd" in row:
                row["vs_jax_best"] = best / min(row["jax_fwd"]["median"],
                                                row["jax_rev"]["median"])
            rows.append(row)
    return rows


# -- output --------------------------------------------------------------------------------
def _us(x):
    return "" if x is None else f"{x * 1e6:,.1f}"


def _r(x):
    return "" if x is None else f"{x:.2f}"


def markdown(rows, jac_rows, info):
    out = [f"threads: {info['threads']} (BLAS, Numba, PyTorch, XLA); {info['machine']}; "
           f"numpy {info['numpy']}, numba {info['numba']}, jvpvjp {info['jvpvjp']}; "
           + ", ".join(f"{k} {v}" for k, v in info["peers"].items()), ""]
    out.append("| workload | size | NumPy primal (us) | jit primal (us) | jvpvjp vg (us) "
               "| vg / primal | hand Numba (us) | jvpvjp / Numba | JAX jit (us) "
               "| jvpvjp / JAX | PyTorch (us) | PyTorch / jvpvjp | autograd (us) "
               "| autograd / jvpvjp | first call (s) |")
    out.append("|" + "---|" * 15)
    for r in rows:
        def med(k):
            return r[k]["median"] if k in r else None
        inv = {k: (med(k) / med("jvpvjp") if med(k) else None) for k in ("torch", "autograd")}
        out.append(f"| {r['workload']} | {r['label']} | {_us(med('primal_numpy'))} "
                   f"| {_us(med('primal_jit'))} | {_us(med('jvpvjp'))} "
                   f"| {_r(r['vg_over_primal'])} | {_us(med('numba'))} | {_r(r['vs_numba'])} "
                   f"| {_us(med('jax'))} | {_r(r.get('vs_jax'))} | {_us(med('torch'))} "
                   f"| {_r(inv['torch'])} | {_us(med('autograd'))} | {_r(inv['autograd'])} "
                   f"| {r['jvpvjp_first_call_s']:.2f} |")
    for r in rows:
        for note in r["notes"]:
            out.append(f"\n- {r['workload']} {r['label']}: {note}")
    if jac_rows:
        out += ["", "Jacobian of f: R^n -> R^m, f(x) = tanh(W x + b) * (V sin x). jvpvjp "
                "builds it from n JVPs (fwd) or m VJPs (rev); JAX uses jit(jacfwd/jacrev).", "",
                "| n | m | jvpvjp fwd (us) | jvpvjp rev (us) | fwd / rev | hand Numba (us) "
                "| JAX jacfwd (us) | JAX jacrev (us) | jvpvjp best / JAX best |",
                "|" + "---|" * 9]
        for r in jac_rows:
            def med(k):
                return r[k]["median"] if k in r else None
            out.append(f"| {r['n']} | {r['m']} | {_us(med('jvpvjp_fwd'))} "
                       f"| {_us(med('jvpvjp_rev'))} | {_r(r['fwd_over_rev'])} "
                       f"| {_us(med('numba'))} | {_us(med('jax_fwd'))} | {_us(med('jax_rev'))} "
                       f"| {_r(r.get('vs_jax_best'))} |")
    if info["skipped"]:
        out += [""] + [f"- {s}" for s in info["skipped"]]
    return "\n".join(out)


def plots(rows, jac_rows):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written = []
    workloads = sorted({r["workload"] for r in rows})
    fig, axes = plt.subplots(1, len(workloads), figsize=(4 * len(workloads), 3.5))
    axes = np.atleast_1d(axes)
    for ax, w in zip(axes, workloads):
        rs = [r for r in rows if r["workload"] == w]
        xs = np.arange(len(rs))
        for tool in ("jvpvjp", "numba", "jax", "torch", "autograd", "primal_jit"):
            ys = [r[tool]["median"] * 1e6 if tool in r else np.nan for r in rs]
            if not np.all(np.isnan(ys)):
                ax.plot(xs, ys, marker="o", label="primal (jit)" if tool == "primal_jit" else tool)
        ax.set_xticks(xs, [r["size"] for r in rs])
        ax.set_yscale("log")
        ax.set_title(w)
        ax.set_ylabel("us per value+gradient")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    path = os.path.join(RESULTS, "times.png")
    fig.savefig(path, dpi=110)
    written.append(path)
    if jac_rows:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for n in sorted({r["n"] for r in jac_rows}):
            rs = [r for r in jac_rows if r["n"] == n]
            ax.plot([r["m"] for r in rs], [r["fwd_over_rev"] for r in rs], marker="o",
                    label=f"n = {n}")
        ax.axhline(1.0, color="gray", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("m (outputs)")
        ax.set_ylabel("forward time / reverse time")
        ax.set_title("Jacobian: forward vs reverse mode")
        ax.legend()
        fig.tight_layout()
        path = os.path.join(RESULTS, "crossover.png")
        fig.savefig(path, dpi=110)
        written.append(path)
    return written


def main(argv=None):
    ap = argparse.ArgumentParser(description="jvpvjp benchmarks")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="small and medium sizes (default)")
    mode.add_argument("--full", action="store_true", help="every size")
    ap.add_argument("--only", default="", help="comma-separated workloads "
                    f"({', '.join(w.NAME for w in WORKLOADS)}, jacobian)")
    ap.add_argument("--no-peers", action="store_true", help="skip JAX, PyTorch and autograd")
    ap.add_argument("--threads", default="1", help="threads for every tool (default 1)")
    args = ap.parse_args(argv)
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    peers = {} if args.no_peers else peers_mod.load()
    import numba
    info = {"threads": THREADS, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "numpy": np.__version__, "numba": numba.__version__,
            "jvpvjp": jvpvjp.__version__, "backend": jvpvjp.config.backend,
            "peers": {k: v["version"] for k, v in peers.items()},
            "skipped": list(peers_mod.NOTES), "mode": "full" if args.full else "quick"}
    rows = []
    t0 = time.time()
    for w in WORKLOADS:
        if only and w.NAME not in only:
            continue
        sizes = list(w.SIZES) if args.full else list(w.QUICK)
        for size in _progress(sizes, w.NAME):
            p = w.make(**w.SIZES[size])
            active = dict(peers)
            if w is chain and size != "small":
                # Python-loop peers take seconds per call here; keep them to the small size
                active = {k: v for k, v in peers.items() if k == "jax"}
                p.notes.append("PyTorch and autograd timed on the small size only")
            row = run_problem(p, active)
            row.update(workload=w.NAME, size=size)
            rows.append(row)
            print(f"  {w.NAME} {p.label}: vg {row['jvpvjp']['median'] * 1e6:,.1f} us, "
                  f"vg/primal {row['vg_over_primal']:.2f}, vs Numba {row['vs_numba']:.2f}"
                  + (f", vs JAX {row['vs_jax']:.2f}" if "vs_jax" in row else ""),
                  file=sys.stderr, flush=True)
        if w is chain and not args.full:
            info["skipped"].append("scalar_chain 1e5 and 1e6 ops: --full only (tracing a "
                                   "1e6-op Python loop takes tens of seconds)")
    jac_rows = []
    if not only or "jacobian" in only:
        grid = [10, 100, 1000] if args.full else [10, 100]
        jac_rows = run_jacobians(grid, peers)
    info["seconds"] = time.time() - t0
    table = markdown(rows, jac_rows, info)
    print(table)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "latest.json"), "w") as fh:
        json.dump({"info": info, "workloads": rows, "jacobians": jac_rows}, fh, indent=1)
    with open(os.path.join(RESULTS, "latest.md"), "w") as fh:
        fh.write(table + "\n")
    for path in plots(rows, jac_rows):
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
