"""Physics, statistics and library functions from other public NumPy code, unmodified.

Sources (each cited above its function):
* greydanus/hamiltonian-nn (Apache-2.0): pendulum Hamiltonian, 3-body energies/dynamics;
* numba/numba (BSD-2-Clause): the Black-Scholes example;
* numpy/numpy (BSD-3-Clause): ``polyval`` and ``sinc``;
* scikit-learn/scikit-learn (BSD-3-Clause): Gaussian-mixture estimators (the NumPy
  version, before the array-API port).
"""
import numpy as np
from numpy import pi, sin, where

try:                                    # NumPy >= 2: numpy.core is numpy._core
    import numpy._core.numeric as NX
except ImportError:                     # pragma: no cover
    import numpy.core.numeric as NX
from numpy import poly1d


# greydanus/hamiltonian-nn experiment-pend/data.py, function hamiltonian_fn
# https://github.com/greydanus/hamiltonian-nn/blob/393a0c1509a7da43feb632d2af2516b3e00bcabe/experiment-pend/data.py
# (the file imports autograd.numpy as np; here plain NumPy)
def hamiltonian_fn(coords):
    q, p = np.split(coords,2)
    H = 2*(1-np.cos(q)) + p**2 # pendulum hamiltonian
    return H


# greydanus/hamiltonian-nn experiment-3body/data.py, function potential_energy
# https://github.com/greydanus/hamiltonian-nn/blob/ca4413a316df24ce5562af6962439be9d206e58b/experiment-3body/data.py
# (`+=` of traced values into np.zeros, keepdims sums, squeeze)
def potential_energy(state):
    '''U=\\sum_i,j>i G m_i m_j / r_ij'''
    tot_energy = np.zeros((1,1,state.shape[2]))
    for i in range(state.shape[0]):
        for j in range(i+1,state.shape[0]):
            r_ij = ((state[i:i+1,1:3] - state[j:j+1,1:3])**2).sum(1, keepdims=True)**.5
            m_i = state[i:i+1,0:1]
            m_j = state[j:j+1,0:1]
            tot_energy += m_i * m_j / r_ij
    U = -tot_energy.sum(0).squeeze()
    return U

# greydanus/hamiltonian-nn experiment-3body/data.py, function kinetic_energy
# https://github.com/greydanus/hamiltonian-nn/blob/ca4413a316df24ce5562af6962439be9d206e58b/experiment-3body/data.py
def kinetic_energy(state):
    '''T=\\sum_i .5*m*v^2'''
    energies = .5 * state[:,0:1] * (state[:,3:5]**2).sum(1, keepdims=True)
    T = energies.sum(0).squeeze()
    return T

# greydanus/hamiltonian-nn experiment-3body/data.py, function total_energy
# https://github.com/greydanus/hamiltonian-nn/blob/ca4413a316df24ce5562af6962439be9d206e58b/experiment-3body/data.py
def total_energy(state):
    return potential_energy(state) + kinetic_energy(state)


# greydanus/hamiltonian-nn experiment-3body/data.py, function get_accelerations
# https://github.com/greydanus/hamiltonian-nn/blob/ca4413a316df24ce5562af6962439be9d206e58b/experiment-3body/data.py
# (np.concatenate of slices, a list of traced rows)
def get_accelerations(state, epsilon=0):
    # shape of state is [bodies x properties]
    net_accs = [] # [nbodies x 2]
    for i in range(state.shape[0]): # number of bodies
        other_bodies = np.concatenate([state[:i, :], state[i+1:, :]], axis=0)
        displacements = other_bodies[:, 1:3] - state[i, 1:3] # indexes 1:3 -> pxs, pys
        distances = (displacements**2).sum(1, keepdims=True)**0.5
        masses = other_bodies[:, 0:1] # index 0 -> mass
        pointwise_accs = masses * displacements / (distances**3 + epsilon) # G=1
        net_acc = pointwise_accs.sum(0, keepdims=True)
        net_accs.append(net_acc)
    net_accs = np.concatenate(net_accs, axis=0)
    return net_accs

