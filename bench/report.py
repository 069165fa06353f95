"""Markdown tables, the targets summary, plots and the docs section, from the records."""
from __future__ import annotations

import math
import os
from collections import OrderedDict

from bench.common import fmt_range, fmt_time

TITLES = OrderedDict([
    ("logsumexp", "logsumexp of a vector"),
    ("logsumexp_user", "logsumexp as users write it (max, exp, sum, log)"),
    ("lstsq", "Least squares, polynomial features (m = 128)"),
    ("gmm", "GMM objective (ADBench), n = 1000"),
    ("mlp", "MLP loss (tanh, softmax cross-entropy)"),
    ("scalar_chain", "Scalar chain (unrolled Python loop, 5 ops per step)"),
    ("jacobian", "Jacobian of f: R^n -> R^m (forward vs reverse)"),
])
NJIT_TARGET = ("gmm", "mlp", "logsumexp", "logsumexp_user")
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def header(meta):
    t = meta["threads"]
    v = ", ".join(f"{k} {x}" for k, x in meta["versions"].items())
    return (f"jvpvjp benchmarks ({meta['mode']}), {meta['date']}\n"
            f"{meta['machine']}, Python {meta['python']}; {v}\n"
            f"threads: {t['threads']} for every tool (OMP/OPENBLAS/MKL/NUMBA_NUM_THREADS="
            f"{t['OMP_NUM_THREADS']}, XLA_FLAGS='{t['XLA_FLAGS']}', torch {t['torch']})\n"
            f"allocator: {meta.get('allocator', '?')}\n"
            f"jvpvjp kernel cache: {meta['jvpvjp_cache']}\n"
            + (f"JAX process: {meta['jax_process']}\n" if "jax_process" in meta else ""))


def _index(records):
    """{(workload, label): {(tool, metric): record}} in order of appearance."""
    out = OrderedDict()
    for r in records:
        if "label" not in r:
            continue
        out.setdefault((r["workload"], r["label"]), {})[(r["tool"], r["metric"])] = r
    return out


def _med(rec):
    return rec["median"] if rec and rec.get("status") == "ok" else None


def _cell(rec):
    if rec is None:
        return "–"
    if rec["status"] == "ok":
        if rec.get("repeat", 1) > 1:
            return fmt_range(rec["median"], rec["min"], rec["max"])
        return fmt_time(rec["median"]) + " (1 call)"
    return rec["status"] + "*"


def _ratio(a, b, digits=2):
    if a is None or b is None or b == 0:
        return "–"
    r = a / b
    return f"{r:.{digits}f}" if r < 100 else f"{r:.0f}"


def _tools_of(rows):
    seen = []
    for (tool, _), _r in rows.items():
        if tool not in seen:
            seen.append(tool)
    return seen


def grad_table(workload, cases):
    lines = ["| size | tool | primal: median (min–max) | value_and_grad: median (min–max) "
             "| vg / primal | vg ÷ jvpvjp's vg | first call of vg |",
             "|---|---|---|---|---|---|---|"]
    notes = []
    for (wl, label), rows in cases.items():
        if wl != workload:
            continue
        jv = _med(rows.get(("jvpvjp", "vg")))
        for tool in _tools_of(rows):
            p, g = rows.get((tool, "primal")), rows.get((tool, "vg"))
            for r in (p, g):
                if r is not None and r["status"] != "ok" and r.get("note"):
                    n = f"{label}, {tool}: {r['status']}: {r['note']}"
                    if n not in notes:
                        notes.append(n)
            if tool == "numpy":
                g = None
            first = g.get("first_call_s") if g and g["status"] == "ok" else None
            name = {"njit": "hand-written @njit", "numpy": "NumPy (primal only)",
                    "jax": "JAX (jit)", "jax (fori_loop)": "JAX (jit, lax.fori_loop)",
                    "torch": "PyTorch (eager)"}.get(tool, tool)
            fc = fmt_time(first) if first is not None else "–"
            if g is not None and g.get("trace_s") is not None:
                fc += f" (trace {fmt_time(g['trace_s'])})"
            if tool == "jvpvjp":     # passes over arrays of the compiled kernels
                passes = [r.get("passes") if r else None for r in (p, g)]
                if any(x is not None for x in passes):
                    name += " (passes: " + " / ".join("–" if x is None else str(x)
                                                      for x in passes) + ")"
            lines.append(f"| {label} | {name} | {_cell(p)} | {_cell(g)} "
                         f"| {_ratio(_med(g), _med(p))} | {_ratio(_med(g), jv)} | {fc} |")
    return lines, notes


