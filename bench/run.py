"""Run the benchmark suite and print Markdown tables.

    python -m bench [--quick | --full] [--only gmm,mlp] [--peers jax,torch] [--threads 1]
    python bench/run.py --full --update-docs

Every tool's results are checked equal (allclose) to the hand-written reference before
it is timed. Results go to bench/results/latest.json (and PNG plots when matplotlib is
installed); ``--update-docs`` also rewrites the results section of docs/performance.md.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
for _p in (os.path.join(_ROOT, "src"), _ROOT):
    if _p not in sys.path:
        sys.path.insert(0, _p)

from bench import threads  # noqa: E402  (imports nothing heavy: threads are set first)

RESULTS = os.path.join(_ROOT, "bench", "results")
DOCS = os.path.join(_ROOT, "docs", "performance.md")
GRAD_TOOLS = ("njit", "jvpvjp", "numpy")
JAC_TOOLS = ("njit", "jvpvjp", "numpy", "jax", "torch", "autograd")
COMPILING = ("jvpvjp", "njit", "jax")


def parse(argv):
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group()
    g.add_argument("--quick", dest="mode", action="store_const", const="quick",
                   help="small and medium sizes, short timings (the default; ~2 min)")
    g.add_argument("--full", dest="mode", action="store_const", const="full",
                   help="every size, longer timings")
    p.set_defaults(mode="quick")
    p.add_argument("--only", default="", help="comma-separated workloads "
                   "(logsumexp, logsumexp_user, lstsq, gmm, mlp, scalar_chain, jacobian, einsum, linsolve)")
    p.add_argument("--peers", default="jax,torch,autograd",
                   help="peers to include when installed (comma-separated; '' for none)")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for every tool: BLAS, Numba, XLA, PyTorch (default 1)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds spent timing one (tool, metric); default 0.2 quick, 0.6 full")
    p.add_argument("--out", default=os.path.join(RESULTS, "latest.json"))
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--update-docs", action="store_true",
                   help="rewrite the results section of docs/performance.md")
    p.add_argument("--malloc-defaults", action="store_true",
                   help="leave glibc's allocator at its defaults (see bench/threads.py)")
    p.add_argument("--cold", action="store_true",
                   help="compile jvpvjp kernels into an empty cache directory, so first-call "
                        "times include Numba compilation")
    p.add_argument("--report", metavar="JSON",
                   help="print the tables (and plots, --update-docs) of a saved run; run nothing")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--child-out", help=argparse.SUPPRESS)
    return p.parse_args(argv)


class Options:
    def __init__(self, a):
        self.mode = a.mode
        self.budget = a.budget or (0.2 if a.mode == "quick" else 0.6)
        self.slow = 1.0 if a.mode == "quick" else 5.0  # one call is enough above this
        self.threads = a.threads
        self.peers = [s for s in a.peers.split(",") if s]


# -- one case --------------------------------------------------------------------------------
def _record(case_info, tool, metric, status, **kw):
    r = dict(case_info, tool=tool, metric=metric, status=status)
    r.update(kw)
    return r


def _time_metric(call, first_s, tool, opts):
    """Timings after the first call. A tool that compiles nothing and takes longer than
    ``opts.slow`` per call is timed on one more call only."""
    from bench.timing import first_call, measure
    if tool not in COMPILING and first_s > opts.slow:
        t, _ = first_call(call)
        if t > opts.slow:
            return {"median": t, "min": t, "max": t, "number": 1, "repeat": 1}
    return measure(call, budget=opts.budget)


@contextlib.contextmanager
def _kernel_sources():
    """The sources of the Numba kernels jvpvjp generates inside the block (a list)."""
    from jvpvjp.backend import numba_backend
    seen, original = [], numba_backend.generate_source

    def spy(ol, *args, **kwargs):
        out = original(ol, *args, **kwargs)
        seen.append(out[0])
        return out
    numba_backend.generate_source = spy
    try:
        yield seen
    finally:
        numba_backend.generate_source = original


def run_grad_case(wl, size, mods, notes, opts, emit, exclude=()):
    from bench.timing import first_call
    from bench.tools import Skip, check_grad, grad_tool
    import jvpvjp
    case = wl.make(**size)
    info = dict(workload=wl.NAME, label=case.label, size=case.size, cls=case.cls,
                params=case.info)
    tools = [t for t in list(GRAD_TOOLS) + list(case.peers) if t == "njit" or
             t not in exclude]
    ref = None
    for tool in tools:
        lib = tool.split(" ")[0]
        emit({"event": "start", "tool": tool})
        try:
            if lib in notes and lib not in mods:
                raise Skip(notes[lib])
            impls = grad_tool(case, tool, mods)
        except Skip as e:
            for metric in ("primal", "vg"):
                emit(_record(info, tool, metric, "skipped", note=str(e)))
            continue
        for metric in ("vg", "primal"):           # vg first: it gives the reference
            if metric not in impls:
                continue
            call, norm = impls[metric]
            try:
                with _kernel_sources() as sources:
                    first_s, out = first_call(call)
                got = norm(out)
            except Exception as e:      # a tool failing is a result, not a crash
                emit(_record(info, tool, metric, "error",
                             note=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))
                continue
            if ref is None and metric == "vg":
                ref = got
                ok, err = True, 0.0
            else:
                ok, err = check_grad(metric, got, ref, case.rtol, case.atol)
            if not ok:
                emit(_record(info, tool, metric, "mismatch", max_rel_err=err,
                             note=f"differs from the reference by {err:.2e} (relative)"))
                continue
            extra = {}
            if tool == "jvpvjp" and sources:
                from jvpvjp.backend.numba_backend import passes_of
                extra["passes"] = sum(passes_of(src) or 0 for src in sources)
            if tool == "jvpvjp" and metric == "vg":
                t0 = time.perf_counter()
                jvpvjp.make_oplist(case.fn)(*case.args)
                extra["trace_s"] = time.perf_counter() - t0
            stats = _time_metric(call, first_s, tool, opts)
            emit(_record(info, tool, metric, "ok", first_call_s=first_s, max_rel_err=err,
                         **stats, **extra))


def run_jacobian_case(wl, size, mods, notes, opts, emit, exclude=()):
    from bench.timing import first_call
    from bench.tools import Skip, jacobian_tool
    import numpy as np
    n, m = size["n"], size["m"]
    info = dict(workload=wl.NAME, label=f"n={n} m={m}", size=n * m, cls=size["cls"],
                params=dict(n=n, m=m))
    W, V, b, x = wl.data(n, m)
    ref = {"primal": wl.generic(np, W, V, b)(x), "jac": wl.exact(x, W, V, b)}
    for tool in [t for t in JAC_TOOLS if t not in exclude]:
        emit({"event": "start", "tool": tool})
        try:
            if tool in notes and tool not in mods:
                raise Skip(notes[tool])
            impls = jacobian_tool(wl, n, m, tool, mods)
        except Skip as e:
            emit(_record(info, tool, "jac", "skipped", note=str(e)))
            continue
        for metric, (call, norm) in impls.items():
            try:
                first_s, out = first_call(call)
                got = norm(out)
            except Exception as e:
                emit(_record(info, tool, metric, "error",
                             note=f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"))
                continue
            want = ref["primal" if metric == "primal" else "jac"]
            ok = got.shape == want.shape and np.allclose(got, want, rtol=1e-9, atol=1e-12)
            if not ok:
                emit(_record(info, tool, metric, "mismatch"))
                continue
            emit(_record(info, tool, metric, "ok", first_call_s=first_s,
                         **_time_metric(call, first_s, tool, opts)))


def run_case(wl, size, mods, notes, opts, emit, exclude=()):
    if getattr(wl, "KIND", "grad") == "jacobian":
        run_jacobian_case(wl, size, mods, notes, opts, emit, exclude)
    else:
        run_grad_case(wl, size, mods, notes, opts, emit, exclude)


def _tools_of(wl, size):
    if getattr(wl, "KIND", "grad") == "jacobian":
        return list(JAC_TOOLS)
    return list(GRAD_TOOLS) + list(wl.make(**size).peers)


def run_pinned(wl, size, tools, others, argv_common):
    """``tools`` (JAX's) for one case, in a process of their own pinned to one core (the
    case's ``others`` excluded there). XLA's CPU runtime keeps about 1.7 cores busy with its thread flags at 1, and its
    spinning workers would take the core from the tools timed after it in a shared
    process; pinned alone it runs, as every other tool here does, on one core."""
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as tmp:
        path = tmp.name
    spec = json.dumps({"workload": wl.NAME, "size": size, "exclude": others})
    cpu = min(os.sched_getaffinity(0))
    subprocess.run([sys.executable, "-m", "bench.run", *argv_common, "--child", spec,
                    "--child-out", path], cwd=_ROOT, check=False, stdout=subprocess.DEVNULL,
                   preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    lines = [json.loads(s) for s in open(path) if s.strip()]
    os.unlink(path)
    return [r for r in lines if "event" not in r and r["tool"] in tools]


def run_in_child(wl, size, opts, argv_common, timeout):
    """Run one case in fresh processes, each with a time limit: a tool still running at
    the limit is recorded as skipped and the next process runs the tools after it."""
    case = wl.make(**{k: v for k, v in size.items() if k != "timeout"})
    info = dict(workload=wl.NAME, label=case.label, size=case.size, cls=case.cls,
                params=case.info)
    tools = list(GRAD_TOOLS) + list(case.peers)
    records, done, exclude = [], set(), []
    while True:
        with tempfile.NamedTemporaryFile("r", suffix=".jsonl", delete=False) as tmp:
            path = tmp.name
        spec = json.dumps({"workload": wl.NAME, "size": size, "exclude": exclude})
        cmd = [sys.executable, "-m", "bench.run", *argv_common, "--child", spec,
               "--child-out", path]
        timed_out = False
        try:
            subprocess.run(cmd, cwd=_ROOT, timeout=timeout, check=False,
                           stdout=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            timed_out = True
        lines = [json.loads(s) for s in open(path) if s.strip()]
        os.unlink(path)
        for r in lines:
            if "event" not in r and (r["tool"], r["metric"]) not in done:
                done.add((r["tool"], r["metric"]))
                records.append(r)
        started = [r["tool"] for r in lines if r.get("event") == "start"]
        if not timed_out or not started:
            break
        last = started[-1]
        for metric in ("vg", "primal"):
            if (last, metric) not in done and not (last == "numpy" and metric == "vg"):
                done.add((last, metric))
                records.append(_record(info, last, metric, "skipped",
                                       note=f"did not finish within {timeout} s"))
        exclude.append(last)
        if all(t in exclude or (t, "primal") in done for t in tools):
            break
    for tool in tools:
        for metric in ("vg", "primal"):
            if (tool, metric) not in done and not (tool == "numpy" and metric == "vg"):
                records.append(_record(info, tool, metric, "skipped",
                                       note="the child process failed"))
    return records


def show_saved(a):
    from bench import report
    with open(a.report) as f:
        result = json.load(f)
    print(report.markdown(result))
    if not a.no_plots:
        for p in report.plots(result, os.path.dirname(os.path.abspath(a.report))):
            print(f"wrote {os.path.relpath(p, os.getcwd())}")
    if a.update_docs:
        report.update_docs(DOCS, result)
        print(f"updated {os.path.relpath(DOCS, os.getcwd())}")


# -- main --------------------------------------------------------------------------------------
def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    a = parse(argv)
    if a.report:
        return show_saved(a)
    opts = Options(a)
    thread_settings = threads.configure(a.threads)
    allocator = "allocator defaults" if a.malloc_defaults else threads.tune_malloc()
    if a.cold:
        os.environ["JVPVJP_CACHE_DIR"] = tempfile.mkdtemp(prefix="jvpvjp-cold-")

    import numpy as np
    import numba
    import jvpvjp
    from bench import report, tools
    from bench.workloads import NAMES, load

    mods, notes = tools.load_peers(opts.peers, a.threads)

    if a.child:                                   # one case, records as JSON lines
        spec = json.loads(a.child)
        with open(a.child_out, "a") as out:
            def emit(r):
                out.write(json.dumps(r) + "\n")
                out.flush()
            size = {k: v for k, v in spec["size"].items() if k != "timeout"}
            run_case(load(spec["workload"]), size, mods, notes, opts, emit,
                     exclude=set(spec.get("exclude", ())))
        return

    names = [s for s in a.only.split(",") if s] or NAMES
    unknown = set(names) - set(NAMES)
    if unknown:
        sys.exit(f"unknown workload(s) {sorted(unknown)}; choose from {NAMES}")
    workloads = [load(n) for n in names]

    meta = {
        "mode": a.mode, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "python": platform.python_version(), "budget_s": opts.budget,
        "versions": {"jvpvjp": jvpvjp.__version__, "numpy": np.__version__,
                     "numba": numba.__version__,
                     **{k: tools.version_of(v) for k, v in mods.items()}},
        "threads": thread_settings, "allocator": allocator, "peer_notes": notes,
        "jvpvjp_cache": "cold (empty directory)" if a.cold else
                        (jvpvjp.config.cache_dir or "disabled"),
    }
    # with one thread for every tool, JAX runs alone on one core (see run_pinned)
    pin_jax = a.threads == 1 and "jax" in mods and hasattr(os, "sched_setaffinity")
    meta["jax_process"] = "its own, pinned to one core" if pin_jax else "the bench's"
    print(report.header(meta), flush=True)
    for name, note in notes.items():
        print(f"note: {name} skipped: {note}", file=sys.stderr)

    checks = {}
    if "gmm" in names:
        from bench.workloads import gmm
        err_j, err_fd = gmm.self_check()
        checks["gmm_njit_gradient"] = {"vs_jvpvjp": err_j, "vs_central_differences": err_fd}
        print(f"GMM check (d=3, k=2, n=7, Wishart m=2): hand-written gradient vs jvpvjp "
              f"{err_j:.1e}, vs central differences {err_fd:.1e} (max relative error)\n",
              flush=True)

    jobs = [(wl, size) for wl in workloads for size in wl.sizes(a.mode)]
    try:
        from tqdm import tqdm
        bar = tqdm(jobs, desc="bench", unit="case", file=sys.stderr, dynamic_ncols=True)
    except ImportError:
        bar = None
    records = []
    common = ["--" + a.mode, "--threads", str(a.threads), "--peers", a.peers,
              "--budget", str(opts.budget)] + (["--malloc-defaults"] if a.malloc_defaults
                                               else [])
    t_start = time.perf_counter()
    for i, (wl, size) in enumerate(jobs):
        desc = f"{wl.NAME} " + " ".join(f"{k}={v}" for k, v in size.items()
                                          if k not in ("cls", "timeout", "jax_unrolled"))
        if bar is not None:
            bar.set_description(desc)
        else:
            print(f"[{i + 1}/{len(jobs)}] {desc}", file=sys.stderr, flush=True)
        try:
            if "timeout" in size:
                records += run_in_child(wl, size, opts, common, size["timeout"])
            elif pin_jax:
                every = _tools_of(wl, size)
                jax = [t for t in every if t.split(" ")[0] == "jax"]
                run_case(wl, size, mods, notes, opts,
                         lambda r: records.append(r) if "event" not in r else None,
                         exclude=set(jax))
                records += run_pinned(wl, size, jax, [t for t in every if t not in jax],
                                      common)
            else:
                run_case(wl, size, mods, notes, opts,
                         lambda r: records.append(r) if "event" not in r else None)
        except Exception:
            traceback.print_exc()
            records.append({"workload": wl.NAME, "label": desc, "status": "error",
                            "tool": "-", "metric": "-",
                            "note": traceback.format_exc().splitlines()[-1]})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    meta["wall_time_s"] = time.perf_counter() - t_start

    result = {"meta": meta, "checks": checks, "records": records}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(result, f, indent=1, default=float)
    md = report.markdown(result)
    print(md)
    print(f"\nwrote {os.path.relpath(a.out, os.getcwd())}", end="")
    if not a.no_plots:
        pngs = report.plots(result, os.path.dirname(os.path.abspath(a.out)))
        if pngs:
            print(" and " + ", ".join(os.path.relpath(p, os.getcwd()) for p in pngs), end="")
        else:
            print(" (matplotlib not installed: no plots)", end="")
    print(f"; {meta['wall_time_s']:.0f} s")
    if a.update_docs:
        report.update_docs(DOCS, result)
        print(f"updated {os.path.relpath(DOCS, os.getcwd())}")


if __name__ == "__main__":
    main()
