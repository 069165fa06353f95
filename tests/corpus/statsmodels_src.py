"""Robust norms and the logit likelihood from statsmodels, taken unmodified.

Source: https://github.com/statsmodels/statsmodels (BSD-3-Clause). The norm classes are
copied whole (less the ``_set_tuning_param`` / ``max_rho`` / ``psi_deriv`` methods the
corpus does not call) and used through bound methods, so their bodies keep ``self``.
Docstrings are shortened; the code is not changed. ``Logit``'s methods are copied from
``statsmodels/discrete/discrete_model.py`` into a small class whose ``__init__`` (not from
the source) stores ``endog`` and ``exog`` the way statsmodels' model classes do.
"""
import numpy as np


# statsmodels/statsmodels statsmodels/robust/norms.py, class RobustNorm
# https://github.com/statsmodels/statsmodels/blob/01143c5c5321a6beb077017b109d322971014717/statsmodels/robust/norms.py
class RobustNorm:
    """
    The parent class for the norms used for robust regression.

    Lays out the methods expected of the robust norms to be used
    by statsmodels.RLM.
    """

    continuous = 1

    def __repr__(self):
        return self.__class__.__name__

    def rho(self, z):
        """
        The robust criterion estimator function.

        Abstract method:

        -2 loglike used in M-estimator
        """
        raise NotImplementedError

    def psi(self, z):
        """
        Derivative of rho.  Sometimes referred to as the influence function.

        Abstract method:

        psi = rho'
        """
        raise NotImplementedError

    def weights(self, z):
        """
        Returns the value of psi(z) / z

        Abstract method:

        psi(z) / z
        """
        raise NotImplementedError

    def __call__(self, z):
        """
        Returns the value of estimator rho applied to an input
        """
        return self.rho(z)


# statsmodels/statsmodels statsmodels/robust/norms.py, class HuberT
# https://github.com/statsmodels/statsmodels/blob/01143c5c5321a6beb077017b109d322971014717/statsmodels/robust/norms.py
# (np.asarray of the traced argument, boolean test arrays used as 0/1 weights, boolean-mask
# assignment into a traced array in `weights`)
class HuberT(RobustNorm):
    """
    Huber's T for M estimation.
    """

    continuous = 1
    redescending = "not"

    def __init__(self, t=1.345):
        self.t = t

    def _subset(self, z):
        """
        Huber's T is defined piecewise over the range for z
        """
        z = np.asarray(z)
        return np.less_equal(np.abs(z), self.t)

    def rho(self, z):
        r"""
        The robust criterion function for Huber's t.
        """
        z = np.asarray(z)
        test = self._subset(z)
        return (test * 0.5 * z**2 +
                (1 - test) * (np.abs(z) * self.t - 0.5 * self.t**2))

    def psi(self, z):
        r"""
        The psi function for Huber's t estimator
        """
        z = np.asarray(z)
        test = self._subset(z)
        return test * z + (1 - test) * self.t * np.sign(z)

    def weights(self, z):
        r"""
        Huber's t weighting function for the IRLS algorithm
        """
        z_isscalar = np.isscalar(z)
        z = np.atleast_1d(z)

        test = self._subset(z)
        absz = np.abs(z)
        absz[test] = 1.0
        v = test + (1 - test) * self.t / absz

        if z_isscalar:
            v = v[0]
        return v


# statsmodels/statsmodels statsmodels/robust/norms.py, class AndrewWave
# https://github.com/statsmodels/statsmodels/blob/01143c5c5321a6beb077017b109d322971014717/statsmodels/robust/norms.py
# (`if np.any(small):` branches on a traced comparison)
class AndrewWave(RobustNorm):
    """
    Andrew's wave for M estimation.
    """

    continuous = 1
    redescending = "hard"

    def __init__(self, a=1.339):
        self.a = a

    def _subset(self, z):
        """
        Andrew's wave is defined piecewise over the range of z.
        """
        z = np.asarray(z)
        return np.less_equal(np.abs(z), self.a * np.pi)

    def rho(self, z):
        r"""
        The robust criterion function for Andrew's wave.
        """

        a = self.a
        z = np.asarray(z)
        test = self._subset(z)
        return (test * a**2 * (1 - np.cos(z / a)) +
                (1 - test) * a**2 * 2)

    def weights(self, z):
        r"""
        Andrew's wave weighting function for the IRLS algorithm
        """
        a = self.a
        z = np.asarray(z)
        test = self._subset(z)
        ratio = z / a
        small = np.abs(ratio) < np.finfo(np.double).eps
        if np.any(small):
            weights = np.ones_like(ratio)
            large = ~small
            ratio = ratio[large]
            weights[large] = test[large] * np.sin(ratio) / ratio
        else:
            weights = test * np.sin(ratio) / ratio
        return weights


# statsmodels/statsmodels statsmodels/discrete/discrete_model.py, class Logit, methods
# cdf, loglike, score, score_obs, hessian (the version with `X = self.exog`)
# https://github.com/statsmodels/statsmodels/blob/0000dac068153d108bdd8e3a55e6786ac07a4af5/statsmodels/discrete/discrete_model.py
class Logit:
    def __init__(self, endog, exog):        # test harness, not from the source
        self.endog = endog
        self.exog = exog

    def cdf(self, X):
        """
        The logistic cumulative distribution function

        Parameters
        ----------
        X : array-like
            `X` is the linear predictor of the logit model.  See notes.

        Returns
        -------
        1/(1 + exp(-X))
        """
        X = np.asarray(X)
        return 1/(1+np.exp(-X))

    def loglike(self, params):
        """
        Log-likelihood of logit model.
        """
        q = 2*self.endog - 1
        X = self.exog
        return np.sum(np.log(self.cdf(q*np.dot(X,params))))

    def score(self, params):
        """
        Logit model score (gradient) vector of the log-likelihood
        """

        y = self.endog
        X = self.exog
        L = self.cdf(np.dot(X,params))
        return np.dot(y - L,X)

    def score_obs(self, params):
        """
        Logit model Jacobian of the log-likelihood for each observation
        """

        y = self.endog
        X = self.exog
        L = self.cdf(np.dot(X, params))
        return (y - L)[:,None] * X

    def hessian(self, params):
        """
        Logit model Hessian matrix of the log-likelihood
        """
        X = self.exog
        L = self.cdf(np.dot(X,params))
        return -np.dot(L*(1-L)*X.T,X)
