"""Neural-network building blocks in the functional style (stax, Flax): layers with
``init(rng, input_shape) -> params`` and ``apply(params, x) -> y``, losses, initialisers.
All are composites of primitives: their derivatives follow from those of the primitives.

>>> import numpy as np
>>> from jvpvjp import grad, nn
>>> model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
>>> params = model.init(0, (-1, 3))
>>> loss = lambda p, x, y: nn.mse(model.apply(p, x), y)
>>> g = grad(loss)(params, np.ones((5, 3)), np.zeros((5, 1)))
>>> [sorted(p) for p in g]
[['b', 'w'], [], ['b', 'w']]
"""
from . import functional, init  # noqa: F401
from .functional import (avg_pool2d, binary_cross_entropy_with_logits, conv2d,  # noqa: F401
                         cross_entropy, dropout, log_softmax, logsumexp, max_pool2d, mse,
                         relu, sigmoid, softmax, softmax_cross_entropy, softplus)
from .layers import (AvgPool2d, Conv2d, Dropout, Flatten, Layer, Linear,  # noqa: F401
                     MaxPool2d, ReLU, Sequential, Sigmoid, Softmax, Tanh, uniforms)
