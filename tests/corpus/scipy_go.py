"""Functions from SciPy's global-optimisation benchmark suite, taken unmodified.

Source: https://github.com/scipy/scipy (BSD-3-Clause), directory
``benchmarks/benchmarks/go_benchmark_functions/``. Each function below is the body of a
class's ``fun(self, x, *args)`` method. The only changes: ``self`` and ``*args`` are
dropped, the bookkeeping line ``self.nfev += 1`` is dropped, and ``self.N`` / ``self.a``
style attributes are replaced by the values the class's ``__init__`` sets (default
dimensions). The names are imported from NumPy as the source files import them (``sum``,
``abs``, ... are NumPy's); ``max`` and ``float`` are Python's builtins, as in the source.
"""
import numpy as np
from numpy import (abs, arange, arctan2, asarray, atleast_2d, cos, exp, log, log10, pi,
                   prod, repeat, roll, sin, sqrt, sum, tanh, tril, where, zeros)


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_A.py, class Ackley01
# https://github.com/scipy/scipy/blob/3e671535216614b3308918f128305f68fd90f3f8/benchmarks/benchmarks/go_benchmark_functions/go_funcs_A.py
# (self.N = 2, the default dimensions)
def ackley01(x):
    u = sum(x ** 2)
    v = sum(cos(2 * pi * x))
    return -20.0 * exp(-0.2 * sqrt(u / 2)) - exp(v / 2) + 20.0 + exp(1.0)


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_A.py, class Alpine02
# https://github.com/scipy/scipy/blob/3e671535216614b3308918f128305f68fd90f3f8/benchmarks/benchmarks/go_benchmark_functions/go_funcs_A.py
def alpine02(x):
    return prod(sqrt(x) * sin(x))


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_D.py, class Deceptive
# https://github.com/scipy/scipy/blob/0c901349189538b46da29bae6d112dec9f9bc056/benchmarks/benchmarks/go_benchmark_functions/go_funcs_D.py
# (self.N = 2): Python branches on traced values, item assignment into zeros((N,))
def deceptive(x):
    alpha = arange(1.0, 2 + 1.0) / (2 + 1.0)
    beta = 2.0

    g = zeros((2, ))

    for i in range(2):
        if x[i] <= 0.0:
            g[i] = x[i]
        elif x[i] < 0.8 * alpha[i]:
            g[i] = -x[i] / alpha[i] + 0.8
        elif x[i] < alpha[i]:
            g[i] = 5.0 * x[i] / alpha[i] - 4.0
        elif x[i] < (1.0 + 4 * alpha[i]) / 5.0:
            g[i] = 5.0 * (x[i] - alpha[i]) / (alpha[i] - 1.0) + 1.0
        elif x[i] <= 1.0:
            g[i] = (x[i] - 1.0) / (1.0 - alpha[i]) + 4.0 / 5.0
        else:
            g[i] = x[i] - 1.0

    return -((1.0 / 2) * sum(g)) ** beta


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_D.py, class DeVilliersGlasser02
# https://github.com/scipy/scipy/blob/0c901349189538b46da29bae6d112dec9f9bc056/benchmarks/benchmarks/go_benchmark_functions/go_funcs_D.py
def devilliers_glasser02(x):
    t = 0.1 * arange(16)
    y = (53.81 * 1.27 ** t * tanh(3.012 * t + sin(2.13 * t))
         * cos(exp(0.507) * t))

    return sum((x[0] * (x[1] ** t) * tanh(x[2] * t + sin(x[3] * t))
               * cos(t * exp(x[4])) - y) ** 2.0)


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_G.py, class Gulf
# https://github.com/scipy/scipy/blob/29059bdecccb79a71df4ad5aea1e0b792db0b8bf/benchmarks/benchmarks/go_benchmark_functions/go_funcs_G.py
def gulf(x):
    m = 99.
    i = arange(1., m + 1)
    u = 25 + (-50 * log(i / 100.)) ** (2 / 3.)
    vec = (exp(-((abs(u - x[1])) ** x[2] / x[0])) - i / 100.)
    return sum(vec ** 2)


HARTMANN6_A = asarray([[10., 3., 17., 3.5, 1.7, 8.],
                       [0.05, 10., 17., 0.1, 8., 14.],
                       [3., 3.5, 1.7, 10., 17., 8.],
                       [17., 8., 0.05, 10., 0.1, 14.]])
