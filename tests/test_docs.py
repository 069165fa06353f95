"""The examples in the public docstrings run and print what they show."""
import doctest
import importlib

import pytest

MODULES = ["jvpvjp", "jvpvjp.api", "jvpvjp.jacobian", "jvpvjp.vectorize", "jvpvjp.testing",
           "jvpvjp.custom", "jvpvjp.sparse", "jvpvjp.nn", "jvpvjp.optim"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS |
                             doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def _runnable_blocks(path):
    import re
    text = open(path).read()
    return re.findall(r"<!-- runnable -->\n```python\n(.*?)```", text, re.S)


def test_runnable_quickstart_examples(capsys):
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "docs", "quickstart.md")
    blocks = _runnable_blocks(path)
    assert len(blocks) >= 2
    for code in blocks:
        exec(compile(code, "quickstart.md", "exec"), {"__name__": "quickstart"})