# greydanus/hamiltonian-nn experiment-3body/data.py, function update
# https://github.com/greydanus/hamiltonian-nn/blob/ca4413a316df24ce5562af6962439be9d206e58b/experiment-3body/data.py
# (slice assignment into np.zeros_like(state))
def update(t, state):
    state = state.reshape(-1,5) # [bodies, properties]
    deriv = np.zeros_like(state)
    deriv[:,1:3] = state[:,3:5] # dx, dy = vx, vy
    deriv[:,3:5] = get_accelerations(state)
    return deriv.reshape(-1)


# greydanus/hamiltonian-nn experiment-3body/data.py, function rotate2d
# https://github.com/greydanus/hamiltonian-nn/blob/ca4413a316df24ce5562af6962439be9d206e58b/experiment-3body/data.py
# (np.array of nested lists of traced scalars, @, reshape, squeeze)
def rotate2d(p, theta):
  c, s = np.cos(theta), np.sin(theta)
  R = np.array([[c, -s],[s, c]])
  return (R @ p.reshape(2,1)).squeeze()


# numba/numba examples/blackscholes/blackscholes.py, constants RISKFREE, VOLATILITY
RISKFREE = 0.02
VOLATILITY = 0.30


# numba/numba examples/blackscholes/blackscholes.py, function cnd
# https://github.com/numba/numba/blob/930e6245bf71a53b3ccf05bc9e1552be2cf4b86d/examples/blackscholes/blackscholes.py
def cnd(d):
    A1 = 0.31938153
    A2 = -0.356563782
    A3 = 1.781477937
    A4 = -1.821255978
    A5 = 1.330274429
    RSQRT2PI = 0.39894228040143267793994605993438
    K = 1.0 / (1.0 + 0.2316419 * np.abs(d))
    ret_val = (RSQRT2PI * np.exp(-0.5 * d * d) *
               (K * (A1 + K * (A2 + K * (A3 + K * (A4 + K * A5))))))
    return np.where(d > 0, 1.0 - ret_val, ret_val)


# numba/numba examples/blackscholes/blackscholes.py, function black_scholes
# https://github.com/numba/numba/blob/930e6245bf71a53b3ccf05bc9e1552be2cf4b86d/examples/blackscholes/blackscholes.py
# (writes its results into output arrays: callResult[:] = ...)
def black_scholes(callResult, putResult, stockPrice, optionStrike, optionYears,
                  Riskfree, Volatility):
    S = stockPrice
    X = optionStrike
    T = optionYears
    R = Riskfree
    V = Volatility
    sqrtT = np.sqrt(T)
    d1 = (np.log(S / X) + (R + 0.5 * V * V) * T) / (V * sqrtT)
    d2 = d1 - V * sqrtT
    cndd1 = cnd(d1)
    cndd2 = cnd(d2)

    expRT = np.exp(- R * T)
    callResult[:] = (S * cndd1 - X * expRT * cndd2)
    putResult[:] = (X * expRT * (1.0 - cndd2) - S * (1.0 - cndd1))


# numpy/numpy numpy/lib/_polynomial_impl.py, function polyval
# https://github.com/numpy/numpy/blob/0233ceda6b7040467eaf3042c7092ac517af1658/numpy/lib/_polynomial_impl.py
# (the @array_function_dispatch decorator dropped; iterates over a traced p)
def polyval(p, x):
    p = NX.asarray(p)
    if isinstance(x, poly1d):
        y = 0
    else:
        x = NX.asanyarray(x)
        y = NX.zeros_like(x)
    for pv in p:
        y = y * x + pv
    return y


# numpy/numpy numpy/lib/_function_base_impl.py, function sinc (NumPy 2.x)
# https://github.com/numpy/numpy/blob/main/numpy/lib/_function_base_impl.py
# (the @array_function_dispatch decorator dropped; `where(x, x, eps)` tests a traced
# array's truth value elementwise)
def sinc(x):
    x = np.asanyarray(x)
    x = pi * x
    # Hope that 1e-20 is sufficient for objects...
    eps = np.finfo(x.dtype).eps if x.dtype.kind == "f" else 1e-20
    y = where(x, x, eps)
    return sin(y) / y