HARTMANN6_P = asarray([[0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
                       [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
                       [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.665],
                       [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381]])
HARTMANN6_C = asarray([1.0, 1.2, 3.0, 3.2])


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_H.py, class Hartmann6
# https://github.com/scipy/scipy/blob/29059bdecccb79a71df4ad5aea1e0b792db0b8bf/benchmarks/benchmarks/go_benchmark_functions/go_funcs_H.py
# (self.a, self.p, self.c = HARTMANN6_A, HARTMANN6_P, HARTMANN6_C)
def hartmann6(x):
    XX = np.atleast_2d(x)
    d = sum(HARTMANN6_A * (XX - HARTMANN6_P) ** 2, axis=1)
    return -sum(HARTMANN6_C * exp(-d))


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_H.py, class HelicalValley
# https://github.com/scipy/scipy/blob/29059bdecccb79a71df4ad5aea1e0b792db0b8bf/benchmarks/benchmarks/go_benchmark_functions/go_funcs_H.py
def helical_valley(x):
    r = sqrt(x[0] ** 2 + x[1] ** 2)
    theta = 1 / (2. * pi) * arctan2(x[1], x[0])

    return x[2] ** 2 + 100 * ((x[2] - 10 * theta) ** 2 + (r - 1) ** 2)


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_P.py, class Paviani
# https://github.com/scipy/scipy/blob/1747a8ff16548a1ae1edc3da87fa9050b31b7f9c/benchmarks/benchmarks/go_benchmark_functions/go_funcs_P.py
def paviani(x):
    return sum(log(x - 2) ** 2.0 + log(10.0 - x) ** 2.0) - prod(x) ** 0.2


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_P.py, class Penalty01
# https://github.com/scipy/scipy/blob/1747a8ff16548a1ae1edc3da87fa9050b31b7f9c/benchmarks/benchmarks/go_benchmark_functions/go_funcs_P.py
def penalty01(x):
    a, b, c = 10.0, 100.0, 4.0

    xx = abs(x)
    u = where(xx > a, b * (xx - a) ** c, 0.0)

    y = 1.0 + (x + 1.0) / 4.0

    return (sum(u) + (pi / 30.0) * (10.0 * sin(pi * y[0]) ** 2.0
            + sum((y[: -1] - 1.0) ** 2.0
                  * (1.0 + 10.0 * sin(pi * y[1:]) ** 2.0))
            + (y[-1] - 1) ** 2.0))


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_P.py, class PermFunction01
# https://github.com/scipy/scipy/blob/1747a8ff16548a1ae1edc3da87fa9050b31b7f9c/benchmarks/benchmarks/go_benchmark_functions/go_funcs_P.py
# (self.N = 2)
def perm_function01(x):
    b = 0.5
    k = atleast_2d(arange(2) + 1).T
    j = atleast_2d(arange(2) + 1)
    s = (j ** k + b) * ((x / j) ** k - 1)
    return sum((sum(s, axis=1) ** 2))


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_P.py, class Pinter
# https://github.com/scipy/scipy/blob/1747a8ff16548a1ae1edc3da87fa9050b31b7f9c/benchmarks/benchmarks/go_benchmark_functions/go_funcs_P.py
# (self.N = 2): item assignment of traced values into zeros(N + 2)
def pinter(x):
    i = arange(2) + 1
    xx = zeros(2 + 2)
    xx[1: - 1] = x
    xx[0] = x[-1]
    xx[-1] = x[0]
    A = xx[0: -2] * sin(xx[1: - 1]) + sin(xx[2:])
    B = xx[0: -2] ** 2 - 2 * xx[1: - 1] + 3 * xx[2:] - cos(xx[1: - 1]) + 1
    return (sum(i * x ** 2)
            + sum(20 * i * sin(A) ** 2)
            + sum(i * log10(1 + i * B ** 2)))


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_R.py, class Rana
# https://github.com/scipy/scipy/blob/31fb26ae8add6d7cd8dbcaac69b4294c8e035fb9/benchmarks/benchmarks/go_benchmark_functions/go_funcs_R.py
def rana(x):
    t1 = sqrt(abs(x[1:] + x[: -1] + 1))
    t2 = sqrt(abs(x[1:] - x[: -1] + 1))
    v = (x[1:] + 1) * cos(t2) * sin(t1) + x[:-1] * cos(t1) * sin(t2)
    return sum(v)


RATKOWSKY01_A = asarray([16.08, 33.83, 65.80, 97.20, 191.55, 326.20, 386.87,
                         520.53, 590.03, 651.92, 724.93, 699.56, 689.96,
                         637.56, 717.41])
RATKOWSKY01_B = arange(1, 16.)


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_R.py, class Ratkowsky01
# https://github.com/scipy/scipy/blob/31fb26ae8add6d7cd8dbcaac69b4294c8e035fb9/benchmarks/benchmarks/go_benchmark_functions/go_funcs_R.py
# (self.a, self.b = RATKOWSKY01_A, RATKOWSKY01_B)
def ratkowsky01(x):
    vec = x[0] / ((1 + exp(x[1] - x[2] * RATKOWSKY01_B)) ** (1 / x[3]))
    return sum((RATKOWSKY01_A - vec) ** 2)


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py, class Sargan
# https://github.com/scipy/scipy/blob/073a1bfc4b13cc4fef076b90cbac94ed20b22994/benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py
# (self.N = 2)
def sargan(x):
    x0 = x[:-1]
    x1 = roll(x, -1)[:-1]

    return sum(2 * (x ** 2 + 0.4 * sum(x0 * x1)))


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py, class Schwefel02
# https://github.com/scipy/scipy/blob/073a1bfc4b13cc4fef076b90cbac94ed20b22994/benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py
# (self.N = 2)
def schwefel02(x):
    mat = repeat(atleast_2d(x), 2, axis=0)
    inner = sum(tril(mat), axis=1)
    return sum(inner ** 2)


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py, class Schwefel06
# https://github.com/scipy/scipy/blob/073a1bfc4b13cc4fef076b90cbac94ed20b22994/benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py
# (builtin max of two traced scalars)
def schwefel06(x):
    return max(abs(x[0] + 2 * x[1] - 7), abs(2 * x[0] + x[1] - 5))


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py, class Schwefel21
# https://github.com/scipy/scipy/blob/073a1bfc4b13cc4fef076b90cbac94ed20b22994/benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py
# (builtin max iterating over a traced array)
def schwefel21(x):
    return max(abs(x))


SHEKEL10_A = asarray([[4.0, 4.0, 4.0, 4.0],
                      [1.0, 1.0, 1.0, 1.0],
                      [8.0, 8.0, 8.0, 8.0],
                      [6.0, 6.0, 6.0, 6.0],
                      [3.0, 7.0, 3.0, 7.0],
                      [2.0, 9.0, 2.0, 9.0],
                      [5.0, 5.0, 3.0, 3.0],
                      [8.0, 1.0, 8.0, 1.0],
                      [6.0, 2.0, 6.0, 2.0],
                      [7.0, 3.6, 7.0, 3.6]])
SHEKEL10_C = asarray([0.1, 0.2, 0.2, 0.4, 0.4, 0.6, 0.3, 0.7, 0.5, 0.5])


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py, class Shekel10
# https://github.com/scipy/scipy/blob/073a1bfc4b13cc4fef076b90cbac94ed20b22994/benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py
# (self.A, self.C = SHEKEL10_A, SHEKEL10_C)
def shekel10(x):
    return -sum(1 / (sum((x - SHEKEL10_A) ** 2, axis=1) + SHEKEL10_C))


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py, class Shubert01
# https://github.com/scipy/scipy/blob/073a1bfc4b13cc4fef076b90cbac94ed20b22994/benchmarks/benchmarks/go_benchmark_functions/go_funcs_S.py
def shubert01(x):
    j = atleast_2d(arange(1, 6)).T
    y = j * cos((j + 1) * x + j)
    return prod(sum(y, axis=0))


THURBER_A = asarray([80.574, 84.248, 87.264, 87.195, 89.076, 89.608,
                     89.868, 90.101, 92.405, 95.854, 100.696, 101.06,
                     401.672, 390.724, 567.534, 635.316, 733.054, 759.087,
                     894.206, 990.785, 1090.109, 1080.914, 1122.643,
                     1178.351, 1260.531, 1273.514, 1288.339, 1327.543,
                     1353.863, 1414.509, 1425.208, 1421.384, 1442.962,
                     1464.350, 1468.705, 1447.894, 1457.628])
THURBER_B = asarray([-3.067, -2.981, -2.921, -2.912, -2.840, -2.797,
                     -2.702, -2.699, -2.633, -2.481, -2.363, -2.322,
                     -1.501, -1.460, -1.274, -1.212, -1.100, -1.046,
                     -0.915, -0.714, -0.566, -0.545, -0.400, -0.309,
                     -0.109, -0.103, 0.010, 0.119, 0.377, 0.790, 0.963,
                     1.006, 1.115, 1.572, 1.841, 2.047, 2.200])


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_T.py, class Thurber
# https://github.com/scipy/scipy/blob/1c6a4c5319514510e7fed9667c629a28ed8176ea/benchmarks/benchmarks/go_benchmark_functions/go_funcs_T.py
# (self.a, self.b = THURBER_A, THURBER_B): in-place `vec /= ...` on a traced array
def thurber(x):
    vec = x[0] + x[1] * THURBER_B + x[2] * THURBER_B ** 2 + x[3] * THURBER_B ** 3
    vec /= 1 + x[4] * THURBER_B + x[5] * THURBER_B ** 2 + x[6] * THURBER_B ** 3

    return sum((THURBER_A - vec) ** 2)


# scipy/scipy benchmarks/benchmarks/go_benchmark_functions/go_funcs_T.py, class Trigonometric01
# https://github.com/scipy/scipy/blob/1c6a4c5319514510e7fed9667c629a28ed8176ea/benchmarks/benchmarks/go_benchmark_functions/go_funcs_T.py
# (self.N = 2)
def trigonometric01(x):
    i = atleast_2d(arange(1.0, 2 + 1)).T
    inner = cos(x) + i * (1 - cos(x) - sin(x))
    return sum((2 - sum(inner, axis=1)) ** 2)