def jacobian_table(cases):
    cols = [("jvpvjp", "primal", "primal (jvpvjp.jit)"),
            ("jvpvjp", "jacfwd", "jvpvjp jacfwd"),
            ("jvpvjp", "jacrev", "jvpvjp jacrev"),
            ("njit", "jac", "hand-written closed form"),
            ("jax", "jacfwd", "JAX jacfwd"), ("jax", "jacrev", "JAX jacrev"),
            ("torch", "jacfwd", "torch.func jacfwd"), ("torch", "jacrev", "torch.func jacrev"),
            ("autograd", "jacrev", "autograd jacobian (rev)")]
    lines = ["| n | m | " + " | ".join(c[2] for c in cols) +
             " | faster mode: jvpvjp / JAX |",
             "|---|---|" + "---|" * len(cols) + "---|"]
    notes = []
    for (wl, label), rows in cases.items():
        if wl != "jacobian":
            continue
        n, m = (int(s.split("=")[1]) for s in label.split())
        cells = []
        for tool, metric, _ in cols:
            r = rows.get((tool, metric))
            if r is None and (tool, "jac") in rows and rows[(tool, "jac")]["status"] != "ok":
                r = rows[(tool, "jac")]
            cells.append(fmt_time(_med(r)) if _med(r) is not None else
                         (r["status"] + "*" if r else "–"))
            if r is not None and r["status"] != "ok" and r.get("note"):
                nn = f"{tool}: {r['status']}: {r['note']}"
                if nn not in notes:
                    notes.append(nn)

        def faster(tool):
            f, r = _med(rows.get((tool, "jacfwd"))), _med(rows.get((tool, "jacrev")))
            if f is None or r is None:
                return "–"
            return "rev" if r < f else "fwd"
        lines.append(f"| {n} | {m} | " + " | ".join(cells) +
                     f" | {faster('jvpvjp')} / {faster('jax')} |")
    return lines, notes


def _best_jac(rows, tool):
    ts = [_med(rows.get((tool, k))) for k in ("jacfwd", "jacrev", "jac")]
    ts = [t for t in ts if t is not None]
    return min(ts) if ts else None


def targets(cases):
    """Rows of the targets table and the counts of met / missed per target."""
    lines = ["| workload | size | class | vg / primal (≤ 3) | jvpvjp ÷ hand-written (≤ 1.3) "
             "| jvpvjp ÷ JAX (< 1) | PyTorch ÷ jvpvjp (≥ 10) | autograd ÷ jvpvjp (≥ 10) |",
             "|---|---|---|---|---|---|---|---|"]
    tally = OrderedDict((k, [0, 0]) for k in ("vg/primal", "njit", "jax", "torch", "autograd"))

    def mark(key, value, ok):
        if value is None:
            return "–"
        tally[key][0 if ok else 1] += 1
        return f"{value:.2f} {'✓' if ok else '✗'}" if value < 100 else \
            f"{value:.0f} {'✓' if ok else '✗'}"

    for (wl, label), rows in cases.items():
        cls = next(iter(rows.values())).get("cls", "")
        if wl == "jacobian":
            n, m = (int(s.split("=")[1]) for s in label.split())
            jv, prim = _best_jac(rows, "jvpvjp"), _med(rows.get(("jvpvjp", "primal")))
            per_sweep = jv / (min(n, m) * prim) if jv and prim else None
            vgp = mark("vg/primal", per_sweep, per_sweep is not None and per_sweep <= 3)
            nj = "–"
            peers = {t: _best_jac(rows, t) for t in ("jax", "torch", "autograd")}
        else:
            jv = _med(rows.get(("jvpvjp", "vg")))
            prim = _med(rows.get(("jvpvjp", "primal")))
            r = jv / prim if jv and prim else None
            vgp = mark("vg/primal", r, r is not None and r <= 3)
            nv = _med(rows.get(("njit", "vg")))
            r = jv / nv if jv and nv and wl in NJIT_TARGET else None
            nj = mark("njit", r, r is not None and r <= 1.3)
            peers = {t: min([_med(rec) for (tt, mm), rec in rows.items()
                             if tt.split(" ")[0] == t and mm == "vg" and _med(rec)] or [None],
                            key=lambda v: math.inf if v is None else v)
                     for t in ("jax", "torch", "autograd")}
        r = jv / peers["jax"] if jv and peers["jax"] else None
        jx = mark("jax", r, r is not None and r < 1)
        cells = []
        for t in ("torch", "autograd"):
            r = peers[t] / jv if jv and peers[t] else None
            cells.append(mark(t, r, r is not None and r >= 10) if cls in ("small", "medium")
                         else (f"{r:.1f} (large)" if r is not None else "–"))
        lines.append(f"| {wl} | {label} | {cls} | {vgp} | {nj} | {jx} | {cells[0]} "
                     f"| {cells[1]} |")
    return lines, tally


