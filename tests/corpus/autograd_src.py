"""Functions from HIPS/autograd's examples and tests, taken unmodified.

Source: https://github.com/HIPS/autograd (MIT). The files import ``autograd.numpy as np``;
here ``np`` is plain NumPy (and ``autograd.scipy.special.logsumexp`` is SciPy's
``scipy.special.logsumexp``, ``autograd``'s ``tuple`` is the builtin). Test functions
defined inside a test (``def fun(x): ...``) are lifted to module level under a
descriptive name; the values they close over (``B``, ``inds``, ``num``, ...) are module
constants with the values the test builds.
"""
import numpy as np
from scipy.special import logsumexp

_rs = np.random.RandomState(1)


# HIPS/autograd examples/logistic_regression.py, function sigmoid
# https://github.com/HIPS/autograd/blob/057f6556de388bddf94620330405900ee3c65009/examples/logistic_regression.py
def sigmoid(x):
    return 0.5*(np.tanh(x) + 1.0)   # Output ranges from 0 to 1.

# HIPS/autograd examples/logistic_regression.py, function predictions
# https://github.com/HIPS/autograd/blob/057f6556de388bddf94620330405900ee3c65009/examples/logistic_regression.py
# Specify logistic regression model.
def predictions(weights, inputs):
    return sigmoid(np.dot(inputs, weights))   # Outputs probabilities.

# HIPS/autograd examples/logistic_regression.py, function loss
# https://github.com/HIPS/autograd/blob/057f6556de388bddf94620330405900ee3c65009/examples/logistic_regression.py
# Specify loss function (negative log-likelihood).
def loss(weights, inputs, targets):
    preds = predictions(weights, inputs)
    log_lik = np.sum(np.log(preds) * targets) \
            + np.sum(np.log(1 - preds) * (1 - targets))
    return -log_lik


# HIPS/autograd examples/gaussian_process.py, function rbf_covariance
# https://github.com/HIPS/autograd/blob/172a8f91075043d3219beb66d65c2a536f049617/examples/gaussian_process.py
# Define an example covariance function.
def rbf_covariance(kernel_params, x, xp):
    output_scale = np.exp(kernel_params[0])
    lengthscales = np.exp(kernel_params[1:])
    diffs = np.expand_dims(x / lengthscales, 1) - np.expand_dims(xp / lengthscales, 0)
    return output_scale * np.exp(-0.5 * np.sum(diffs**2, axis=2))


# HIPS/autograd examples/neural_net.py, function neural_net_predict
# https://github.com/HIPS/autograd/blob/03b7ac8ece9aa0d00ba54846af25ff914017de26/examples/neural_net.py
# (params: a list of (weights, bias) tuples; logsumexp is scipy.special.logsumexp)
def neural_net_predict(params, inputs):
    """Implements a deep neural network for classification.
    params is a list of (weights, bias) tuples.
    inputs is an (N x D) matrix.
    returns normalized class log-probabilities."""
    for W, b in params:
        outputs = np.dot(inputs, W) + b
        inputs = np.tanh(outputs)
    return outputs - logsumexp(outputs, axis=1, keepdims=True)


# HIPS/autograd examples/rnn.py, function concat_and_multiply
# https://github.com/HIPS/autograd/blob/172a8f91075043d3219beb66d65c2a536f049617/examples/rnn.py
# (np.hstack of a tuple of traced arrays and a constant)
def concat_and_multiply(weights, *args):
    cat_state = np.hstack(args + (np.ones((args[0].shape[0], 1)),))
    return np.dot(cat_state, weights)


# HIPS/autograd examples/fluidsim/fluidsim.py, function project
# https://github.com/HIPS/autograd/blob/0f7bce400ee461606588f2b6cf777bd620a990cc/examples/fluidsim/fluidsim.py
# (np.roll along both axes, a Gauss-Seidel loop, in-place `-=` on the arguments)
def project(vx, vy):
    """Project the velocity field to be approximately mass-conserving,
    using a few iterations of Gauss-Seidel."""
    p = np.zeros(vx.shape)
    h = 1.0 / vx.shape[0]
    div = (
        -0.5
        * h
        * (
            np.roll(vx, -1, axis=0)
            - np.roll(vx, 1, axis=0)
            + np.roll(vy, -1, axis=1)
            - np.roll(vy, 1, axis=1)
        )
    )

    for k in range(10):
        p = (
            div
            + np.roll(p, 1, axis=0)
            + np.roll(p, -1, axis=0)
            + np.roll(p, 1, axis=1)
            + np.roll(p, -1, axis=1)
        ) / 4.0

    vx -= 0.5 * (np.roll(p, -1, axis=0) - np.roll(p, 1, axis=0)) / h
    vy -= 0.5 * (np.roll(p, -1, axis=1) - np.roll(p, 1, axis=1)) / h
    return vx, vy


