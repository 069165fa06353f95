"""Fix thread counts for every tool before any of them is imported.

All tools get the same count (default 1): NumPy's BLAS, Numba, XLA's CPU backend and
PyTorch's intra- and inter-op pools. These environment variables are read when a library
loads, so `configure` must run before NumPy, Numba, JAX or PyTorch is imported.
"""
from __future__ import annotations

import os

_BLAS_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
              "NUMBA_NUM_THREADS")


def configure(n: int) -> dict:
    n = int(n)
    for var in _BLAS_VARS:
        os.environ[var] = str(n)
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split()
             if not f.startswith(("--xla_cpu_multi_thread_eigen", "intra_op_parallelism"))]
    if n == 1:
        flags += ["--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"]
    else:
        flags += [f"intra_op_parallelism_threads={n}"]
    os.environ["XLA_FLAGS"] = " ".join(flags)
    return settings(n)


def settings(n: int) -> dict:
    s = {var: os.environ.get(var) for var in _BLAS_VARS}
    s["XLA_FLAGS"] = os.environ.get("XLA_FLAGS")
    s["torch"] = f"set_num_threads({n}), set_num_interop_threads({n})"
    s["threads"] = n
    return s


def configure_torch(torch, n: int) -> None:
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(n)
    except RuntimeError:     # already set (it can only be set once per process)
        pass


def tune_malloc() -> str:
    """Keep freed memory in the process (glibc): no mmap for blocks under 32 MB, no trimming.

    On this virtual machine a first touch of a fresh page costs about 3 µs, so a program
    that allocates a few 8 MB temporaries per call spends most of its time in page faults
    when the allocator hands memory back to the system between calls (glibc's default
    once a block is large enough). Whether that happens depends on the process's history,
    which made the same kernel run in 2.4 ms in one process and 12 ms in the next. With
    this setting every tool reuses its memory between calls. Returns a description.
    """
    import ctypes
    import ctypes.util
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        ok = libc.mallopt(m_mmap_threshold, 32 * 1024 * 1024) and \
            libc.mallopt(m_trim_threshold, 2 ** 31 - 1)
    except (OSError, AttributeError):
        ok = False
    return ("glibc mallopt: M_MMAP_THRESHOLD=32 MiB, M_TRIM_THRESHOLD=2 GiB (freed memory "
            "is reused, not returned to the system)") if ok else "allocator defaults"
