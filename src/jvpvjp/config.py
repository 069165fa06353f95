"""Run-time settings, read from the environment at import and changeable in code.

* ``backend``: ``"auto"`` (the default: every new kernel runs at once on an interpreter
  and is compiled in the background once its calls show it is worth it, see
  `backend.tiers`), or one backend pinned for every kernel, built before the first call
  returns: ``"numba"`` (generated, compiled kernels), ``"numpy"`` (the op-list
  interpreter over NumPy), ``"tape"`` / ``"vtape"`` (the precompiled scalar / vector tape),
  ``"rolled"`` (the scalar tape with its repeating stretches run as compiled loops).
  Environment: ``JVPVJP_BACKEND``.
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

# Numba colours its error messages through colorama, whose init/deinit rebinds sys.stdout
# and sys.stderr while a message is formatted; a background compile that falls back to
# the interpreter would then swap the streams under the caller's feet (a doctest or
# contextlib.redirect_stdout loses its output). Plain messages: set before Numba loads.
os.environ.setdefault("NUMBA_DISABLE_ERROR_MESSAGE_HIGHLIGHTING", "1")


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


backend = os.environ.get("JVPVJP_BACKEND", "auto") or "auto"
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
# (fused with their neighbours and with sums of them) instead of array expressions. Numba
# compiles every array expression as a function of its own; loop nests compile about 4x
# faster per op (value_and_grad of an unrolled 201-op array chain: 7.2 s at rank 3, 3.0 s
# at rank 1, fresh cache).
loop_rank = int(os.environ.get("JVPVJP_LOOP_RANK", 1))
# Jacobians push blocks of basis vectors through the linear part at once; a block is as
# large as keeps the linear part's largest value under this many elements (0: one at a
# time).
jacobian_block_elements = int(os.environ.get("JVPVJP_JACOBIAN_BLOCK_ELEMENTS", 1 << 20))
# Tiers (backend "auto"): a kernel is compiled once its calls on the interpreters have
# taken compile_after times its expected compile time, which is
# compile_seconds_fixed + compile_seconds_per_op * ops (measured through Numba here).
compile_after = float(os.environ.get("JVPVJP_COMPILE_AFTER", 0.05))
compile_seconds_fixed = 0.3
compile_seconds_per_op = 0.004
# Programs longer than this are not compiled by Numba (its front end is slow on long
# functions): they stay on a precompiled tape, or on the NumPy interpreter.
compile_max_ops = int(os.environ.get("JVPVJP_COMPILE_MAX_OPS", 600))
# The Numba runtime (tapes) is loaded in the background once kernels have spent this many
# seconds on the NumPy interpreter.
runtime_after = float(os.environ.get("JVPVJP_RUNTIME_AFTER", 0.02))
# The vector tape is a first tier for programs whose values have at most this many elements.
vtape_max_elements = 4096
# Values a traced function reads from its globals and closure are checked on every call:
# "content" (identity, and arrays compared with the values seen when tracing: an in-place
# change is seen) or "identity" (rebinding only; cheaper for large global arrays).
env_check = os.environ.get("JVPVJP_ENV_CHECK", "content")
