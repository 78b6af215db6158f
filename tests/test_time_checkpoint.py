"""``time_checkpoint=K``: the same numbers as the plain path on every path, with bounded saved activations."""

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import seqframe.core.recurrent as recurrent
from seqframe import Recurrent
from seqframe.core.generated import MODE_ENV
from seqframe.data import AddingDataModule
from seqframe.errors import SeqframeError
from seqframe.harness.cell_configs import register_cell_configs
from seqframe.harness.config_check import check_config
from seqframe.harness.model import SequenceModel
from seqframe.harness.train import config_dir

# (cell, options, the path `auto` takes with lengths): fused library kernels, the hand-written
# spec-GRU kernel, minGRU's own scan, and cells with no scan (minGRU's auto on a CPU, the peephole
# LSTM): generated kernels
CELLS = [
    ("lstm", {}, "fused"),
    ("gru", {}, "fused"),
    ("gru", {"reset_after": True}, "fused"),
    ("rnn", {}, "fused"),
    ("mingru", {"scan_method": "sequential"}, "fused"),
    ("mingru", {}, "generated"),
    ("peephole_lstm", {}, "generated"),
]
STEPS, CHUNK = 23, 5  # K does not divide T: the last chunk is short


@pytest.fixture(autouse=True)
def generated_kernels_from_the_first_call(monkeypatch):
    """``auto`` builds generated kernels in the background; here every call waits for them, so that
    the path a test compares is the one it names, not whichever was ready first."""
    monkeypatch.setenv(MODE_ENV, "wait")


def flat(state):
    return list(state) if isinstance(state, tuple) else [state]


def layer(name, options, backend="auto", time_checkpoint=None, dropout=0.0):
    torch.manual_seed(0)
    module = Recurrent(
        name, 3, 4, num_layers=2, bidirectional=True, dropout=dropout, backend=backend,
        cell_options=options, time_checkpoint=time_checkpoint,
    )
    return module.double()


def outputs_states_and_gradients(module, lengths, seed=1):
    """Outputs, final states and the gradients of the input, the initial state and every parameter."""
    torch.manual_seed(seed)
    x = torch.randn(4, STEPS, 3, dtype=torch.float64, requires_grad=True)
    start = [s.detach().requires_grad_() for s in flat(module(x[:, :1])[1])]
    start = tuple(start) if len(start) > 1 else start[0]
    out, final = module(x, start, lengths=lengths)
    weights = [torch.randn_like(t) for t in (out, *flat(final))]
    loss = sum((w * t).sum() for w, t in zip(weights, (out, *flat(final))))
    grads = torch.autograd.grad(loss, [x, *flat(start), *module.parameters()])
    return [out, *flat(final), *grads]


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("backend", ["auto", "loop"])
@pytest.mark.parametrize("name,options,path", CELLS)
def test_same_outputs_states_and_gradients_as_the_plain_path(name, options, path, backend, with_lengths):
    lengths = torch.tensor([STEPS, 1, 9, 17]) if with_lengths else None
    plain, chunked = layer(name, options, backend), layer(name, options, backend, time_checkpoint=CHUNK)
    expected_path = path if backend == "auto" else "loop"
    assert chunked.paths(with_lengths) == [expected_path] * 2
    for a, b in zip(outputs_states_and_gradients(plain, lengths), outputs_states_and_gradients(chunked, lengths)):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def test_dropout_between_layers_draws_the_same_masks():
    lengths = torch.tensor([STEPS, 4, 11, 20])
    plain, chunked = (layer("lstm", {}, time_checkpoint=k, dropout=0.5) for k in (None, CHUNK))
    for a, b in zip(outputs_states_and_gradients(plain, lengths), outputs_states_and_gradients(chunked, lengths)):
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-12)


def saved_bytes(name, options, backend, time_checkpoint, with_lengths, steps=200):
    """Bytes of the storages autograd keeps for the backward pass of one layer, the caller's input aside
    (through saved-tensor hooks; a tuple state, which checkpoint keeps by reference, is not counted)."""
    torch.manual_seed(0)
    module = Recurrent(name, 3, 8, backend=backend, cell_options=options, time_checkpoint=time_checkpoint)
    x = torch.randn(3, steps, 3, requires_grad=True)
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() != x.untyped_storage().data_ptr():
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        module(x, lengths=torch.tensor([steps, steps // 2, 1]) if with_lengths else None)
    return sum(storages.values())


@pytest.mark.parametrize("with_lengths", [False, True])
@pytest.mark.parametrize("backend", ["auto", "loop"])
@pytest.mark.parametrize("name,options,path", CELLS)
def test_saved_activations_are_bounded(name, options, path, backend, with_lengths):
    plain, chunked = (saved_bytes(name, options, backend, k, with_lengths) for k in (None, 20))
    assert chunked * 5 < plain, (chunked, plain)
    if not with_lengths:  # only the ten chunks' starting states [3, 8], not views into a chunk's buffers
        assert chunked <= 10 * 3 * 8 * 4, chunked


def test_chunks_run_only_while_autograd_records(monkeypatch):
    calls = []
    real = recurrent.checkpoint
    monkeypatch.setattr(recurrent, "checkpoint", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    module = layer("gru", {}, time_checkpoint=CHUNK)
    x = torch.randn(2, STEPS, 3, dtype=torch.float64)
    module(x)
    assert len(calls) == 2 * 2 * 5  # layers x directions x ceil(23 / 5) chunks
    calls.clear()
    with torch.no_grad():
        module(x)
    module(x[:, :CHUNK])  # one chunk or less: nothing to save
    assert calls == []


@pytest.mark.parametrize("bad", [0, -3, 2.5, True, "10"])
def test_bad_time_checkpoint_is_refused(bad):
    with pytest.raises(ValueError, match=f"time_checkpoint must be a positive integer .* got {bad!r}"):
        Recurrent("gru", 3, 4, time_checkpoint=bad)


def composed(*overrides):
    register_cell_configs(config_dir())
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides))
    cfg.paths.output_dir = "unused"  # the hydra resolver is not there in compose()
    return cfg


def test_model_time_checkpoint_from_the_config_reaches_the_layer():
    cfg = composed("model.time_checkpoint=50")
    check_config(cfg, config_dir())
    task = AddingDataModule(seq_len=20).spec.as_dict()
    model = SequenceModel(task, {"name": "gru"}, **OmegaConf.to_container(cfg.model, resolve=True))
    assert model.rnn.time_checkpoint == 50 and model.hparams.time_checkpoint == 50
    hparams = dict(model.hparams)
    del hparams["time_checkpoint"]  # a checkpoint written before the option existed
    assert SequenceModel(**hparams).rnn.time_checkpoint is None
    with pytest.raises(SeqframeError, match="model.time_checkpoint=0 is out of range"):
        check_config(composed("model.time_checkpoint=0"), config_dir())
