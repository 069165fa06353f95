"""The corpus: public NumPy functions, unmodified, with points to differentiate them at.

The functions live in one module per source, so that each keeps the namespace its source
file gives it (SciPy's benchmark files do ``from numpy import sum, abs, ...``; nevergrad's
imports ``exp`` and ``sqrt`` from ``math``):

* ``scipy_go``        SciPy's global-optimisation benchmark suite (``go_funcs_*.py``);
* ``scipy_optimize``  ``scipy.optimize``'s Rosenbrock family, the optimisation benchmark
                      test functions (Lennard-Jones, ...) and ``test_least_squares.py``;
* ``autograd_src``    HIPS/autograd's examples and tests;
* ``nevergrad_src``   facebookresearch/nevergrad's test functions;
* ``statsmodels_src`` statsmodels' robust norms and logit likelihood;
* ``misc_src``        hamiltonian-nn's physics, numba's Black-Scholes example, NumPy's
                      ``polyval``/``sinc``, scikit-learn's Gaussian-mixture estimators.

Each function is cited (repository, path, function or class, URL) in a comment directly
above its definition there. This module only builds the tables:

* ``CORPUS``: ``(name, f, args)`` that jvpvjp differentiates correctly; ``args`` are float64
  points where ``f`` is smooth (away from kinks of abs/max/floor, ties, singular points).
* ``KNOWN_FAILURES``: ``(name, f, args, reason)`` that jvpvjp cannot trace today, with
  the error it raises; the tests mark them ``xfail(strict=True)``.
* ``TOLERANCES``: per-function ``check_grads`` tolerances where the defaults do not fit.
* ``NUMBA_SUBSET``: names also checked on the compiled ("numba") backend.

A few entries call the source function through a small test harness defined here (named
``*_fresh`` / ``*_state``, or a ``functools.partial`` binding a string argument); the
harness never changes what the source function computes.
"""
import functools

import numpy as np

from . import autograd_src as ag
from . import misc_src as ms
from . import nevergrad_src as ng
from . import scipy_go as go
from . import scipy_optimize as so
from . import statsmodels_src as sm

_rng = np.random.default_rng(20240611)


def _a(*values):
    return np.array(values, dtype=np.float64)


def _normal(*shape):
    return _rng.standard_normal(shape)


def _spd(n, shift):
    m = _rng.standard_normal((n, n))
    return m @ m.T + shift * np.eye(n)


# -- test harnesses (not from the sources) ---------------------------------------------------
def project_fresh(vx, vy):
    """fluidsim's project updates its arguments in place (``vx -= ...``), as the example
    calls it on fresh arrays; give it copies so the caller's arrays stay as they were."""
    return ag.project(np.copy(vx), np.copy(vy))


def update_state(state):
    """hamiltonian-nn's ``update(t, state)`` is an ODE right-hand side; ``t`` is unused."""
    return ms.update(None, state)


def black_scholes_prices(stockPrice, optionStrike, optionYears):
    """numba's ``black_scholes`` writes its results into output arrays, which the
    example's ``main()`` allocates; here they are made with ``np.zeros_like``."""
    callResult = np.zeros_like(stockPrice)
    putResult = np.zeros_like(stockPrice)
    ms.black_scholes(callResult, putResult, stockPrice, optionStrike, optionYears,
                     ms.RISKFREE, ms.VOLATILITY)
    return callResult, putResult


# the cited function each harness calls (checked by test_corpus.test_cited)
project_fresh.corpus_source = ag.project
update_state.corpus_source = ms.update
black_scholes_prices.corpus_source = ms.black_scholes


gmm_log_prob_full = functools.partial(ms._estimate_log_gaussian_prob, covariance_type="full")
gmm_log_prob_diag = functools.partial(ms._estimate_log_gaussian_prob, covariance_type="diag")


# -- points ------------------------------------------------------------------------------------
_STATE = np.array([[1.0, 0.9, 0.1, 0.2, -0.3],      # 3 bodies: mass, x, y, vx, vy
                   [1.1, -0.5, 0.8, -0.4, 0.1],
                   [0.9, -0.3, -0.9, 0.3, 0.25]])
_LJ4 = np.array([[0.0, 0.0, 0.0], [1.1, 0.1, 0.0],  # 4 atoms, pair distances 1.0 .. 1.3
                 [0.5, 1.0, 0.1], [0.4, 0.3, 1.05]]).ravel()
