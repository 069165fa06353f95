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
             "tanh": np.tanh, "sin": np.sin, "cos": np.cos}
SPECIAL = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2250738585072014e-308,
           -2.2250738585072014e-308, 1e-300, -1e-300, 1e-17, -1e-17, 0.5, -0.5, 1.0, -1.0,
           0.625, -0.625, 0.34657359027997264, -0.34657359027997264, 709.782712893384,
           709.79, 710.0, -745.1332191019411, -745.14, -746.0, 36.7368005696771, 1e308,
           -1e308, 1.7976931348623157e308, -0.9999999999999999, -1.0 + 1e-10, 22.0, 20.0,
           0.7853981633974483, 0.7853981633974484, 1.5707963267948966, 3.141592653589793,
           4.71238898038469, 1647099.0, 1647100.0, -1647099.3291436, 1e22, 2.0 ** 1000]


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


@pytest.mark.parametrize("name", ["tanh", "sin"])
def test_a_loop_with_them_is_vectorised(name):
    """No call left in the loop: LLVM's vector instructions on 4 doubles (ymm) or more."""
    run = loop(name)
    x = np.linspace(-3, 3, 64)
    _run(run, x)
    asm = run.inspect_asm(run.signatures[0])
    assert "pd\t" in asm and ("ymm" in asm or "zmm" in asm)


# sin and cos where the argument reduction is hardest, correctly rounded (mpmath, 4000 bits):
# x, sin x, cos x. The first is the double closest to a multiple of pi/2 (61 bits cancel);
# NumPy's own cos is 8 ulp off there.
HARD_TRIG = [
    (5.319372648326541e+255, 1.0, -4.687165924254628e-19),
    (1e+22, -0.8522008497671888, 0.523214785395139),
    (8.98846567431158e+307, 0.563127779850884, -0.826369834614148),
    (1.7976931348623157e+308, 0.004961954789184062, -0.9999876894265599),
    (1647099.0, -0.3232532403530771, 0.9463124973290988),
    (1647100.0, 0.6216400379214212, 0.7833030468809974),
    (1647099.3291436, -2.1685444693696587e-05, 0.9999999997648708),
    (3.141592653589793, 1.2246467991473532e-16, -1.0),
    (1.5707963267948966, 1.0, 6.123233995736766e-17),
    (4.71238898038469, -1.0, -1.8369701987210297e-16),
    (1.0715086071862673e+301, -0.15920170308624243, 0.9872460775989135),
    (355.0, -3.014435335948845e-05, -0.999999999545659),
    (103993.0, -1.9129335778423752e-05, 0.9999999998170342),
    (1900000.0, 0.6283045201790586, -0.777967499271379),
]


def _sincos_array(x, cosine):
    from jvpvjp.backend.numba_helpers import _sincos_array as run
    return run(x, cosine)


def test_sin_cos_within_1_ulp_of_the_exact_result_where_reduction_is_hardest():
    x = np.array([h[0] for h in HARD_TRIG])
    x = np.concatenate([x, -x])
    want = {"sin": np.array([h[1] for h in HARD_TRIG]), "cos": np.array([h[2] for h in HARD_TRIG])}
    want = {"sin": np.concatenate([want["sin"], -want["sin"]]),
            "cos": np.concatenate([want["cos"], want["cos"]])}
    for name in ("sin", "cos"):
        for got in (_run(loop(name), x), _sincos_array(x, name == "cos")):
            err = ulps(got, want[name])
            assert err.max() <= 1.0, (name, x[np.argmax(err)], err.max())


def test_whole_array_sin_cos_take_the_full_reduction_only_where_needed():
    """The compiled whole-array sin and cos (large arrays outside loop nests): blocks with
    an element beyond the medium range, or inf and NaN, are computed again by the full
    functions; any layout and shape; float32 stays float32."""
    rng = np.random.default_rng(3)
    x = rng.uniform(-1e6, 1e6, size=(3, 5000))
    x[0, 17] = 1e22
    x[1, 4000] = np.inf
    x[2, 2] = np.nan
    x[2, 4999] = -1647099.0
    for name in ("sin", "cos"):
        for a in (x, x.T, x[:, ::3], x.astype(np.float32)):
            got = _sincos_array(a, name == "cos")
            assert got.shape == a.shape and got.dtype == a.dtype
            with np.errstate(invalid="ignore"):
                ref = FUNCTIONS[name](a.astype(np.float64)).astype(a.dtype)
            assert ulps(got, ref).max() <= 2.0, name
        # the medium range agrees with the full functions there, within an ulp
        y = rng.uniform(-1647099.0, 1647099.0, 20_000)
        full = _run(loop(name), y)
        err = ulps(_sincos_array(y, name == "cos"), full)
        assert err.max() <= 1.0


def test_large_sin_cos_in_kernels_are_compiled_loops(compiled):
    """Large arrays no longer leave compiled code for NumPy's sin and cos."""
    import jvpvjp
    from jvpvjp.backend import numba_backend as nb
    x = np.linspace(-20.0, 20.0, 10_000)
    f = lambda x: np.sum(np.sin(x) * np.cos(2.0 * x))
    src = nb.generate_source(jvpvjp.make_oplist(f)(x))[0]
    assert "with objmode" not in src and "_sincos_array(" in src
    v, g = jvpvjp.value_and_grad(f)(x)
    np.testing.assert_allclose(v, f(x), atol=1e-11)     # a sum that cancels to about 0
    np.testing.assert_allclose(g, np.cos(x) * np.cos(2 * x) - 2 * np.sin(x) * np.sin(2 * x),
                               rtol=1e-13, atol=1e-15)
