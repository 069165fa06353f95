"""jvpvjp.distributed on a LocalCluster of two worker processes with one thread each."""
import os
import threading
import time

import numpy as np
import pytest

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

import jvpvjp  # noqa: E402
from jvpvjp import distributed as jd  # noqa: E402
from jvpvjp import optim, value_and_grad  # noqa: E402

pytestmark = pytest.mark.dask


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


def mlp_loss(p, X, Y):
    h = np.tanh(X @ p["W1"] + p["b1"])
    z = h @ p["W2"] + p["b2"]
    return jvpvjp.nn.cross_entropy(z, Y)


def _problem(n=600, d=12, k=4, seed=0):
    rng = np.random.default_rng(seed)
    params = {"W1": rng.normal(size=(d, 8)) * 0.3, "b1": np.zeros(8),
              "W2": rng.normal(size=(8, k)) * 0.3, "b2": np.zeros(k)}
    X = rng.normal(size=(n, d))
    Y = np.eye(k)[rng.integers(0, k, n)]
    return params, X, Y


def _close(a, b, rtol=1e-12):
    for p, q in zip(jvpvjp.tree_flatten(a)[0], jvpvjp.tree_flatten(b)[0]):
        np.testing.assert_allclose(p, q, rtol=rtol, atol=1e-15)


def test_gradient_equals_the_single_process_one(client):
    params, X, Y = _problem()

    def loss(p, X, Y):     # a function of its own, which no other test has built on the
        return mlp_loss(p, X, Y)           # workers: its first calls there are reported
    want = value_and_grad(loss)(params, X, Y)
    vg = jd.value_and_grad(loss, reduce="mean", client=client)
    for chunks in (150, (100, 200, 300)):
        got = vg(params, da.from_array(X, chunks=(chunks, 12)),
                 da.from_array(Y, chunks=(chunks, 4)))
        _close(got, want)
    assert set(vg.compile_times) <= set(client.scheduler_info()["workers"])
    assert vg.compile_times and all(t >= 0 for t in vg.compile_times.values())
    # a sum over rows, and partitions given as lists of futures
    def sum_loss(p, X, Y):
        return mlp_loss(p, X, Y) * X.shape[0]
    blocks_X = client.scatter([X[:250], X[250:]])
    blocks_Y = client.scatter([Y[:250], Y[250:]])
    got = jd.value_and_grad(sum_loss, reduce="sum", client=client)(params, blocks_X, blocks_Y)
    _close(got, value_and_grad(sum_loss)(params, X, Y))


def test_training_matches_single_process_step_for_step(client):
    params, X, Y = _problem(n=300, seed=1)
    kw = dict(epochs=2, batch_size=64, seed=3, progress=False)
    local, h_local = optim.fit(mlp_loss, params, (X, Y), optimizer=optim.Adam(1e-2), **kw)
    seen = []
    dist, h_dist = optim.fit(mlp_loss, params, (X, Y), optimizer=optim.Adam(1e-2),
                             client=client, callback=lambda *a: seen.append(a[0]), **kw)
    assert seen == [0, 1]
    np.testing.assert_allclose(h_dist, h_local, rtol=1e-10)
    _close(dist, local, rtol=1e-9)


def test_distributed_jacobians(client):
    rng = np.random.default_rng(2)
    A = rng.normal(size=(30, 20))

    def f(x):
        return np.tanh(A @ x) * x[0]
    x = rng.normal(size=20)
    want = jvpvjp.jacfwd(f)(x)
    for jac in (jd.jacrev, jd.jacfwd):
        np.testing.assert_allclose(jac(f, client=client, blocks=3)(x), want, rtol=1e-12,
                                   atol=1e-13)
    lazy = jd.jacrev(f, client=client, small=10)(x)          # large: a dask array
    assert isinstance(lazy, da.Array) and lazy.shape == (30, 20)
    np.testing.assert_allclose(lazy.compute(), want, rtol=1e-12, atol=1e-13)


def test_an_exception_in_a_task_reaches_the_caller_with_the_users_line(client):
    def bad_loss(p, X, Y):
        return float(np.sum(X @ p["W1"]))         # float() of a traced value: refused
    params, X, Y = _problem(n=40)
    with pytest.raises(jvpvjp.TracingError, match=r"test_distributed.py.*float\(np.sum"):
        jd.value_and_grad(bad_loss, client=client)(params, da.from_array(X, chunks=20),
                                                     da.from_array(Y, chunks=20))


def _slow_block(b):
    time.sleep(1.0)
    return b


def test_a_worker_killed_mid_step_leaves_the_result_unchanged(client):
    params, X, Y = _problem(n=400, seed=4)
    want = value_and_grad(mlp_loss)(params, X, Y)
    # partitions that take a second to produce, so that the step is under way when one
    # worker dies; Dask recomputes what it held and runs its tasks elsewhere
    Xd = da.from_array(X, chunks=(100, 12)).map_blocks(_slow_block, dtype=X.dtype)
    Yd = da.from_array(Y, chunks=(100, 4))
    victim = sorted(client.scheduler_info()["workers"])[0]

    def kill():
        try:
            client.run(os._exit, 1, workers=[victim])
        except Exception:          # noqa: BLE001  (the worker dies before it answers)
            pass
    killer = threading.Timer(0.5, kill)
    killer.start()
    try:
        got = jd.value_and_grad(mlp_loss, client=client)(params, Xd, Yd)
    finally:
        killer.join()
    _close(got, want)
    client.wait_for_workers(2, timeout=60)
    assert victim not in client.scheduler_info()["workers"]     # it did die (a new one came)


def test_errors_without_a_client(monkeypatch):
    from jvpvjp.distributed import _client

    def none():
        raise ValueError("No clients found")
    monkeypatch.setattr(distributed, "get_client", none)
    with pytest.raises(ValueError, match="no Dask client"):
        _client(None)
    with pytest.raises(ValueError, match="reduce"):
        jd.value_and_grad(mlp_loss, reduce="max")