_X6 = _normal(6, 2)
_MEANS3 = _normal(3, 2)
_RESP = _rng.uniform(0.1, 1.0, (6, 3))
_S4 = _spd(4, 1.0)
_W = _normal(5, 10)
_W[:, -1] = _a(0.5, 1.5, 2.5, 3.5, 4.5)             # cast to int: indices 0..4, not at integers
_PREC_CHOL = np.tril(_normal(3, 2, 2), -1) + np.diag(_a(1.3, 0.8))
_LOGIT = sm.Logit(endog=_a(1, 0, 0, 1, 1, 0, 1, 0), exog=np.column_stack([np.ones(8), _normal(8, 2)]))
_NN_PARAMS = [(_normal(3, 4), _normal(4)), (_normal(4, 2), _normal(2))]

CORPUS = [
    # SciPy global-optimisation benchmarks
    ("scipy_go.Ackley01", go.ackley01, (_a(0.3, -0.7),)),
    ("scipy_go.Alpine02", go.alpine02, (_a(2.0, 5.0),)),
    ("scipy_go.DeVilliersGlasser02", go.devilliers_glasser02, (_a(50.0, 1.2, 3.0, 2.0, 0.5),)),
    ("scipy_go.Gulf", go.gulf, (_a(45.0, 25.5, 1.4),)),
    ("scipy_go.Hartmann6", go.hartmann6, (_a(0.21, 0.14, 0.49, 0.27, 0.32, 0.65),)),
    ("scipy_go.HelicalValley", go.helical_valley, (_a(0.8, 0.5, 0.3),)),
    ("scipy_go.Paviani", go.paviani, (np.linspace(3.0, 9.0, 10),)),
    ("scipy_go.Penalty01", go.penalty01, (_a(-1.5, 12.0, 3.0),)),
    ("scipy_go.PermFunction01", go.perm_function01, (_a(1.2, 1.7),)),
    ("scipy_go.Rana", go.rana, (_a(1.3, -0.4, 2.2),)),
    ("scipy_go.Ratkowsky01", go.ratkowsky01, (_a(700.0, 5.3, 0.76, 1.3),)),
    ("scipy_go.Sargan", go.sargan, (_a(0.5, -1.5),)),
    ("scipy_go.Schwefel02", go.schwefel02, (_a(0.5, -1.5),)),
    ("scipy_go.Schwefel06", go.schwefel06, (_a(0.5, 2.0),)),
    ("scipy_go.Schwefel21", go.schwefel21, (_a(0.3, -1.2, 0.8),)),
    ("scipy_go.Shekel10", go.shekel10, (_a(4.1, 3.9, 4.2, 3.8),)),
    ("scipy_go.Shubert01", go.shubert01, (_a(-1.3, 0.6),)),
    ("scipy_go.Thurber", go.thurber, (_a(1288.0, 1491.0, 583.0, 75.4, 0.966, 0.398, 0.0497),)),
    ("scipy_go.Trigonometric01", go.trigonometric01, (_a(0.4, 1.1),)),
    # SciPy optimisation benchmarks and tests
    ("scipy_optimize.LJ.fun", so.LJ().fun, (_LJ4,)),
    ("scipy_optimize.Beale.fun", so.Beale().fun, (_a(2.5, 0.4),)),
    ("scipy_optimize.CrossInTray.fun", so.CrossInTray().fun, (_a(1.3, -1.4),)),
    ("scipy_optimize.fun_rosenbrock", so.fun_rosenbrock, (_a(-1.2, 1.0),)),
    ("scipy_optimize.fun_wrong_dimensions", so.fun_wrong_dimensions, (_a(0.5, -1.0, 2.0),)),
    ("scipy_optimize.BroydenTridiagonal.fun", so.broyden_tridiagonal,
     (-np.ones(6) + 0.1 * _normal(6),)),
    # autograd examples
    ("autograd.logistic_regression.loss", ag.loss,
     (_normal(4), _normal(6, 4), _a(1, 0, 0, 1, 1, 0))),
    ("autograd.gaussian_process.rbf_covariance", ag.rbf_covariance,
     (_a(0.1, -0.2, 0.3), _normal(4, 2), _normal(3, 2))),
    ("autograd.rnn.concat_and_multiply", ag.concat_and_multiply,
     (_normal(6, 4), _normal(5, 2), _normal(5, 3))),
    ("autograd.fluidsim.project", project_fresh, (_normal(5, 5), _normal(5, 5))),
    ("autograd.fluidsim.advect", ag.advect,
     (_normal(5, 5), _rng.uniform(0.1, 0.9, (5, 5)), _rng.uniform(-0.9, -0.1, (5, 5)))),
    # autograd tests
    ("autograd.test_linalg.slogdet", ag.slogdet_logdet, (_normal(4, 4) + 3 * np.eye(4),)),
    ("autograd.test_linalg.inv", ag.inv, (_normal(4, 4) + 4 * np.eye(4),)),
    ("autograd.test_linalg.solve_arg1", ag.solve_arg1, (_normal(8, 8) + 10 * np.eye(8),)),
    ("autograd.test_linalg.norm_nuclear", ag.norm_nuclear, (_normal(4, 3),)),
    ("autograd.test_linalg.eigvalh_lower", ag.eigh_lower, (_S4,)),
    ("autograd.test_linalg.eigvalh_lower_symmetrized", ag.eigh_lower_symmetrized, (_S4,)),
    ("autograd.test_linalg.cholesky", ag.cholesky, (_S4,)),
    ("autograd.test_linalg.cholesky_reparameterization_trick", ag.cholesky_reparameterization,
     (_spd(5, 1.0),)),
    ("autograd.test_numpy.2d_array", ag.array_2d_from_scalar, (3.0,)),
    ("autograd.test_numpy.index_mixed", ag.index_mixed, (_normal(5, 6, 4),)),
    ("autograd.test_numpy.max_equal_values_2d", ag.max_equal_values_2d, (1.0,)),
    ("autograd.test_numpy.c_mixed", ag.c_mixed, (_normal(3, 2),)),
    # nevergrad
    ("nevergrad.lunacek", ng.lunacek, (_a(0.5, -1.0, 2.0),)),
    # statsmodels
    ("statsmodels.HuberT.rho", sm.HuberT().rho, (_a(-2.1, -0.4, 0.3, 1.0, 3.2),)),
    ("statsmodels.HuberT.weights", sm.HuberT().weights, (_a(-2.1, -0.4, 0.3, 1.0, 3.2),)),
    ("statsmodels.AndrewWave.weights", sm.AndrewWave().weights, (_a(-5.0, -0.4, 0.3, 1.0, 3.2),)),
    ("statsmodels.Logit.loglike", _LOGIT.loglike, (_a(0.2, -0.5, 0.8),)),
    ("statsmodels.Logit.hessian", _LOGIT.hessian, (_a(0.2, -0.5, 0.8),)),
    # physics, finance, NumPy, scikit-learn
    ("hamiltonian_nn.pend.hamiltonian_fn", ms.hamiltonian_fn, (_a(0.5, -0.3),)),
    ("hamiltonian_nn.3body.get_accelerations", ms.get_accelerations, (_STATE,)),
    ("hamiltonian_nn.3body.update", update_state, (_STATE.ravel(),)),
    ("hamiltonian_nn.3body.rotate2d", ms.rotate2d, (_a(0.9, 0.1), 0.7)),
    ("numba.blackscholes.black_scholes", black_scholes_prices,
     (_a(10.0, 20.0, 25.0), _a(12.0, 18.0, 30.0), _a(1.0, 2.5, 0.5))),
    ("numpy.sinc", ms.sinc, (_a(0.3, -1.7, 2.4),)),
    ("numpy.sinc_numpy1", ms.sinc_numpy1, (_a(0.3, -1.7, 2.4),)),
    ("sklearn.gmm._estimate_log_gaussian_prob_diag", gmm_log_prob_diag,
     (_X6, _MEANS3, _rng.uniform(0.5, 2.0, (3, 2)))),
    ("sklearn.gmm._estimate_gaussian_covariances_diag", ms._estimate_gaussian_covariances_diag,
     (_RESP, _X6, _RESP.sum(0), _MEANS3, 1e-3)),
    ("autograd.test_numpy.linspace", ag.linspace, (1.2, 3.4)),
    ("sklearn.gmm._estimate_gaussian_covariances_tied", ms._estimate_gaussian_covariances_tied,
     (_RESP, _X6, _RESP.sum(0), _MEANS3, 1e-3)),
]

