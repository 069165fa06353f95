"""Run-time settings, read from the environment at import and changeable in code.

* ``backend``: ``"numba"`` (generated, compiled kernels; the default) or ``"numpy"`` (an
  op-list interpreter over NumPy: no compile time). Environment: ``JVPVJP_BACKEND``.
* ``cache_dir``: where generated kernel sources and Numba's compiled code are kept across
  processes; ``None`` disables the disk cache. Environment: ``JVPVJP_CACHE_DIR`` (empty
  disables it); default ``$XDG_CACHE_HOME/jvpvjp`` or ``~/.cache/jvpvjp``.
* ``max_paths``: how many traced paths (guard outcomes) are kept per function signature.
* ``numba_blas``: whether compiled kernels multiply matrices with Numba's ``@`` (BLAS
  through SciPy, which Numba needs for it) or call NumPy's matmul from object mode (no
  SciPy needed; about 2 us more per product). ``None`` (default): ``@`` when SciPy is
  installed. Environment: ``JVPVJP_NUMBA_BLAS=0/1``.
"""
import os


def _default_cache_dir():
    if "JVPVJP_CACHE_DIR" in os.environ:
        return os.environ["JVPVJP_CACHE_DIR"] or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "jvpvjp")


def _env_flag(name):
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    return value.lower() not in ("0", "false", "no", "off")


backend = os.environ.get("JVPVJP_BACKEND", "numba")
numba_blas = _env_flag("JVPVJP_NUMBA_BLAS")
cache_dir = _default_cache_dir()
max_paths = 8
# Large transcendental array ops (exp, tanh, ...) call NumPy from compiled code above this
# many elements: NumPy's SIMD loops beat Numba's scalar loops there.
# Scalar op lists with at least this many ops run on the tape interpreter instead of being
# compiled (Numba's compile time grows with program length).
tape_threshold = int(os.environ.get("JVPVJP_TAPE_THRESHOLD", 1000))
numpy_ufunc_threshold = int(os.environ.get("JVPVJP_NUMPY_UFUNC_THRESHOLD", 4096))
# Elementwise ops on arrays of at least this rank are generated as explicit loop nests
# (fused with their neighbours and with sums of them) instead of array expressions.
loop_rank = int(os.environ.get("JVPVJP_LOOP_RANK", 3))
# Jacobians push blocks of basis vectors through the linear part at once; a block is as
# large as keeps the linear part's largest value under this many elements (0: one at a
# time).
jacobian_block_elements = int(os.environ.get("JVPVJP_JACOBIAN_BLOCK_ELEMENTS", 1 << 20))
