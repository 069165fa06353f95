"""The kernel disk cache is never wrong and never a crash.

Every scenario runs in a fresh interpreter (the disk cache is read when a process first
loads a kernel) with ``JVPVJP_CACHE_DIR`` pointing into ``tmp_path``. One warm cache is built
per session; scenarios that damage a cache damage a copy of it.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

# Imported by every subprocess: the kernels, and `report` printing one JSON line with the
# results, the RuntimeWarnings raised and the number of Numba compiles (cache misses).
PRELUDE = textwrap.dedent("""
    import json, os, sys, time, warnings
    import numpy as np
    _caught = warnings.catch_warnings(record=True)
    _warnings = _caught.__enter__()
    warnings.simplefilter("always")
    import jvpvjp
    from jvpvjp.backend import numba_backend as nb

    def f(x):
        return np.sum(np.sin(x) * x ** 2)

    def raw_oplist():
        # one kernel called with three memory layouts: three overloads of one function
        return jvpvjp.make_oplist(lambda x: np.sin(x) * 2.0)(np.ones((2, 3)))

    def raw_source():
        return nb.generate_source(raw_oplist())[0]

    LAYOUTS = {"C": lambda: np.arange(6.0).reshape(2, 3),
               "F": lambda: np.asfortranarray(np.arange(6.0).reshape(2, 3)),
               "A": lambda: np.arange(12.0).reshape(2, 6)[:, ::2]}
    KERNELS = {
        "grad1": lambda: jvpvjp.grad(f)(np.arange(3.0)),
        "grad2": lambda: jvpvjp.grad(f)(np.arange(4.0).reshape(2, 2)),
        "jac": lambda: jvpvjp.jacfwd(lambda x: np.sin(x) * x)(np.arange(3.0)),
        "f32": lambda: jvpvjp.grad(f)(np.arange(3, dtype=np.float32)),
    }
    for _k, _x in LAYOUTS.items():
        KERNELS["raw" + _k] = lambda _x=_x: nb.NumbaKernel(raw_oplist())(_x())[0]

    def report(names=tuple(KERNELS), **extra):
        results = {n: np.asarray(KERNELS[n]()).tolist() for n in names}
        misses = sum(sum(fn.stats.cache_misses.values()) for fn in nb._modules.values())
        print(json.dumps(dict(results=results, misses=misses, warnings=[
            str(w.message) for w in _warnings if issubclass(w.category, RuntimeWarning)],
            **extra)))
