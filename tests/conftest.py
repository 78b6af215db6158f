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


def _wait_for_kernel_builds() -> None:
    import sys

    generated = sys.modules.get("seqframe.core.generated")
    if generated is not None:
        generated.CACHE.wait()


@pytest.fixture(autouse=True)
def no_kernel_build_outlives_its_test():
    """A test that leaves generated kernels building in the background would share the process with
    the next test: the builder thread runs Inductor, whose ``warnings.catch_warnings`` (process-wide,
    not thread-safe) can undo the next test's ``pytest.warns``. So every test starts with no build
    under way (one left by the plugins' own tests included) and waits for its own."""
    _wait_for_kernel_builds()
    yield
    _wait_for_kernel_builds()


pytest_plugins = ["pytester"]
