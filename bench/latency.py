"""Latency: what a new user waits for. Every case runs in fresh processes.

    python bench/latency.py [--runs 5] [--only tiny,mlp] [--peers jax,autograd]
    python -m bench --only latency

Each case is a small script run ``--runs`` times, each time in a new process with a new,
empty kernel cache directory (``warm`` cases fill one first and reuse it). "wall" is the
whole process as the parent sees it (imports included); the other figures are measured
inside the process. JAX (jit) and autograd run the same cases when installed. Min, median
and max over the runs are printed.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SRC = os.path.join(_ROOT, "src")

_PRELUDE = """
import json, sys, time
T0 = time.perf_counter()
import numpy as np
R = {}
def done():
    print("RESULT " + json.dumps(R))
"""

MLP = """
rng = np.random.default_rng(0)
params = (rng.normal(size=(784, 128)) * 0.05, np.zeros(128),
          rng.normal(size=(128, 10)) * 0.1, np.zeros(10))
X, Y = rng.normal(size=(64, 784)), np.eye(10)[rng.integers(0, 10, 64)]
def loss(params, X, Y, np=np):
    W1, b1, W2, b2 = params
    z = np.tanh(X @ W1 + b1) @ W2 + b2
    z = z - np.max(z, axis=1, keepdims=True)
    return -np.mean(np.sum(Y * (z - np.log(np.sum(np.exp(z), axis=1, keepdims=True))), axis=1))
"""

CHAIN = """
def chain(x, np=np):
    for i in range(N):
        x = x * 1.0001
    return np.sum(x)
x0 = np.array([0.5, -0.25])
"""

SCALAR = """
def steps(y, np=np):
    for i in range(20000):
        y = np.sin(y) * 1.0001 + 0.1
    return y
"""

# case name -> {tool: script}. Scripts fill R and call done().
CASES = {
    "tiny": {
        "jvpvjp": """
from jvpvjp import grad
t = time.perf_counter()
g = grad(lambda x: np.sum(np.sin(x) * x ** 2))(np.arange(3.0))
R["first"] = time.perf_counter() - t
done()""",
        "jax": """
import jax; jax.config.update("jax_enable_x64", True); import jax.numpy as jnp
t = time.perf_counter()
g = jax.jit(jax.grad(lambda x: jnp.sum(jnp.sin(x) * x ** 2)))(jnp.arange(3.0)).block_until_ready()
R["first"] = time.perf_counter() - t
done()""",
        "autograd": """
import autograd.numpy as anp; from autograd import grad
t = time.perf_counter()
g = grad(lambda x: anp.sum(anp.sin(x) * x ** 2))(np.arange(3.0))
R["first"] = time.perf_counter() - t
done()""",
    },
    "mlp": {
        "jvpvjp": MLP + """
from jvpvjp import value_and_grad
t = time.perf_counter()
v, g = value_and_grad(loss)(params, X, Y)
R["first"] = time.perf_counter() - t
done()""",
        "jax": MLP + """
import jax; jax.config.update("jax_enable_x64", True); import jax.numpy as jnp
f = jax.jit(jax.value_and_grad(lambda p, X, Y: loss(p, X, Y, np=jnp)))
t = time.perf_counter()
v, g = f(params, X, Y); jax.block_until_ready(g)
R["first"] = time.perf_counter() - t
done()""",
        "autograd": MLP + """
import autograd.numpy as anp; from autograd import value_and_grad
t = time.perf_counter()
v, g = value_and_grad(lambda p, X, Y: loss(p, X, Y, np=anp))(params, X, Y)
R["first"] = time.perf_counter() - t
done()""",
    },
    "demo": {
        "jvpvjp": """
import contextlib, io, re
from jvpvjp.__main__ import main
buf = io.StringIO()
with contextlib.redirect_stdout(buf):
    main()
text = buf.getvalue()
R["first"] = float(re.search(r"first call .*: ([0-9.]+) s", text).group(1))
R["first calls of grad, jvp, jacfwd"] = float(re.search(r"first calls of .*: ([0-9.]+) s",
                                                        text).group(1))
done()""",
    },
}

for _n in (1000, 10000):
    CASES[f"chain{_n}"] = {
        "jvpvjp": f"N = {_n}\n" + CHAIN + """
import jvpvjp
t = time.perf_counter()
g = jvpvjp.value_and_grad(chain)(x0)
R["first"] = time.perf_counter() - t
for _ in range(3):
    jvpvjp.value_and_grad(chain)(x0)