# numpy/numpy numpy/lib/function_base.py, function sinc (NumPy 1.x)
# https://github.com/numpy/numpy/blob/v1.26.0/numpy/lib/function_base.py
# (the @array_function_dispatch decorator dropped)
def sinc_numpy1(x):
    x = np.asanyarray(x)
    y = pi * where(x == 0, 1.0e-20, x)
    return sin(y)/y


# scikit-learn/scikit-learn sklearn/mixture/gaussian_mixture.py, function
# _compute_log_det_cholesky
# https://github.com/scikit-learn/scikit-learn/blob/03dc4d38441c807cc0ce2d68bef0e1073c924581/sklearn/mixture/gaussian_mixture.py
# (reshape(n, -1)[:, ::n_features + 1])
def _compute_log_det_cholesky(matrix_chol, covariance_type, n_features):
    """Compute the log-det of the cholesky decomposition of matrices.

    Parameters
    ----------
    matrix_chol : array-like
        Cholesky decompositions of the matrices.
        'full' : shape of (n_components, n_features, n_features)
        'tied' : shape of (n_features, n_features)
        'diag' : shape of (n_components, n_features)
        'spherical' : shape of (n_components,)

    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    n_features : int
        Number of features.

    Returns
    -------
    log_det_precision_chol : array-like, shape (n_components,)
        The determinant of the precision matrix for each component.
    """
    if covariance_type == 'full':
        n_components, _, _ = matrix_chol.shape
        log_det_chol = (np.sum(np.log(
            matrix_chol.reshape(
                n_components, -1)[:, ::n_features + 1]), 1))

    elif covariance_type == 'tied':
        log_det_chol = (np.sum(np.log(np.diag(matrix_chol))))

    elif covariance_type == 'diag':
        log_det_chol = (np.sum(np.log(matrix_chol), axis=1))

    else:
        log_det_chol = n_features * (np.log(matrix_chol))

    return log_det_chol


# scikit-learn/scikit-learn sklearn/mixture/gaussian_mixture.py, function
# _estimate_log_gaussian_prob ('spherical' needs sklearn's row_norms: not exercised)
# https://github.com/scikit-learn/scikit-learn/blob/03dc4d38441c807cc0ce2d68bef0e1073c924581/sklearn/mixture/gaussian_mixture.py
# (np.empty with column assignment of traced values)
def _estimate_log_gaussian_prob(X, means, precisions_chol, covariance_type):
    """Estimate the log Gaussian probability.

    Parameters
    ----------
    X : array-like, shape (n_samples, n_features)

    means : array-like, shape (n_components, n_features)

    precisions_chol : array-like
        Cholesky decompositions of the precision matrices.
        'full' : shape of (n_components, n_features, n_features)
        'tied' : shape of (n_features, n_features)
        'diag' : shape of (n_components, n_features)
        'spherical' : shape of (n_components,)

    covariance_type : {'full', 'tied', 'diag', 'spherical'}

    Returns
    -------
    log_prob : array, shape (n_samples, n_components)
    """
    n_samples, n_features = X.shape
    n_components, _ = means.shape
    # det(precision_chol) is half of det(precision)
    log_det = _compute_log_det_cholesky(
        precisions_chol, covariance_type, n_features)

    if covariance_type == 'full':
        log_prob = np.empty((n_samples, n_components))
        for k, (mu, prec_chol) in enumerate(zip(means, precisions_chol)):
            y = np.dot(X, prec_chol) - np.dot(mu, prec_chol)
            log_prob[:, k] = np.sum(np.square(y), axis=1)

    elif covariance_type == 'tied':
        log_prob = np.empty((n_samples, n_components))
        for k, mu in enumerate(means):
            y = np.dot(X, precisions_chol) - np.dot(mu, precisions_chol)
            log_prob[:, k] = np.sum(np.square(y), axis=1)

    elif covariance_type == 'diag':
        precisions = precisions_chol ** 2
        log_prob = (np.sum((means ** 2 * precisions), 1) -
                    2. * np.dot(X, (means * precisions).T) +
                    np.dot(X ** 2, precisions.T))

    elif covariance_type == 'spherical':
        precisions = precisions_chol ** 2
        log_prob = (np.sum(means ** 2, 1) * precisions -
                    2 * np.dot(X, means.T * precisions) +
                    np.outer(row_norms(X, squared=True), precisions))  # noqa: F821
    return -.5 * (n_features * np.log(2 * np.pi) + log_prob) + log_det


