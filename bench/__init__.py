"""Benchmarks of jvpvjp against hand-written Numba gradients, JAX, PyTorch and autograd.

    python -m bench --quick        # small and medium sizes, under about two minutes
    python -m bench --full         # every size, the Jacobian grid up to 400 x 400

See docs/performance.md for the latest results and how to read them. Importing this
package does not import NumPy: thread counts are set from the command line first.
"""