jvpvjp.wait_for_compiles()
f = jvpvjp.value_and_grad(chain)
def med(fn, k=21):
    ts = []
    for _ in range(k):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[k // 2]
R["later call"] = med(lambda: f(x0))
R["numpy primal"] = med(lambda: chain(x0))
R["later / primal"] = R["later call"] / R["numpy primal"]
R["tier"] = f._dispatcher().paths and [k.tier for ps in f._dispatcher().paths.values()
                                        for p in ps for k in p.kernels][0]
done()""",
        "jax": f"N = {_n}\n" + CHAIN + """
import jax; jax.config.update("jax_enable_x64", True); import jax.numpy as jnp
f = jax.jit(jax.value_and_grad(lambda x: chain(x, np=jnp)))
t = time.perf_counter()
v, g = f(jnp.asarray(x0)); g.block_until_ready()
R["first"] = time.perf_counter() - t
done()""",
        "autograd": f"N = {_n}\n" + CHAIN + """
import autograd.numpy as anp; from autograd import value_and_grad
t = time.perf_counter()
v, g = value_and_grad(lambda x: chain(x, np=anp))(x0)
R["first"] = time.perf_counter() - t
done()""",
    }

CASES["scalar20k"] = {
    "jvpvjp": SCALAR + """
import jvpvjp
t = time.perf_counter()
v, g = jvpvjp.value_and_grad(steps)(0.3)
R["first"] = time.perf_counter() - t
done()""",
    "autograd": SCALAR + """
import autograd.numpy as anp; from autograd import value_and_grad
t = time.perf_counter()
v, g = value_and_grad(lambda y: steps(y, np=anp))(0.3)
R["first"] = time.perf_counter() - t
done()""",
}

# 200 calls of a new 100-op function on changing inputs, three ways, in one process whose
# Numba runtime is already loaded (the function is new, the session is not).
CASES["calls200"] = {
    "jvpvjp": """
import jvpvjp
from jvpvjp.backend import tiers
tiers.load_runtime()
rng = np.random.default_rng(0)
xs = [rng.normal(size=16) for _ in range(200)]
def make(c):
    src = "def f(x):\\n" + "".join(
        f"    x = np.sin(x) * {c + k * 1e-3!r} + x * 0.5\\n" for k in range(33)) + \\
        "    return np.sum(x)\\n"
    ns = {"np": np}
    exec(src, ns)
    return ns["f"]
def total(g):
    t = time.perf_counter()
    for x in xs:
        g(x)
    return time.perf_counter() - t
R["interpreter only"] = total(jvpvjp.value_and_grad(make(0.9), compile="never"))
ge = jvpvjp.value_and_grad(make(0.8), compile="eager")
t_all = total(ge)
compile_s = sum(s for p in ge._dispatcher().paths.values() for q in p for k in q.kernels
                for _, s, _ in k.history)
R["compiled, compile excluded"] = t_all - compile_s
R["tiered (default)"] = total(jvpvjp.value_and_grad(make(0.7)))
R["tiered / best"] = R["tiered (default)"] / min(R["interpreter only"],
                                                 R["compiled, compile excluded"])
jvpvjp.wait_for_compiles()
done()""",
}

CASES["percall"] = {
    "jvpvjp": """
import timeit, jvpvjp
def f10(a, b, c):
    return np.sum(a * b + np.sin(c) * a - b / (c + 2.0) + np.exp(a) * c)
g = jvpvjp.grad(f10, argnums=(0, 1, 2), compile="eager")
g(0.3, 0.5, 0.7)
R["cached grad, 3 scalars, 10 ops (per call)"] = min(timeit.repeat(
    lambda: g(0.3, 0.5, 0.7), number=20000, repeat=7)) / 20000
done()""",
}

WARM = {"mlp"}      # also measured with a kernel cache filled by an earlier process


def run_once(script, cache_dir):
    env = dict(os.environ, JVPVJP_CACHE_DIR=cache_dir, PYTHONPATH=_SRC + os.pathsep +
               os.environ.get("PYTHONPATH", ""))
    env.pop("JVPVJP_BACKEND", None)
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(_PRELUDE) + script], env=env,
                       capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(p.stderr.strip().splitlines()[-1] if p.stderr else "failed")
    line = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    return dict(json.loads(line[7:]), wall=wall)


def _installed(tool):
    if tool == "jvpvjp":
        return True
    import importlib.util
    return importlib.util.find_spec(tool) is not None


def _fmt(v):
    if isinstance(v, str):
        return v
    if v < 1e-3:
        return f"{v * 1e6:.2f} µs"
    if v < 1:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--only", default="")
    p.add_argument("--peers", default="jax,autograd")
    p.add_argument("--out", default=os.path.join(_ROOT, "bench", "results", "latency.json"))
    a = p.parse_args(argv)
    only = [s for s in a.only.split(",") if s]
    tools = ["jvpvjp"] + [t for t in a.peers.split(",") if t]
    results = {}
    print(f"| case | tool | cache | figure | min | median | max |\n|---|---|---|---|---|---|---|")
    for case, scripts in CASES.items():
        if only and case not in only:
            continue
        for tool in tools:
            if tool not in scripts or not _installed(tool):
                continue
            modes = ["empty"] + (["warm"] if case in WARM and tool == "jvpvjp" else [])
            for mode in modes:
                runs = []
                warm_dir = None
                if mode == "warm":
                    warm_dir = tempfile.mkdtemp(prefix="jvpvjp-latency-")
                    fill = scripts[tool].replace("value_and_grad(loss)",
                                                 "value_and_grad(loss, compile='eager')")
                    run_once(fill, warm_dir)
                for _ in range(a.runs):
                    d = warm_dir or tempfile.mkdtemp(prefix="jvpvjp-latency-")
                    try:
                        runs.append(run_once(scripts[tool], d))
                    except Exception as e:     # reported in the table, not fatal
                        print(f"| {case} | {tool} | {mode} | failed: {e} | | | |")
                        break
                    finally:
                        if warm_dir is None:
                            shutil.rmtree(d, ignore_errors=True)
                if warm_dir:
                    shutil.rmtree(warm_dir, ignore_errors=True)
                if not runs:
                    continue
                results[f"{case}/{tool}/{mode}"] = runs
                for key in runs[0]:
                    vals = [r[key] for r in runs]
                    if " / " in key:
                        print(f"| {case} | {tool} | {mode} | {key} | {min(vals):.2f} | "
                              f"{statistics.median(vals):.2f} | {max(vals):.2f} |")
                    elif isinstance(vals[0], (int, float)):
                        print(f"| {case} | {tool} | {mode} | {key} | {_fmt(min(vals))} | "
                              f"{_fmt(statistics.median(vals))} | {_fmt(max(vals))} |")
                    else:
                        print(f"| {case} | {tool} | {mode} | {key} | {vals[0]} | | |")
                sys.stdout.flush()
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
