"""The examples in the public docstrings run and print what they show."""
import doctest
import importlib

import pytest

MODULES = ["jvpvjp", "jvpvjp.api", "jvpvjp.jacobian", "jvpvjp.vectorize", "jvpvjp.testing"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS |
                             doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
