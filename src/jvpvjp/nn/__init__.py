"""Neural-network helpers built from primitives (composites: no rules of their own)."""
from . import functional  # noqa: F401