# HIPS/autograd examples/fluidsim/fluidsim.py, function advect
# https://github.com/HIPS/autograd/blob/0f7bce400ee461606588f2b6cf777bd620a990cc/examples/fluidsim/fluidsim.py
# (np.meshgrid, np.floor(traced).astype(int), np.mod, fancy indexing with traced indices)
def advect(f, vx, vy):
    """Move field f according to x and y velocities (u and v)
    using an implicit Euler integrator."""
    rows, cols = f.shape
    cell_ys, cell_xs = np.meshgrid(np.arange(rows), np.arange(cols))
    center_xs = (cell_xs - vx).ravel()
    center_ys = (cell_ys - vy).ravel()

    # Compute indices of source cells.
    left_ix = np.floor(center_xs).astype(int)
    top_ix = np.floor(center_ys).astype(int)
    rw = center_xs - left_ix  # Relative weight of right-hand cells.
    bw = center_ys - top_ix  # Relative weight of bottom cells.
    left_ix = np.mod(left_ix, rows)  # Wrap around edges of simulation.
    right_ix = np.mod(left_ix + 1, rows)
    top_ix = np.mod(top_ix, cols)
    bot_ix = np.mod(top_ix + 1, cols)

    # A linearly-weighted sum of the 4 surrounding cells.
    flat_f = (1 - rw) * ((1 - bw) * f[left_ix, top_ix] + bw * f[left_ix, bot_ix]) + rw * (
        (1 - bw) * f[right_ix, top_ix] + bw * f[right_ix, bot_ix]
    )
    return np.reshape(flat_f, (rows, cols))


# HIPS/autograd tests/test_linalg.py, test_slogdet: fun
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_linalg.py
def slogdet_logdet(x):
    sign, logdet = np.linalg.slogdet(x)
    return logdet


# HIPS/autograd tests/test_linalg.py, test_inv: fun
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_linalg.py
def inv(x): return np.linalg.inv(x)


SOLVE_B = _rs.randn(8, 8 - 1)     # test_solve_arg1's B (D = 8)


# HIPS/autograd tests/test_linalg.py, test_solve_arg1: fun (B = SOLVE_B)
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_linalg.py
def solve_arg1(a): return np.linalg.solve(a, SOLVE_B)


# HIPS/autograd tests/test_linalg.py, test_norm_nuclear: fun
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_linalg.py
def norm_nuclear(x): return np.linalg.norm(x, ord='nuc')


# HIPS/autograd tests/test_linalg.py, test_eigvalh_lower: fun (autograd's tuple -> builtin)
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_linalg.py
def eigh_lower(x):
    w, v = np.linalg.eigh(x)
    return tuple((w, v))


# HIPS/autograd tests/test_linalg.py, T and check_symmetric_matrix_grads's symmetrize
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_linalg.py
T = lambda A : np.swapaxes(A, -1, -2)

def symmetrize(A):
    L = np.tril(A)
    return (L + T(L))/2.


# HIPS/autograd tests/test_linalg.py, check_symmetric_matrix_grads: new_fun, applied to
# test_eigvalh_lower's fun (what the test differentiates)
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_linalg.py
def _make_symmetric_new_fun(fun):
    # HIPS/autograd tests/test_linalg.py, check_symmetric_matrix_grads: new_fun
    # https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_linalg.py
    new_fun = lambda *args: fun(symmetrize(args[0]), *args[1:])
    return new_fun

eigh_lower_symmetrized = _make_symmetric_new_fun(eigh_lower)


# HIPS/autograd tests/test_linalg.py, test_cholesky: fun
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_linalg.py
cholesky = lambda A: np.linalg.cholesky(A)


# HIPS/autograd tests/test_linalg.py, test_cholesky_reparameterization_trick: fun
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_linalg.py
def cholesky_reparameterization(A):
    rng = np.random.RandomState(0)
    z = np.dot(np.linalg.cholesky(A), rng.randn(A.shape[0]))
    return np.linalg.norm(z)


# HIPS/autograd tests/test_numpy.py, test_2d_array: fun
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_numpy.py
def array_2d_from_scalar(x):
    return np.array([[x   , x * 1.0, x + 2.5],
                               [x**2, x      , x / 2.0]])


# HIPS/autograd tests/test_numpy.py, test_index_mixed: fun
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_numpy.py
def index_mixed(x): return x[3, 2:, [1, 3]]


inds = np.ones(5)[:,None]         # test_cast_to_int's inds


# HIPS/autograd tests/test_numpy.py, test_cast_to_int: fun
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_numpy.py
def cast_to_int(W):
    # glue W and inds together
    glued_together = np.concatenate((W, inds), axis=1)

    # separate W and inds back out
    new_W = W[:,:-1]
    new_inds = np.int64(W[:,-1])

    assert new_inds.dtype == np.int64
    return new_W[new_inds].sum()


# HIPS/autograd tests/test_numpy.py, test_max_equal_values_2d: fun (ties in np.max)
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_numpy.py
def max_equal_values_2d(x): return np.max(np.array([[x, x  ],
                                              [x, 0.5]]), axis=1)


num = 5                           # one of test_linspace's loop values


# HIPS/autograd tests/test_numpy.py, test_linspace: fun
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_numpy.py
def linspace(x, y): return np.linspace(x, y, num)


c = _rs.randn(3, 2)               # test_c_mixed's c


# HIPS/autograd tests/test_numpy.py, test_c_mixed: fun
# https://github.com/HIPS/autograd/blob/027429f98215d3f7464dd1b6286aaefa2e4fb1f9/tests/test_numpy.py
def c_mixed(x):
    b = np.c_[x, c, x]
    return b
