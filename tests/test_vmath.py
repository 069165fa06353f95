"""The vectorisable math functions of compiled loops (backend.vmath) against NumPy, and
the loop nests that use them: at most 2 ulp everywhere, special values exact."""
import functools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from jvpvjp.backend import vmath

FUNCTIONS = {"exp": np.exp, "expm1": np.expm1, "log": np.log, "log1p": np.log1p,
             "tanh": np.tanh}
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2250738585072014e-308,
           -2.2250738585072014e-308, 1e-300, -1e-300, 1e-17, -1e-17, 0.5, -0.5, 1.0, -1.0,
           0.625, -0.625, 0.34657359027997264, -0.34657359027997264, 709.782712893384,
           709.79, 710.0, -745.1332191019411, -745.14, -746.0, 36.7368005696771, 1e308,
           -1e308, 1.7976931348623157e308, -0.9999999999999999, -1.0 + 1e-10, 22.0, 20.0]


@functools.lru_cache(maxsize=None)
def loop(name):
    """A compiled loop applying vmath's ``name`` to an array (float32 or float64)."""
    from numba import njit
    fn = getattr(vmath, "v" + name)

    @njit(error_model="numpy")
    def run(a, out):
        for i in range(a.size):
            out[i] = fn(a[i])
    return run


def ulps(got, ref):
    """Distance in units of the reference's last place; 0 where both agree exactly
    (signed zeros and NaN included), inf where one is special and the other differs."""
    got, ref = np.asarray(got), np.asarray(ref)
    same = (got == ref) & (np.signbit(got) == np.signbit(ref)) | np.isnan(got) & np.isnan(ref)
    with np.errstate(all="ignore"):
        tiny = np.finfo(ref.dtype).smallest_subnormal
        d = (np.abs(got.astype(np.float64) - ref.astype(np.float64))
             / np.spacing(np.maximum(np.abs(ref), tiny)).astype(np.float64))
    d = np.where(same, 0.0, d)
    return np.where(~same & ~(np.isfinite(got) & np.isfinite(ref)), np.inf, d)


def _run(loop, x):
    out = np.empty_like(x)
    loop(x, out)
    return out


def _sweeps():
    rng = np.random.default_rng(0)
    pos = np.geomspace(5e-324, 1.7e308, 200_001)
    return [np.array(SPECIAL), np.linspace(-750.0, 750.0, 300_001),
            np.linspace(-2.0, 2.0, 200_001), pos, -pos,
            rng.integers(0, 2 ** 64, size=300_000, dtype=np.uint64).view(np.float64)]


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_float64_within_2_ulp_of_numpy_on_dense_sweeps(name):
    for x in _sweeps():
        with np.errstate(all="ignore"):
            ref = FUNCTIONS[name](x)
        err = ulps(_run(loop(name), x), ref)
        worst = int(np.argmax(err))
        assert err[worst] <= 2.0, (name, x[worst], err[worst])


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_special_values_exact(name):
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, -1.0, -2.0])
    with np.errstate(all="ignore"):
        ref = FUNCTIONS[name](x)
    got = _run(loop(name), x)
    assert np.all(ulps(got, ref) == 0), (name, got, ref)


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_float32_within_2_ulp(name):
    run = loop(name)
    with np.errstate(over="ignore"):
        special = np.array(SPECIAL).astype(np.float32)
    x = np.concatenate([special,
                        np.linspace(-110, 110, 100_001, dtype=np.float32),
                        np.random.default_rng(1).integers(0, 2 ** 32, size=100_000,
                                                          dtype=np.uint32).view(np.float32)])
    out = np.empty_like(x)
    run(x, out)
    assert out.dtype == np.float32
    with np.errstate(all="ignore"):
        ref = FUNCTIONS[name](x.astype(np.float64)).astype(np.float32)  # correctly rounded
    err = ulps(out, ref)
    assert err.max() <= 2.0, (name, x[np.argmax(err)])


@given(hnp.arrays(np.float64, st.integers(1, 64),
                  elements=st.floats(allow_nan=True, allow_infinity=True,
                                     allow_subnormal=True)),
       st.sampled_from(sorted(FUNCTIONS)))
def test_hypothesis_within_2_ulp(x, name):
    with np.errstate(all="ignore"):
        ref = FUNCTIONS[name](x)
    assert ulps(_run(loop(name), x), ref).max() <= 2.0


def test_a_loop_with_them_is_vectorised():
    """No call left in the loop: LLVM's vector instructions on 4 doubles (ymm) or more."""
    run = loop("tanh")
    x = np.linspace(-3, 3, 64)
    _run(run, x)
    asm = run.inspect_asm(run.signatures[0])
    assert "pd\t" in asm and ("ymm" in asm or "zmm" in asm)