""")


def expected(name):
    if name == "rawA":          # every other column of a (2, 6) array
        return 2.0 * np.sin(np.arange(12.0).reshape(2, 6)[:, ::2])
    if name.startswith("raw"):
        return 2.0 * np.sin(np.arange(6.0).reshape(2, 3))
    if name == "jac":
        x = np.arange(3.0)
        return np.diag(np.cos(x) * x + np.sin(x))
    x = {"grad1": np.arange(3.0), "grad2": np.arange(4.0).reshape(2, 2),
         "f32": np.arange(3.0)}[name]
    return np.cos(x) * x ** 2 + 2 * x * np.sin(x)


def run(code, cache_dir, *, flags=(), env=None, wrap=(), check=True):
    full_env = dict(os.environ, JVPVJP_CACHE_DIR=str(cache_dir), JVPVJP_BACKEND="numba",
                    PYTHONDONTWRITEBYTECODE="1")
    full_env.pop("NUMBA_CACHE_DIR", None)
    full_env.update(env or {})
    p = subprocess.run([*wrap, sys.executable, *flags, "-c", PRELUDE + textwrap.dedent(code)],
                       env=full_env, capture_output=True, text=True, timeout=300)
    if check:
        assert p.returncode == 0, p.stdout + p.stderr
    return p


SMALL = "['grad1', 'jac', 'rawC', 'rawF']"    # the kernels a damaged cache is read for


def parse(p):
    out = json.loads(p.stdout.strip().splitlines()[-1])
    for name, value in out["results"].items():
        np.testing.assert_allclose(value, expected(name), rtol=1e-6, err_msg=name)
    return out


def copy_of(warm, tmp_path):
    d = tmp_path / "cache"
    shutil.copytree(warm, d)
    return d


def numba_files(cache):
    return sorted(p for p in (cache / "kernels" / "__pycache__").iterdir()
                  if p.suffix in (".nbi", ".nbc"))


@pytest.fixture(scope="session")
def warm(tmp_path_factory):
    """A cache holding every kernel of PRELUDE, each called once."""
    d = tmp_path_factory.mktemp("warm") / "cache"
    out = parse(run("report()", d))
    assert out["warnings"] == [] and out["misses"] > 0
    return d


def test_warm_cache_loads_without_compiling(warm, tmp_path):
    d = copy_of(warm, tmp_path)
    out = parse(run("""
        sources = [open(p).read() for p in sorted(
            os.path.join(c, "kernels", n) for c in [os.environ["JVPVJP_CACHE_DIR"]]
            for n in os.listdir(os.path.join(c, "kernels")) if n.endswith(".py"))]
        before = [nb.on_disk(s) for s in sources]
        report(before=before)
    """, d, flags=["-W", "error::RuntimeWarning"]))
    assert out["misses"] == 0 and out["warnings"] == []
    assert out["before"] and all(out["before"])


def test_on_disk(warm, tmp_path):
    d = copy_of(warm, tmp_path)
    out = json.loads(run("""
        src = raw_source()
        r = {"warm": nb.on_disk(src)}
        digest = [n[2:-3] for n in os.listdir(os.path.join(os.environ["JVPVJP_CACHE_DIR"],
                  "kernels")) if n.endswith(".py") and open(os.path.join(
                  os.environ["JVPVJP_CACHE_DIR"], "kernels", n)).read() == src][0]
        py = os.path.join(os.environ["JVPVJP_CACHE_DIR"], "kernels", f"k_{digest}.py")
        ok = py[:-3] + ".ok"
        t = time.perf_counter()
        for _ in range(100):
            nb.on_disk(src)
        r["seconds"] = (time.perf_counter() - t) / 100
        r["other source"] = nb.on_disk(src + "# changed\\n")
        open(py, "a").write("# edited\\n")
        r["edited py"] = nb.on_disk(src)
        open(py, "w").write(src)
        r["restored py"] = nb.on_disk(src)
        open(ok, "w").write("garbage")
        r["garbled marker"] = nb.on_disk(src)
        os.unlink(ok)
        r["no marker"] = nb.on_disk(src)
        nb._compiled(src)(np.ones((2, 3)), np.empty((2, 3)))   # a raw call: no marker
        # (the output is an argument: see numba_backend.Out)
        r["raw call"] = nb.on_disk(src)
        kernel = nb.NumbaKernel(jvpvjp.make_oplist(lambda x: np.sin(x) * 2.0)(np.ones((2, 3))))
        kernel(np.ones((2, 3)))
        r["kernel call"] = nb.on_disk(src)
        jvpvjp.config.cache_dir = None
        r["no cache"] = nb.on_disk(src)
        print(json.dumps(r))
    """, d).stdout.strip().splitlines()[-1])
    assert out.pop("seconds") < 1e-3
    assert out == {"warm": True, "other source": False, "edited py": False,
                   "restored py": True, "garbled marker": False, "no marker": False,
                   "raw call": False, "kernel call": True, "no cache": False}


def test_on_disk_false_before_first_call(tmp_path):
    out = json.loads(run("""
        ol = jvpvjp.make_oplist(lambda x: np.cos(x) + 1.0)(np.ones(3))
        kernel = nb.NumbaKernel(ol)
        r = [nb.on_disk(kernel.source)]
        kernel(np.ones(3))
        r.append(nb.on_disk(kernel.source))
        print(json.dumps(r))
    """, tmp_path / "cache").stdout.strip().splitlines()[-1])
    assert out == [False, True]


def _damage(cache, how):
    rng = np.random.default_rng(0)
    for root, _, names in os.walk(cache):
        for n in names:
            with open(os.path.join(root, n), "wb") as f:
                if how == "garbage":
                    f.write(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())


@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_damaged_cache_recovers_with_one_warning(warm, tmp_path, how):
    d = copy_of(warm, tmp_path)
    _damage(d, how)
    out = parse(run(f"report({SMALL})", d))
    assert len(out["warnings"]) == 1, out["warnings"]
    assert "corrupt" in out["warnings"][0] and "cache" in out["warnings"][0]
    # the entries were rewritten: the next process loads them all, silently
    out = parse(run(f"report({SMALL})", d, flags=["-W", "error::RuntimeWarning"]))
    assert out["misses"] == 0 and out["warnings"] == []


def test_damaged_numba_files_only(warm, tmp_path):
    """The sources are intact, so Numba reads its damaged index and data files."""
    d = copy_of(warm, tmp_path)
    files = numba_files(d)
    for i, p in enumerate(files):
        p.write_bytes(b"" if i % 2 else os.urandom(100))
    out = parse(run(f"report({SMALL})", d))
    assert len(out["warnings"]) == 1 and "corrupt" in out["warnings"][0]
    out = parse(run(f"report({SMALL})", d, flags=["-W", "error::RuntimeWarning"]))
    assert out["misses"] == 0


def test_foreign_and_stray_files(warm, tmp_path):
    d = copy_of(warm, tmp_path)
    kernels, pycache = d / "kernels", d / "kernels" / "__pycache__"
    data = sorted(pycache.glob("*.nbc"))
    # every data file holds another kernel's valid data; each index another kernel's index
    contents = [p.read_bytes() for p in data]
    for p, c in zip(data, contents[1:] + contents[:1]):
        p.write_bytes(c)
    (pycache / "stray.nbi").write_bytes(b"not an index")
    (pycache / "k_0123456789abcdef01234567.kernel-6.py311.nbi").write_bytes(os.urandom(64))
    (kernels / "k_0123456789abcdef01234567.py").write_text("raise SystemExit('imported')\n")
    (kernels / "README").write_text("stray")
    (kernels / ".tmp-leftover.tmp").write_text("half a kernel")
    out = parse(run(f"report({SMALL})", d))
    # one warning for the whole process (data of another module fails to unpickle: a
    # corrupt entry; data that unpickles is checked against the signature it is filed under)
    assert len(out["warnings"]) == 1, out["warnings"]
    assert "compiling it again" in out["warnings"][0]
    out = parse(run(f"report({SMALL})", d, flags=["-W", "error::RuntimeWarning"]))
    assert out["misses"] == 0


def test_swapped_overloads_are_not_used(warm, tmp_path):
    """An index naming another overload's data (what Numba's unlocked index update leaves
    after two processes save overloads of one function at once) is caught, not run."""
    d = copy_of(warm, tmp_path)
    index = [p for p in numba_files(d) if p.suffix == ".nbi" and
             len(list(p.parent.glob(p.name[:-4] + ".*.nbc"))) == 3]
    assert len(index) == 1
    a, b, c = sorted(index[0].parent.glob(index[0].name[:-4] + ".*.nbc"))
    ca, cb, cc = a.read_bytes(), b.read_bytes(), c.read_bytes()
    a.write_bytes(cb), b.write_bytes(cc), c.write_bytes(ca)
    out = parse(run("report()", d))
    assert len(out["warnings"]) == 1 and "another function or signature" in out["warnings"][0]


def test_retry_after_failed_first_call(warm, tmp_path):
    """Without the cache guards, the first call's error is caught, the kernel's cache files
    deleted and its module executed again."""
    d = copy_of(warm, tmp_path)
    for p in numba_files(d):
        p.write_bytes(b"")
    out = parse(run("""
        nb._guard_module = lambda *a: None
        report(['grad1', 'jac', 'rawC', 'rawF'])
    """, d))
    assert len(out["warnings"]) == 1 and "corrupt" in out["warnings"][0]
    out = parse(run(f"report({SMALL})", d, flags=["-W", "error::RuntimeWarning"]))
    assert out["misses"] == 0


def test_program_error_is_not_taken_for_corruption(tmp_path):
    """An error of the program itself on the first call of a cached kernel propagates; the
    cache entry is left alone."""
    code = """
        ol = jvpvjp.make_oplist(lambda x: np.arcsin(x))(np.ones(3))
        kernel = nb.NumbaKernel(ol)
        if os.environ["MODE"] == "raise":
            np.seterr(all="raise")
            try:
                kernel(np.full(3, 2.0))
                r = "no error"
            except FloatingPointError:
                r = "FloatingPointError"
        else:
            r = float(kernel(np.full(3, np.sin(1.0)))[0][0])
        print(json.dumps(dict(r=r, misses=sum(kernel.fn.stats.cache_misses.values()),
                              warnings=[str(w.message) for w in _warnings])))
    """
    env = {"JVPVJP_NUMPY_UFUNC_THRESHOLD": "1"}    # np.arcsin from object mode
    d = tmp_path / "cache"
    out = json.loads(run(code, d, env=dict(env, MODE="warm")).stdout)
    assert out["r"] == pytest.approx(1.0) and out["warnings"] == []
    before = {p: p.stat().st_mtime_ns for p in numba_files(d)}
    out = json.loads(run(code, d, env=dict(env, MODE="raise")).stdout)
    assert out == {"r": "FloatingPointError", "misses": 0, "warnings": []}
    assert {p: p.stat().st_mtime_ns for p in numba_files(d)} == before


def _unusable(tmp_path, kind):
    if kind == "proc":
        return "/proc/jvpvjp-cache", {}
    if kind == "below a file":
        (tmp_path / "file").write_text("")
        return tmp_path / "file" / "cache", {}
    # Numba finds no writable place for its cache at all: "no locator available"
    d = tmp_path / "cache"
    (d / "kernels").mkdir(parents=True)
    (d / "kernels" / "__pycache__").write_text("")
    return d, {"XDG_CACHE_HOME": "/proc/jvpvjp-xdg"}


@pytest.mark.parametrize("kind", ["proc", "below a file", "no locator"])
def test_unusable_cache_dir(tmp_path, kind):
    d, env = _unusable(tmp_path, kind)
    out = parse(run("report(['grad1', 'grad2', 'jac'])", d, env=env))
    assert len(out["warnings"]) == 1, out["warnings"]
    assert "cannot be used" in out["warnings"][0] and "compiling without it" in out["warnings"][0]


def _read_only_mount():
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount --bind -o ro / /mnt"],
                           capture_output=True) if shutil.which("unshare") else None
    return probe is not None and probe.returncode == 0


@pytest.mark.skipif(not _read_only_mount(), reason="needs unshare -m and mount (root)")
def test_read_only_cache_dir(warm, tmp_path):
    """A read-only directory (a read-only bind mount: chmod does not stop root) holding
    valid kernels. Numba cannot write next to them, so it keeps their machine code in its
    user-wide cache (silently); without one they compile with no disk cache, as does a
    kernel whose source cannot be written, with one warning."""
    d = copy_of(warm, tmp_path)
    wrap = ["unshare", "-m", "sh", "-c", f'mount --bind -o ro "{d}" "{d}" && exec "$0" "$@"']
    xdg = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    out = parse(run(f"report({SMALL})", d, env=xdg, wrap=wrap, flags=["-W", "error::RuntimeWarning"]))
    assert out["warnings"] == [] and list((tmp_path / "xdg").rglob("*.nbi"))
    out = parse(run(f"report({SMALL})", d, env=xdg, wrap=wrap, flags=["-W", "error::RuntimeWarning"]))
    assert out["misses"] == 0          # loaded from Numba's user-wide cache
    next(p for p in (d / "kernels").iterdir() if p.suffix == ".py").unlink()
    out = parse(run("report()", d, env={"XDG_CACHE_HOME": "/proc/jvpvjp-xdg"}, wrap=wrap))
    assert len(out["warnings"]) == 1 and "cannot be used" in out["warnings"][0]


WORKER = """
    # widen the window of Numba's index read-modify-write, so that saves from different
    # processes certainly overlap (without the lock, overloads would get lost or swapped)
    from numba.core import caching
    _si, _sd = caching.IndexDataCacheFile._save_index, caching.IndexDataCacheFile._save_data
    _pause = float(os.environ["PAUSE"])
    def _slow_index(self, overloads):
        time.sleep(0.3)
        _si(self, overloads)
    def _slow_data(self, name, data):
        time.sleep(_pause)
        _sd(self, name, data)
    caching.IndexDataCacheFile._save_index = _slow_index
    caching.IndexDataCacheFile._save_data = _slow_data
    while time.time() < float(os.environ["START"]):
        time.sleep(0.005)
    report(os.environ["NAMES"].split(","))
