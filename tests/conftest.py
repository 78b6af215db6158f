import os

import pytest
import torch

# One thread: the CI machine has two cores and the tests spawn subprocesses.
torch.set_num_threads(1)
os.environ.setdefault("PYTHONHASHSEED", "0")


@pytest.fixture
def fresh_registry(monkeypatch):
    """A registry that re-discovers plugins now, and again after the test."""
    from seqframe.core import registry as plugins

    monkeypatch.delenv(plugins.DISABLE_ENV, raising=False)
    monkeypatch.delenv(plugins.ONLY_ENV, raising=False)
    plugins.reset()
    yield plugins
    plugins.reset()


pytest_plugins = ["pytester"]
