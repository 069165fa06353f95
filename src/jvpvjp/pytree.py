"""Pytrees: nested tuples, lists, dicts (and namedtuples, None) with array leaves."""
from __future__ import annotations

_LEAF = "*"


def tree_flatten(tree):
    """(leaves, treedef): ``treedef`` is hashable and rebuilds the structure."""
    leaves = []
    return leaves, _flatten(tree, leaves)


def _flatten(x, leaves):
    t = type(x)
    if t is tuple or t is list:
        return (t, tuple(_flatten(e, leaves) for e in x))
    if t is dict:
        keys = tuple(sorted(x))
        return (dict, keys, tuple(_flatten(x[k], leaves) for k in keys))
    if x is None:
        return None
    if isinstance(x, tuple) and hasattr(x, "_fields"):
        return (t, tuple(_flatten(e, leaves) for e in x))
    leaves.append(x)
    return _LEAF


def tree_unflatten(treedef, leaves):
    it = iter(leaves)
    out = _unflatten(treedef, it)
    return out


def _unflatten(d, it):
    if d is _LEAF:
        return next(it)
    if d is None:
        return None
    t = d[0]
    if t is dict:
        return {k: _unflatten(c, it) for k, c in zip(d[1], d[2])}
    children = [_unflatten(c, it) for c in d[1]]
    if t is tuple or t is list:
        return t(children)
    return t(*children)   # namedtuple


def tree_map(fn, tree):
    leaves, treedef = tree_flatten(tree)
    return tree_unflatten(treedef, [fn(x) for x in leaves])


def tree_leaves(tree):
    return tree_flatten(tree)[0]


def tree_structure(tree):
    return tree_flatten(tree)[1]