"""


def test_concurrent_processes_fill_one_cache(tmp_path):
    d = tmp_path / "cache"
    sets = ["grad1,jac,rawC", "grad1,grad2,rawF", "jac,grad2,rawA"]
    env = dict(os.environ, JVPVJP_CACHE_DIR=str(d), JVPVJP_BACKEND="numba",
               PYTHONDONTWRITEBYTECODE="1", START=str(__import__("time").time() + 3))
    env.pop("NUMBA_CACHE_DIR", None)
    procs = [subprocess.Popen([sys.executable, "-c", PRELUDE + textwrap.dedent(WORKER)],
                              env=dict(env, NAMES=names, PAUSE=str(0.1 * (3 - i))),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, names in enumerate(sets)]
    for p in procs:
        stdout, stderr = p.communicate(timeout=300)
        assert p.returncode == 0, stdout + stderr
        assert parse(subprocess.CompletedProcess(p.args, 0, stdout))["warnings"] == []
    out = parse(run("report(['grad1', 'grad2', 'jac', 'rawC', 'rawF', 'rawA'])", d,
                    flags=["-W", "error::RuntimeWarning"]))
    assert out["warnings"] == [] and out["misses"] == 0


def test_tiered_kernel_uses_a_disk_hit_after_its_first_call(warm, tmp_path):
    """Under the default tiers a kernel found in the disk cache is loaded in the background
    right after its first (interpreted) call, not only once it is hot; a kernel that is not
    on disk stays interpreted."""
    d = copy_of(warm, tmp_path)
    out = json.loads(run("""
        from jvpvjp.backend import tiers
        tiers.load_runtime()       # the tapes' loops: not in this cache, compiled here
        loops = sum(sum(fn.stats.cache_misses.values()) for fn in nb._modules.values())
        g = jvpvjp.grad(f)
        h = jvpvjp.grad(lambda x: np.sum(np.cos(x) * x))     # not in the cache
        x = np.arange(3.0)
        r = {"first": g(x).tolist(), "other": h(x).tolist()}
        tiers.wait_for_compiles(120)
        r["later"] = g(x).tolist()
        r["explain"] = jvpvjp.explain_cache(g)
        r["explain_other"] = jvpvjp.explain_cache(h)
        r["misses"] = sum(sum(fn.stats.cache_misses.values())
                          for fn in nb._modules.values()) - loops
        print(json.dumps(r))
    """, d, env={"JVPVJP_BACKEND": "auto"}).stdout.strip().splitlines()[-1])
    want = expected("grad1")
    np.testing.assert_allclose(out["first"], want, rtol=1e-12)
    np.testing.assert_allclose(out["later"], want, rtol=1e-12)
    assert "now numba" in out["explain"] and "found in the disk cache" in out["explain"]
    assert "now numba" not in out["explain_other"]
    assert out["misses"] == 0