# (name, f, args, reason): the reason quotes the error jvpvjp raises (first line).
_ZEROS = ("a traced value was converted to a NumPy array (np.asarray, np.array of a list "
          "holding it, assignment into a NumPy array, or a function jvpvjp does not handle)")
_FLOAT = ("float() of a value that depends on a differentiated input: its derivative would "
          "be lost (silently zero)")
KNOWN_FAILURES = [
    ("scipy_go.Deceptive", go.deceptive, (_a(0.1, 0.6),),
     "ValueError: setting an array element with a sequence. (g = zeros((N,)); g[i] = <traced "
     "scalar>: NumPy calls float() on the tracer, whose TracingError is chained as the "
     "cause)"),
    ("scipy_go.Pinter", go.pinter, (_a(0.5, -1.2),),
     "TracingError: xx[1: - 1] = x: " + _ZEROS + " (slice assignment into np.zeros)"),
    ("scipy_optimize.rosen", so.rosen, (_a(-0.8, 0.3, 1.2, 0.7, -0.4),),
     "TracingError: x = asarray(x): " + _ZEROS + " (`from numpy import asarray` binds "
     "NumPy's function at import, before jvpvjp patches numpy.asarray for tracing)"),
    ("scipy_optimize.rosen_der", so.rosen_der, (_a(-0.8, 0.3, 1.2, 0.7, -0.4),),
     "TracingError: x = asarray(x): " + _ZEROS + " (`from numpy import asarray`)"),
    ("scipy_optimize.rosen_hess", so.rosen_hess, (_a(-0.8, 0.3, 1.2, 0.7, -0.4),),
     "TracingError: diagonal[1:-1] = 202 + 1200 * x[1:-1]**2 - 400 * x[2:]: " + _ZEROS +
     " (assignment into np.zeros(len(x), dtype=x.dtype))"),
    ("scipy_optimize.rosen_hess_prod", so.rosen_hess_prod,
     (_a(-0.8, 0.3, 1.2, 0.7, -0.4), _a(0.5, -1.0, 2.0, 0.3, 1.1)),
     "TracingError: Hp[1:-1] = (...): " + _ZEROS + " (assignment into np.zeros(len(x), "
     "dtype=x.dtype))"),
    ("scipy_optimize.fun_bvp", so.fun_bvp, (np.linspace(-0.5, 1.0, 9),),
     "TracingError: u[1:-1, 1:-1] = x: " + _ZEROS + " (assignment into np.zeros((n + 2, n + 2)))"),
    ("autograd.neural_net.neural_net_predict", ag.neural_net_predict,
     (_NN_PARAMS, _normal(5, 3)),
     "ValueError: Can't update read-only array Tracer(shape=(5, 2), ...) "
     "(scipy.special.logsumexp updates an intermediate in place)"),
    ("autograd.test_numpy.cast_to_int", ag.cast_to_int, (_W,),
     "TracingError: new_inds = np.int64(W[:,-1]): " + _ZEROS + " (an integer cast, whose "
     "derivative is zero anyway)"),
    ("nevergrad.schwefel_1_2", ng.schwefel_1_2, (_a(0.5, -1.0, 2.0, 0.3),),
     "TracingError: return float(x.dot(x)): " + _FLOAT),
    ("nevergrad.ackley", ng.ackley, (_a(0.5, -1.0, 2.0, 0.3),),
     "TracingError: return float(x.dot(x)): " + _FLOAT + " (then math.exp/math.sqrt of "
     "traced scalars)"),
    ("nevergrad.ellipsoid", ng.ellipsoid, (_a(0.5, -1.0, 2.0, 0.3, 1.5),),
     "TracingError: return float(weights.dot(x ** 2)): " + _ZEROS + " (ndarray.dot with a "
     "traced argument, before the float())"),
    ("hamiltonian_nn.3body.total_energy", ms.total_energy, (_STATE.reshape(3, 5, 1),),
     "TracingError: numpy.add(..., out=...) on traced values is not supported; use the "
     "result (y = f(x)) or y[...] = f(x) (tot_energy = np.zeros(...); tot_energy += ...)"),
    ("numpy.polyval", ms.polyval, (_a(1.0, -2.0, 0.5, 3.0), _a(0.3, -1.2, 2.0)),
     "TracingError: p = NX.asarray(p): " + _ZEROS + " (numpy._core.numeric.asarray is not "
     "the patched numpy.asarray)"),
    ("sklearn.gmm._estimate_log_gaussian_prob_full", gmm_log_prob_full,
     (_X6, _MEANS3, _PREC_CHOL),
     "TracingError: log_prob[:, k] = np.sum(np.square(y), axis=1): " + _ZEROS +
     " (column assignment into np.empty)"),
    ("sklearn.gmm._estimate_gaussian_covariances_full", ms._estimate_gaussian_covariances_full,
     (_RESP, _X6, _RESP.sum(0), _MEANS3, 1e-3),
     "TracingError: covariances[k] = np.dot(resp[:, k] * diff.T, diff) / nk[k]: " + _ZEROS +
     " (row assignment into np.empty)"),
]

# check_grads keyword arguments where the defaults (atol=1e-6, rtol=1e-5) do not fit.
TOLERANCES = {}

# Also run on the compiled backend (each compiles a few kernels with Numba: seconds each).
NUMBA_SUBSET = [
    "scipy_go.Schwefel21",
    "scipy_go.Shekel10",
    "scipy_go.Thurber",
    "scipy_optimize.Beale.fun",
    "scipy_optimize.BroydenTridiagonal.fun",
    "autograd.logistic_regression.loss",
    "autograd.fluidsim.advect",
    "autograd.test_linalg.slogdet",
    "autograd.test_numpy.index_mixed",
    "statsmodels.HuberT.weights",
    "hamiltonian_nn.3body.rotate2d",
    "numpy.sinc",
]
