"""Functions from SciPy's optimisation code, tests and benchmarks, taken unmodified.

Source: https://github.com/scipy/scipy (BSD-3-Clause). Names are imported as each source
file imports them. Classes whose methods only use their own attributes (``LJ``, ``Beale``,
``CrossInTray``) are copied whole and used through bound methods, so even ``self`` stays.
"""
import numpy as np
from numpy import abs, asarray, atleast_1d, cos, exp, pi, sin, sqrt  # noqa: F401


# scipy/scipy scipy/optimize/_optimize.py, function rosen
# https://github.com/scipy/scipy/blob/01476a14f75b13280aeb141a686656c81849af8d/scipy/optimize/_optimize.py
# (the pre-array-API version: `x = asarray(x)`)
def rosen(x):
    x = asarray(x)
    r = np.sum(100.0 * (x[1:] - x[:-1]**2.0)**2.0 + (1 - x[:-1])**2.0,
                  axis=0)
    return r


# scipy/scipy scipy/optimize/_optimize.py, function rosen_der
# https://github.com/scipy/scipy/blob/01476a14f75b13280aeb141a686656c81849af8d/scipy/optimize/_optimize.py
# (item assignment into np.zeros_like(x))
def rosen_der(x):
    x = asarray(x)
    xm = x[1:-1]
    xm_m1 = x[:-2]
    xm_p1 = x[2:]
    der = np.zeros_like(x)
    der[1:-1] = (200 * (xm - xm_m1**2) -
                 400 * (xm_p1 - xm**2) * xm - 2 * (1 - xm))
    der[0] = -400 * x[0] * (x[1] - x[0]**2) - 2 * (1 - x[0])
    der[-1] = 200 * (x[-1] - x[-2]**2)
    return der


# scipy/scipy scipy/optimize/_optimize.py, function rosen_hess
# https://github.com/scipy/scipy/blob/01476a14f75b13280aeb141a686656c81849af8d/scipy/optimize/_optimize.py
# (np.diag with offsets; item assignment into np.zeros(len(x), dtype=x.dtype))
def rosen_hess(x):
    x = atleast_1d(x)
    H = np.diag(-400 * x[:-1], 1) - np.diag(400 * x[:-1], -1)
    diagonal = np.zeros(len(x), dtype=x.dtype)
    diagonal[0] = 1200 * x[0]**2 - 400 * x[1] + 2
    diagonal[-1] = 200
    diagonal[1:-1] = 202 + 1200 * x[1:-1]**2 - 400 * x[2:]
    H = H + np.diag(diagonal)
    return H


# scipy/scipy scipy/optimize/_optimize.py, function rosen_hess_prod
# https://github.com/scipy/scipy/blob/01476a14f75b13280aeb141a686656c81849af8d/scipy/optimize/_optimize.py
def rosen_hess_prod(x, p):
    x = atleast_1d(x)
    Hp = np.zeros(len(x), dtype=x.dtype)
    Hp[0] = (1200 * x[0]**2 - 400 * x[1] + 2) * p[0] - 400 * x[0] * p[1]
    Hp[1:-1] = (-400 * x[:-2] * p[:-2] +
                (202 + 1200 * x[1:-1]**2 - 400 * x[2:]) * p[1:-1] -
                400 * x[1:-1] * p[2:])
    Hp[-1] = -400 * x[-2] * p[-2] + 200*p[-1]
    return Hp


