"""Data-parallel gradients and training on Dask: 1 and 2 worker processes against one.

    python bench/dask_scaleout.py [--n 200000] [--quick]

* The gradient of the 784-128-10 MLP loss (tanh, softmax cross-entropy, mean over rows)
  over n samples held in a dask array (chunks of n/4 rows, generated on the workers),
  by `jvpvjp.distributed.value_and_grad` on LocalClusters of 1 and 2 worker processes of
  one thread each, and by `jvpvjp.value_and_grad` in this process on the same data.
* The per-step overhead of distributed `fit` (Adam) at batch 10,000, against the same
  steps in one process.

Times are medians of repeated calls after a first call that compiles (reported per worker).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "src"))
from bench import threads  # noqa: E402

threads.configure(1)

import numpy as np  # noqa: E402


def loss(p, X, labels):
    from jvpvjp import nn
    h = np.tanh(X @ p["W1"] + p["b1"])
    return nn.cross_entropy(h @ p["W2"] + p["b2"], labels)


def params0():
    rng = np.random.default_rng(0)
    return {"W1": rng.normal(size=(784, 128)) * 0.05, "b1": np.zeros(128),
            "W2": rng.normal(size=(128, 10)) * 0.1, "b2": np.zeros(10)}


def data(n):
    import dask.array as da
    rs = da.random.default_rng(0)
    X = rs.normal(size=(n, 784), chunks=(n // 4, 784))
    labels = rs.integers(0, 10, size=n, chunks=n // 4)
    return X, labels


def median(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="n = 40,000")
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)
    n = 40_000 if a.quick else a.n
    import distributed
    import jvpvjp
    from jvpvjp import distributed as jd
    from jvpvjp import optim

    p = params0()
    X, labels = data(n)
    X_np, labels_np = X.compute(), labels.compute()
    vg = jvpvjp.value_and_grad(loss, compile="eager")
    t_one = median(lambda: vg(p, X_np, labels_np), a.repeat)
    want = vg(p, X_np, labels_np)
    print(f"gradient of the 784-128-10 MLP loss over {n:,} samples")
    print(f"  one process:        {t_one:8.3f} s")
    # both clusters up at once, their calls interleaved: the machine's background load
    # then weighs on both alike
    import contextlib
    rows = {1: [], 2: []}
    with contextlib.ExitStack() as stack:
        setups = {}
        for workers in (1, 2):
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address=None))
            client = stack.enter_context(distributed.Client(cluster, set_as_default=False))
            client.run(threads.configure, 1)
            Xd, ld = data(n)
            dvg = jd.value_and_grad(loss, client=client)
            t0 = time.perf_counter()
            got = dvg(p, Xd, ld)
            first = time.perf_counter() - t0
            err = max(float(np.linalg.norm(np.ravel(x - y)) / np.linalg.norm(np.ravel(y)))
                      for x, y in zip(jvpvjp.tree_flatten(got)[0],
                                      jvpvjp.tree_flatten(want)[0]))
            held = {}
            for w in client.who_has(distributed.futures_of(client.persist(Xd))).values():
                for addr in w:
                    held[addr] = held.get(addr, 0) + 1
            setups[workers] = (client, dvg, Xd, ld, first, err, held)
        for _ in range(a.repeat):
            for workers, (client, dvg, Xd, ld, *_rest) in setups.items():
                t = time.perf_counter()
                dvg(p, Xd, ld)
                rows[workers].append(time.perf_counter() - t)
        for workers, (client, dvg, Xd, ld, first, err, held) in setups.items():
            compiles = ", ".join(f"{v:.2f} s" for v in dvg.compile_times.values())
            t = float(np.median(rows[workers]))
            rows[workers] = t
            print(f"  {workers} worker{'s' if workers > 1 else ' '}:          {t:8.3f} s   "
                  f"(first call {first:.2f} s; first calls per worker: {compiles}; "
                  f"relative difference {err:.1e}; partitions per worker "
                  f"{sorted(held.values())})")
        client = setups[2][0]
        Xs, ls = X_np[:50_000], labels_np[:50_000]

        def per_step(**kw):
            stamps = []
            optim.fit(loss, p, (Xs, ls), epochs=4, batch_size=10_000, progress=False,
                      optimizer=optim.Adam(1e-3),
                      callback=lambda *_: stamps.append(time.perf_counter()), **kw)
            return float(np.median(np.diff(stamps))) / 5     # 5 steps per epoch
        t_local = per_step()
        t_dist = per_step(client=client)
    print(f"  speed-up from 1 to 2 workers: {rows[1] / rows[2]:.2f}x; "
          f"2 workers vs one process: {t_one / rows[2]:.2f}x")
    print(f"fit, batch 10,000, Adam (epochs after the first): one process "
          f"{t_local * 1e3:.1f} ms per step, 2 workers {t_dist * 1e3:.1f} ms per step; "
          f"overhead {(t_dist - t_local / 2) * 1e3:+.1f} ms against half the one-process "
          f"step")


if __name__ == "__main__":
    main()