# scikit-learn/scikit-learn sklearn/mixture/gaussian_mixture.py, function
# _estimate_gaussian_covariances_full
# https://github.com/scikit-learn/scikit-learn/blob/03dc4d38441c807cc0ce2d68bef0e1073c924581/sklearn/mixture/gaussian_mixture.py
# (np.empty with row assignment, `.flat[::n + 1] +=`)
def _estimate_gaussian_covariances_full(resp, X, nk, means, reg_covar):
    """Estimate the full covariance matrices.

    Parameters
    ----------
    resp : array-like, shape (n_samples, n_components)

    X : array-like, shape (n_samples, n_features)

    nk : array-like, shape (n_components,)

    means : array-like, shape (n_components, n_features)

    reg_covar : float

    Returns
    -------
    covariances : array, shape (n_components, n_features, n_features)
        The covariance matrix of the current components.
    """
    n_components, n_features = means.shape
    covariances = np.empty((n_components, n_features, n_features))
    for k in range(n_components):
        diff = X - means[k]
        covariances[k] = np.dot(resp[:, k] * diff.T, diff) / nk[k]
        covariances[k].flat[::n_features + 1] += reg_covar
    return covariances


# scikit-learn/scikit-learn sklearn/mixture/gaussian_mixture.py, function
# _estimate_gaussian_covariances_tied
# https://github.com/scikit-learn/scikit-learn/blob/03dc4d38441c807cc0ce2d68bef0e1073c924581/sklearn/mixture/gaussian_mixture.py
# (in-place `/=`, `.flat[::n + 1] +=`)
def _estimate_gaussian_covariances_tied(resp, X, nk, means, reg_covar):
    """Estimate the tied covariance matrix.

    Parameters
    ----------
    resp : array-like, shape (n_samples, n_components)

    X : array-like, shape (n_samples, n_features)

    nk : array-like, shape (n_components,)

    means : array-like, shape (n_components, n_features)

    reg_covar : float

    Returns
    -------
    covariance : array, shape (n_features, n_features)
        The tied covariance matrix of the components.
    """
    avg_X2 = np.dot(X.T, X)
    avg_means2 = np.dot(nk * means.T, means)
    covariance = avg_X2 - avg_means2
    covariance /= nk.sum()
    covariance.flat[::len(covariance) + 1] += reg_covar
    return covariance


# scikit-learn/scikit-learn sklearn/mixture/gaussian_mixture.py, function
# _estimate_gaussian_covariances_diag
# https://github.com/scikit-learn/scikit-learn/blob/03dc4d38441c807cc0ce2d68bef0e1073c924581/sklearn/mixture/gaussian_mixture.py
def _estimate_gaussian_covariances_diag(resp, X, nk, means, reg_covar):
    """Estimate the diagonal covariance vectors.

    Parameters
    ----------
    responsibilities : array-like, shape (n_samples, n_components)

    X : array-like, shape (n_samples, n_features)

    nk : array-like, shape (n_components,)

    means : array-like, shape (n_components, n_features)

    reg_covar : float

    Returns
    -------
    covariances : array, shape (n_components, n_features)
        The covariance vector of the current components.
    """
    avg_X2 = np.dot(resp.T, X * X) / nk[:, np.newaxis]
    avg_means2 = means ** 2
    avg_X_means = means * np.dot(resp.T, X) / nk[:, np.newaxis]
    return avg_X2 - 2 * avg_X_means + avg_means2 + reg_covar