# scipy/scipy benchmarks/benchmarks/test_functions.py, class LJ (methods der and
# get_random_configuration left out: `fun` does not use them)
# https://github.com/scipy/scipy/blob/1c6a4c5319514510e7fed9667c629a28ed8176ea/benchmarks/benchmarks/test_functions.py
# (Lennard-Jones cluster energy: double Python loop, np.linalg.norm of traced rows)
class LJ(object):
    """
    The Lennard Jones potential

    a mathematically simple model that approximates the interaction between a
    pair of neutral atoms or molecules.
    https://en.wikipedia.org/wiki/Lennard-Jones_potential

    E = sum_ij V(r_ij)

    where r_ij is the cartesian distance between atom i and atom j, and the
    pair potential has the form

    V(r) = 4 * eps * ( (sigma / r)**12 - (sigma / r)**6

    Notes
    -----
    the double loop over many atoms makes this *very* slow in Python.  If it
    were in a compiled language it would be much faster.
    """

    def __init__(self, eps=1.0, sig=1.0):
        self.sig = sig
        self.eps = eps

    def vij(self, r):
        return 4. * self.eps * ((self.sig / r)**12 - (self.sig / r)**6)

    def dvij(self, r):
        p7 = 6. / self.sig * (self.sig / r)**7
        p13 = -12. / self.sig * (self.sig / r)**13
        return 4. * self.eps * (p7 + p13)

    def fun(self, coords):
        natoms = coords.size // 3
        coords = np.reshape(coords, [natoms, 3])
        energy = 0.
        for i in range(natoms):
            for j in range(i + 1, natoms):
                dr = coords[j, :] - coords[i, :]
                r = np.linalg.norm(dr)
                energy += self.vij(r)
        return energy


# scipy/scipy benchmarks/benchmarks/test_functions.py, class Beale (fun only)
# https://github.com/scipy/scipy/blob/1c6a4c5319514510e7fed9667c629a28ed8176ea/benchmarks/benchmarks/test_functions.py
# (tuple unpacking of a traced array: `x, y = coords`)
class Beale(object):
    target_E = 0.
    solution = np.array([3., 0.5])
    xmin = np.array([-4.5, -4.5])
    xmax = np.array([4.5, 4.5])

    def fun(self, coords):
        x, y = coords
        p1 = (1.5 - x + x * y)**2
        p2 = (2.25 - x + x * y**2)**2
        p3 = (2.625 - x + x * y**3)**2
        return p1 + p2 + p3


# scipy/scipy benchmarks/benchmarks/test_functions.py, class CrossInTray
# https://github.com/scipy/scipy/blob/1c6a4c5319514510e7fed9667c629a28ed8176ea/benchmarks/benchmarks/test_functions.py
class CrossInTray(object):
    target_E = -2.06261
    solution = [1.34941, -1.34941]
    xmin = np.array([-10., -10])
    xmax = np.array([10., 10])

    def fun(self, x):
        arg = abs(100 - sqrt(x[0]**2 + x[1]**2)/pi)
        val = np.power(abs(sin(x[0]) * sin(x[1]) * exp(arg)) + 1., 0.1)
        return -0.0001 * val


# scipy/scipy scipy/optimize/tests/test_least_squares.py, function fun_rosenbrock
# https://github.com/scipy/scipy/blob/main/scipy/optimize/tests/test_least_squares.py
# (np.array of a list of traced scalars)
def fun_rosenbrock(x):
    return np.array([10 * (x[1] - x[0]**2), (1 - x[0])])


# scipy/scipy scipy/optimize/tests/test_least_squares.py, function fun_wrong_dimensions
# https://github.com/scipy/scipy/blob/main/scipy/optimize/tests/test_least_squares.py
# (np.array of a list of traced arrays)
def fun_wrong_dimensions(x):
    return np.array([x, x**2, x**3])


# scipy/scipy scipy/optimize/tests/test_least_squares.py, function fun_bvp
# https://github.com/scipy/scipy/blob/main/scipy/optimize/tests/test_least_squares.py
# (int() of a shape, 2-D slice assignment into np.zeros, reshape, ravel)
def fun_bvp(x):
    n = int(np.sqrt(x.shape[0]))
    u = np.zeros((n + 2, n + 2))
    x = x.reshape((n, n))
    u[1:-1, 1:-1] = x
    y = u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:] - 4 * x + x**3
    return y.ravel()


# scipy/scipy scipy/optimize/tests/test_least_squares.py, class BroydenTridiagonal, method fun
# https://github.com/scipy/scipy/blob/main/scipy/optimize/tests/test_least_squares.py
# (self dropped; in-place `-=` on slices of a traced array)
def broyden_tridiagonal(x):
    f = (3 - x) * x + 1
    f[1:] -= x[:-1]
    f[:-1] -= 2 * x[1:]
    return f
