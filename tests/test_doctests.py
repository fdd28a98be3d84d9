"""The examples in the docstrings run and say what they show (``doctest``).

The modules whose docstrings carry examples: the node encodings, the readouts, the losses and
their interface, the monitored metric's key, the paths root.
"""
from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "mmgnn.data.pe",
    "mmgnn.models.readout",
    "mmgnn.losses.alignment",
    "mmgnn.losses.objective",
    "mmgnn.losses.queue",
    "mmgnn.losses.interface",
    "mmgnn.metrics.evaluate",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, one_thread):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no docstring examples"
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