def markdown(result):
    meta, records = result["meta"], result["records"]
    cases = _index(records)
    t = meta["threads"]
    out = [f"Mode `{meta['mode']}`, {meta['date']}; {meta['machine']}; Python "
           f"{meta['python']}; " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
           + f". Threads: {t['threads']} for every tool. Allocator: "
           f"{meta.get('allocator', '?')}. Wall time {meta.get('wall_time_s', 0):.0f} s.", ""]
    for name, note in meta.get("peer_notes", {}).items():
        out.append(f"- {name}: {note}")
    if meta.get("peer_notes"):
        out.append("")
    present = {wl for wl, _ in cases}
    lines, tally = targets(cases)
    out += ["### Targets", "",
            "Ratios of medians. vg / primal: jvpvjp's value_and_grad over its compiled primal "
            "(for the Jacobian: the faster mode over min(n, m) primals). The peer columns use "
            "each peer's faster variant; the ≥ 10 targets apply to small and medium sizes.", ""]
    out += lines
    out += ["", "Met / missed: " + "; ".join(
        f"{k} {v[0]}/{v[0] + v[1]}" for k, v in tally.items() if v[0] + v[1]), ""]
    for wl, title in TITLES.items():
        if wl not in present:
            continue
        out += [f"### {title}", ""]
        lines, notes = jacobian_table(cases) if wl == "jacobian" else grad_table(wl, cases)
        out += lines
        if notes:
            out += [""] + [f"\\* {n}" for n in notes]
        out.append("")
    chk = result.get("checks", {}).get("gmm_njit_gradient")
    if chk:
        out.append(f"GMM hand-written gradient check (d=3, k=2, n=7, Wishart m=2): max "
                   f"relative difference {chk['vs_jvpvjp']:.1e} from jvpvjp, "
                   f"{chk['vs_central_differences']:.1e} from central differences.")
    return "\n".join(out).rstrip() + "\n"


def update_docs(path, result):
    text = open(path).read()
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    with open(path, "w") as f:
        f.write(text[:a] + "\n" + markdown(result) + text[b:])


# -- plots ---------------------------------------------------------------------------------
COLORS = {"jvpvjp": "C0", "njit": "k", "numpy": "0.6", "jax": "C1", "jax (fori_loop)": "C5",
          "torch": "C3", "autograd": "C2"}


def plots(result, outdir):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    cases = _index(result["records"])
    made = []
    grad_wls = [w for w in TITLES if w != "jacobian" and any(k[0] == w for k in cases)]
    if grad_wls:
        ncol = min(3, len(grad_wls))
        nrow = math.ceil(len(grad_wls) / ncol)
        fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 4 * nrow), squeeze=False)
        for ax, wl in zip(axes.flat, grad_wls):
            labels = [label for (w, label) in cases if w == wl]
            categorical = wl in ("gmm", "mlp")     # sizes that are not one number

            def xpos(label, r):
                return labels.index(label) if categorical else r["size"]
            series = {}
            for (w, label), rows in cases.items():
                if w != wl:
                    continue
                for (tool, metric), r in rows.items():
                    if metric == "vg" and _med(r):
                        series.setdefault(tool, []).append((xpos(label, r), r["median"]))
                    if tool == "jvpvjp" and metric == "primal" and _med(r):
                        series.setdefault("jvpvjp primal", []).append(
                            (xpos(label, r), r["median"]))
            for tool, pts in series.items():
                pts.sort()
                xs, ys = zip(*pts)
                style = "--" if tool == "jvpvjp primal" else "-"
                ax.plot(xs, ys, style, marker="o", ms=3, label=tool,
                        color=COLORS.get(tool.split(" primal")[0], None))
            if categorical:
                ax.set_xticks(range(len(labels)))
                ax.set_xticklabels([lb.replace(", ", "\n").replace(" k=", "\nk=")
                                    for lb in labels], fontsize=7)
            else:
                ax.set_xscale("log")
                ax.set_xlabel({"scalar_chain": "operations"}.get(wl, "n"))
            ax.set_yscale("log")
            ax.set_title(TITLES[wl], fontsize=9)
            ax.set_ylabel("value_and_grad, median (s)")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        for ax in list(axes.flat)[len(grad_wls):]:
            ax.axis("off")
        fig.tight_layout()
        p = os.path.join(outdir, "time_vs_size.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    jac = {label: rows for (w, label), rows in cases.items() if w == "jacobian"}
    if jac:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4))
        for ax, tool in zip(axes, ("jvpvjp", "jax")):
            by_m = {}
            for label, rows in jac.items():
                n, m = (int(s.split("=")[1]) for s in label.split())
                f, r = _med(rows.get((tool, "jacfwd"))), _med(rows.get((tool, "jacrev")))
                if f and r:
                    by_m.setdefault(m, []).append((n, f / r))
            for m, pts in sorted(by_m.items()):
                pts.sort()
                ax.plot(*zip(*pts), marker="o", label=f"m = {m}")
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("n (inputs)")
            ax.set_ylabel("time forward / time reverse")
            ax.set_title(f"{tool}: above 1, reverse mode is faster", fontsize=9)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7)
        fig.tight_layout()
        p = os.path.join(outdir, "jacobian_crossover.png")
        fig.savefig(p, dpi=110)
        plt.close(fig)
        made.append(p)
    return made
