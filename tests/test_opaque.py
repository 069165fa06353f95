"""Large helpers (np.linalg, products of stacks, sorting) are called by kernels through a
symbol: their code is compiled once, never linked into each kernel, and a kernel loaded
from the disk cache in a new process finds them."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import jvpvjp
from jvpvjp import config
from jvpvjp.testing import use_backend

CODE = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    warnings.simplefilter("error", RuntimeWarning)
    import jvpvjp
    from jvpvjp.backend import numba_backend as nb, opaque

    def f(a):
        s = np.linalg.svd(a, full_matrices=False)[1]
        w = np.linalg.eigh(a @ a.T + np.eye(3))[0]
        x = np.linalg.solve(a @ a.T + 3.0 * np.eye(3), a[:, 0])
        b = np.stack([a, 2.0 * a]) @ np.stack([a.T, a.T])
        return (np.sum(s * w) + np.sum(x) + np.sum(b) + np.linalg.det(a @ a.T)
                + np.sum(np.sort(a, axis=0) * a))

    def g(a):
        return np.linalg.det(a) + np.sum(np.linalg.solve(a, a[:, 1]))

    a = np.arange(9.0).reshape(3, 3) / 7.0 + np.eye(3)
    value = jvpvjp.jit(f)(a)      # (the derivatives of these are the registry's tests)
    grad = jvpvjp.grad(g)(a)
    misses = sum(sum(fn.stats.cache_misses.values()) for fn in nb._modules.values())
    print(json.dumps(dict(value=float(value), grad=np.asarray(grad).tolist(), misses=misses,
                          symbols=sorted(opaque._callbacks))))
""")


def _run(cache_dir):
    env = dict(os.environ, JVPVJP_CACHE_DIR=str(cache_dir), JVPVJP_BACKEND="numba")
    p = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_a_kernel_calling_them_loads_from_the_disk_cache_in_a_new_process(tmp_path):
    first = _run(tmp_path)
    second = _run(tmp_path)         # machine code from the disk cache: symbols registered
    assert first["misses"] > 0 and second["misses"] == 0
    assert second["value"] == first["value"] and second["grad"] == first["grad"]
    # registered before loading: exactly the routines compiling the kernels typed
    assert second["symbols"] == first["symbols"]
    assert {"jvpvjp_svd_float64", "jvpvjp_argsort_float64"} <= set(first["symbols"])
    ns = {"np": np}
    exec("def f" + CODE.split("def f")[1].split("a = np.arange")[0], ns)
    a = np.arange(9.0).reshape(3, 3) / 7.0 + np.eye(3)
    value = ns["f"](a)
    with use_backend("numpy"):
        grad = jvpvjp.grad(ns["g"])(a)
    np.testing.assert_allclose(first["value"], value, rtol=1e-10)
    np.testing.assert_allclose(first["grad"], grad, rtol=1e-8, atol=1e-10)


def test_kernels_hold_a_call_not_the_code(compiled, monkeypatch):
    from jvpvjp.backend import numba_backend as nb
    monkeypatch.setattr(config, "cache_dir", None)      # compiled here: its IR is at hand
    before = set(nb._modules)
    f = jvpvjp.jit(lambda a: np.linalg.svd(a, full_matrices=False)[1] +
                   np.linalg.eigvalsh(a + a.T + 0.125))
    f(np.eye(3) + 0.1)
    irs = ["\n".join(fn.inspect_llvm(sig) for sig in fn.signatures)
           for key, fn in nb._modules.items() if key not in before]
    calling = [ir for ir in irs if "@jvpvjp_svd" in ir and "@jvpvjp_eigh" in ir]
    assert calling
    # Numba's SVD and eigh call LAPACK through these; linked, they would be in the kernel
    for ir in calling:
        assert "numba_ez_gesdd" not in ir and "numba_ez_xxxevd" not in ir


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_failures_raise_numpys_error(backend):
    with use_backend(backend):
        g = jvpvjp.grad(lambda a: np.sum(np.linalg.cholesky(a)))
        g(np.eye(2) * 2.0)
        with pytest.raises(np.linalg.LinAlgError):
            g(-np.eye(2))                      # not positive definite
        with pytest.raises(np.linalg.LinAlgError):
            jvpvjp.grad(lambda a: np.sum(np.linalg.svd(a, full_matrices=False)[1]))(
                np.full((2, 2), np.nan))
        h = jvpvjp.grad(lambda a: np.sum(np.linalg.solve(a, a[:, 0])))
        h(np.eye(2) * 2.0)
        with pytest.raises(np.linalg.LinAlgError):
            h(np.ones((2, 2)))                 # singular


@pytest.mark.parametrize("matrix", [[[np.inf, 0.0], [0.0, 1.0]], [[np.nan, 1.0], [2.0, 3.0]],
                                    [[1.0, 2.0], [2.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]],
                                    [[-2.0, 1.0], [0.5, 3.0]]])
def test_det_as_numpy_computes_it(matrix, compiled):
    a = np.array(matrix)
    f = jvpvjp.jit(lambda a: np.linalg.det(a))
    with np.errstate(all="ignore"):
        np.testing.assert_allclose(f(a), np.linalg.det(a), rtol=1e-15)
        np.testing.assert_allclose(f(a.astype(np.float32)),
                                   np.linalg.det(a.astype(np.float32)), rtol=1e-6)


