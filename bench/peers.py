"""Optional peer tools. Each is imported only if installed; missing ones are skipped."""
from __future__ import annotations

import importlib
import os

PEERS = {}
NOTES = []


def _try(name, setup):
    try:
        PEERS[name] = setup()
    except Exception as e:          # not installed, or broken install: skip with a note
        NOTES.append(f"{name}: skipped ({type(e).__name__}: {str(e).splitlines()[0][:80]})")


def _jax():
    import jax
    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_platforms", "cpu")
    import jax.numpy as jnp
    return {"module": jax, "xp": jnp, "version": jax.__version__,
            "stop_gradient": jax.lax.stop_gradient}


def _torch():
    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return {"module": torch, "version": torch.__version__}


def _autograd():
    import autograd
    import autograd.numpy as anp
    ver = getattr(autograd, "__version__", None)
    if ver is None:
        try:
            from importlib.metadata import version
            ver = version("autograd")
        except Exception:
            ver = "?"
    return {"module": autograd, "xp": anp, "version": ver, "stop_gradient": lambda x: x}


def load(selected=("jax", "torch", "autograd")):
    for name, setup in (("jax", _jax), ("torch", _torch), ("autograd", _autograd)):
        if name in selected and name not in PEERS:
            _try(name, setup)
    return PEERS


def has(name):
    return name in PEERS and importlib.util.find_spec(name) is not None
