"""The parts of exact resume, each on its own and fast: the loader's position, the RNG states and the
metrics' mid-epoch sums (tests/test_resume.py checks them together through real training runs)."""

import io
import random

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset
from torchmetrics import MeanMetric

from seqframe.data.loading import resumable_loader
from seqframe.harness.metric_state import metric_states, set_metric_states
from seqframe.harness.rng_state import rng_state, set_rng_state

ITEMS, BATCH, SEED = 30, 4, 7  # 8 batches an epoch, the last one short


def loader():
    return resumable_loader(TensorDataset(torch.arange(ITEMS)), shuffle=True, seed=SEED, batch_size=BATCH)


def epoch(data, number):
    """What the loader yields in epoch ``number`` (Lightning sets the sampler's epoch before each)."""
    data.sampler.set_epoch(number)
    return [batch[0].tolist() for batch in data]


def through_checkpoint(obj):
    """``obj`` after torch.save and a weights-only torch.load, as Lightning's checkpoints carry it."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("done", [1, 3, 7])
def test_a_resumed_loader_yields_what_the_uninterrupted_epoch_would_have(done):
    uninterrupted = loader()
    first, second = epoch(uninterrupted, 2), epoch(uninterrupted, 3)
    assert first != second and sorted(sum(first, [])) == list(range(ITEMS)), "shuffled, every item once"

    interrupted = loader()
    interrupted.sampler.set_epoch(2)
    batches = iter(interrupted)
    seen = [next(batches)[0].tolist() for _ in range(done)]
    state = through_checkpoint(interrupted.state_dict())
    assert seen == first[:done] and state == {"batches": done}

    resumed = loader()  # a new process: Lightning rebuilds the loader, then loads its state
    resumed.load_state_dict(state)
    assert epoch(resumed, 2) == first[done:]
    assert resumed.state_dict() == {"batches": len(first)}, "the count includes the batches skipped"
    assert epoch(resumed, 3) == second, "the next epoch starts from its beginning"


def test_a_loader_saved_after_the_epochs_last_batch_resumes_at_the_next_epoch():
    full = loader()
    second = (epoch(full, 0), epoch(full, 1))[1]
    resumed = loader()
    resumed.load_state_dict({"batches": len(resumed)})
    assert epoch(resumed, 1) == second


def draws():
    """A few draws from each generator, including the cached second value of a Gaussian pair."""
    return (
        torch.rand(4).tolist(),
        torch.randn(3).tolist(),
        np.random.rand(4).tolist(),
        np.random.standard_normal(),
        random.random(),
        random.gauss(0, 1),
    )


def test_rng_state_restores_torch_numpy_and_python_draws_exactly():
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    np.random.standard_normal()  # leaves half a Gaussian pair cached in numpy ...
    random.gauss(0, 1)  # ... and in python: the state must carry it
    state = through_checkpoint(rng_state())
    expected = draws()
    draws()  # move every generator on
    set_rng_state(state)
    assert draws() == expected


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.mean = MeanMetric()


def test_metric_states_restore_the_mid_epoch_sums_and_count():
    interrupted = Model()
    for value in (1.0, 2.0, 6.0):
        interrupted.mean.update(torch.tensor(value))
    states = through_checkpoint(metric_states(interrupted))

    resumed = Model()
    resumed.mean.update(torch.tensor(100.0))
    assert float(resumed.mean.compute()) == 100.0  # a value cached by compute() must not survive the restore
    set_metric_states(resumed, states)
    assert resumed.mean.update_count == 3 and float(resumed.mean.compute()) == 3.0
    resumed.mean.update(torch.tensor(7.0))
    assert float(resumed.mean.compute()) == 4.0  # (1 + 2 + 6 + 7) / 4: the epoch's mean, not its tail's


def test_configs_naming_the_callback_at_its_old_places_still_work(tmp_path):
    """``seqframe.resume.StepCheckpoint`` (before 0.2) and ``seqframe.harness.resume.StepCheckpoint``."""
    import warnings

    from hydra.utils import instantiate

    from seqframe.harness.step_checkpoint import StepCheckpoint

    for target in ("seqframe.resume.StepCheckpoint", "seqframe.harness.resume.StepCheckpoint"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            callback = instantiate({"_target_": target, "dirpath": str(tmp_path), "every_n_train_steps": 5})
        assert isinstance(callback, StepCheckpoint) and callback.path == tmp_path / "last.ckpt"