def test_machine_code_built_against_other_helpers_is_not_loaded(compiled, monkeypatch,
                                                                 tmp_path):
    """Kernels call code outside their text (helpers, these routines): a kernel cached on
    disk against another version of it is compiled again, never loaded."""
    from jvpvjp.backend import numba_backend as nb
    monkeypatch.setattr(config, "cache_dir", str(tmp_path))
    ol = jvpvjp.make_oplist(lambda a: np.linalg.det(a) * np.sin(a))(np.eye(2))
    source = nb.generate_source(ol)[0]
    nb.NumbaKernel(ol)(np.eye(2) + 0.5)
    assert nb.on_disk(source)
    monkeypatch.setattr(nb, "_FINGERPRINT", "other helper code")
    assert not nb.on_disk(source)


ORDER = textwrap.dedent("""
    import json, sys
    import numpy as np
    import jvpvjp
    a = np.arange(9.0).reshape(3, 3) / 7.0 + np.eye(3)
    fns = {"svd": lambda a: np.linalg.svd(a, compute_uv=False),
           "eigh": lambda a: np.linalg.eigvalsh(a),
           "det": lambda a: np.linalg.det(a),
           "svd_grad": jvpvjp.grad(lambda a: np.sum(np.linalg.svd(a, compute_uv=False))),
           "eigh_grad": jvpvjp.grad(lambda a: np.sum(np.linalg.eigvalsh(a)))}
    out = {}
    for name in sys.argv[1:]:
        f = fns[name] if name.endswith("_grad") else jvpvjp.jit(fns[name])
        out[name] = np.asarray(f(a)).tolist()
    print(json.dumps(out))
""")


def test_kernels_from_the_disk_cache_call_their_own_stubs(tmp_path):
    """Kernels compiled in one process, loaded in another that compiled other kernels
    first: each calls its own stub's code, whatever the order compiled the stubs in."""
    env = dict(os.environ, JVPVJP_CACHE_DIR=str(tmp_path), JVPVJP_BACKEND="numba")

    def run(*names):
        p = subprocess.run([sys.executable, "-c", ORDER, *names], env=env,
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stdout + p.stderr
        return json.loads(p.stdout.strip().splitlines()[-1])

    first = run("svd", "svd_grad", "det")          # compiled and cached in this order
    later = run("eigh", "eigh_grad", "det", "svd", "svd_grad")   # the others loaded
    for name in first:
        assert later[name] == first[name], name


def test_argsort_is_numpys_stable_order(compiled):
    # insertion-sorted runs of 16, then merges: lengths around each run and pass boundary,
    # ties, signed zeros, infinities and NaNs (last, in their order); the loop the callbacks
    # run on every length, then one kernel calling the four callbacks
    from jvpvjp.backend.opaque import _argsort_loop
    rng = np.random.default_rng(3)

    def sample(dtype, n):
        x = rng.integers(-4, 4, size=(3, n)).astype(dtype)
        if x.dtype.kind == "f" and n:
            for value, p in [(np.nan, 0.2), (-0.0, 0.1), (np.inf, 0.05), (-np.inf, 0.05)]:
                x[rng.random(x.shape) < p] = value
        return x

    dtypes = ["float64", "float32", "int64", "int32"]
    for dtype in dtypes:
        for n in [0, 1, 15, 16, 17, 32, 33, 64, 65, 129, 1000]:
            x = sample(dtype, n)
            out = np.empty(x.shape, np.int64)
            _argsort_loop(x, out)
            np.testing.assert_array_equal(out, np.argsort(x, axis=-1, kind="stable"))
    xs = [sample(dtype, 40) for dtype in dtypes]
    f = jvpvjp.jit(lambda *xs: [np.argsort(x, axis=-1, kind="stable") for x in xs])
    for got, x in zip(f(*xs), xs):
        np.testing.assert_array_equal(got, np.argsort(x, axis=-1, kind="stable"))


def test_products_of_stacks_make_numpys_blas_calls():
    # the callback calls BLAS as Numba's np.dot(op(a), op(b), out) does: gemm, or gemv / dot
    # when op(a) has one row or op(b) one column (their sums run in other orders: the
    # same call is needed for the same bits)
    from numba import njit
    from jvpvjp.backend.opaque import _matmul_loop

    @njit
    def numba_dot(a, b, out, ta, tb):
        for i in range(a.shape[0]):        # (one branch per layout: a variable holding
            if ta and tb:                     # both would be typed "A" and copied)
                np.dot(a[i].T, b[i].T, out[i])
            elif ta:
                np.dot(a[i].T, b[i], out[i])
            elif tb:
                np.dot(a[i], b[i].T, out[i])
            else:
                np.dot(a[i], b[i], out[i])

    rng = np.random.default_rng(5)
    for dtype in (np.float64, np.complex128):
        for m, k, n in [(1, 1, 1), (1, 300, 1), (1, 300, 7), (7, 300, 1), (5, 9, 6),
                        (1, 0, 3), (0, 4, 2), (40, 257, 33)]:
            for ta in (False, True):
                for tb in (False, True):
                    a = rng.normal(size=(2, k, m) if ta else (2, m, k)).astype(dtype)
                    b = rng.normal(size=(2, n, k) if tb else (2, k, n)).astype(dtype)
                    if a.dtype.kind == "c":
                        a, b = a * (1 + 0.5j), b * (0.25 - 1j)
                    got, want = np.full((2, m, n), np.nan, dtype), np.empty((2, m, n), dtype)
                    _matmul_loop(a, b, got, ta, tb)
                    numba_dot(a, b, want, ta, tb)
                    assert np.array_equal(got, want), (dtype, m, k, n, ta, tb)
