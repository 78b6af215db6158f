"""``Deployable``: a trained model as users call it, from raw inputs to answers.

It applies the training split's normalisation, runs the model and turns its
outputs into what a user wants: class probabilities (``[B, C]``, or
``[B, T, C]`` per step) or regression values. ``seqframe-predict`` runs
exactly this module and ``seqframe export`` exports exactly this module, so
predictions and exported models agree.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from seqframe.data.base import PER_STEP_TASKS, REGRESSION_TASKS
from seqframe.errors import SeqframeError


class Deployable(nn.Module):
    """``forward(x, lengths)``: raw features ``[B, T, F]`` (or token ids ``[B, T]``) and
    valid steps per sequence ``[B]`` -> probabilities or values."""

    def __init__(self, model: nn.Module, data_state: Optional[Dict[str, Any]] = None, normalize: bool = True) -> None:
        super().__init__()
        self.model = model
        state = self.data_state = dict(data_state or {})  # what the model was trained with (plain values)
        features = model.spec.vocab_size is None  # token ids are never normalised
        self.normalize = bool(normalize and features and state.get("mean") is not None)
        if self.normalize:
            self.register_buffer("mean", torch.tensor(state["mean"], dtype=torch.float32))
            self.register_buffer("std", torch.tensor(state["std"], dtype=torch.float32))
        spec = model.spec
        self.task, self.binary = spec.task, model.binary

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:
        return self._answer(self.model(self._inputs(x), lengths))

    def _inputs(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.std if self.normalize else x

    def _answer(self, out: Tensor) -> Tensor:
        """The model's outputs as users want them: values, or probabilities."""
        if self.task in REGRESSION_TASKS:
            return out
        if self.binary:
            p = torch.sigmoid(out)
            return torch.cat([1 - p, p], dim=-1)
        return torch.softmax(out, dim=-1)


class StepDeployable(Deployable):
    """One time step for streaming (``seqframe export --step``): ``forward(x, state)`` takes one step's
    input (``[B, F]`` raw features or ``[B]`` token ids) and the state ``(state_0, ...)``, each
    ``[layers, B, S]``, and returns ``(the answer after this step, the new state)``. Called step after
    step from the initial state it gives what :class:`Deployable` gives for the whole sequence (per
    step; for one answer per sequence, the answer if the sequence ended here), O(1) work per step."""

    def __init__(self, model: nn.Module, data_state: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(model, data_state)
        if model.rnn.num_directions != 1:
            raise SeqframeError(
                "a bidirectional model reads each sequence backwards too, so it cannot run step by step "
                "(export --step, streaming); export it without --step"
            )
        self.single = isinstance(model.initial_state(1), Tensor)  # one state tensor, or a tuple (LSTM: h, c)

    def initial_state(self, batch: int) -> Tuple[Tensor, ...]:
        """The state before the first step, as the ``state`` tuple."""
        state = self.model.initial_state(batch)
        return (state,) if self.single else tuple(state)

    def forward(self, x: Tensor, state: Tuple[Tensor, ...]) -> Tuple[Tensor, Tuple[Tensor, ...]]:
        out, new = self.model.forward_with_state(self._inputs(x).unsqueeze(1), state[0] if self.single else state)
        answer = self._answer(out[:, 0] if self.task in PER_STEP_TASKS else out)
        return answer, ((new,) if self.single else tuple(new))


class AnyLengthDeployable(StepDeployable):
    """:class:`Deployable`'s ``forward(x, lengths)`` for sequences of any length: the steps run in a
    ``torch.while_loop``, which ``torch.export`` and the ONNX exporter keep as a loop (ONNX ``Loop``)
    instead of unrolling it, so an exported model's time size is free. Each sequence's state stops at
    its length; per-step answers past it are unspecified, one answer per sequence is the one at its
    last valid step. A model that reads backwards too cannot run this way (its reverse direction
    starts at the end): :class:`Deployable` exports it with a fixed time size."""

    def forward(self, x: Tensor, lengths: Tensor) -> Tensor:  # type: ignore[override]
        per_step = self.task in PER_STEP_TASKS
        first, state = super().forward(x[:, 0], self.initial_state(x.shape[0]))
        # per-step answers fill [B, T, C]; one answer per sequence is kept where the sequence ends
        answers = first.new_zeros((x.shape[0], x.shape[1], *first.shape[1:])) if per_step else first
        if per_step:
            answers = answers.index_copy(1, torch.zeros(1, dtype=torch.long, device=x.device), first.unsqueeze(1))
        lengths = lengths.to(x.device)

        def more(t: Tensor, answers: Tensor, *state: Tensor) -> Tensor:
            return t < x.shape[1]

        def step(t: Tensor, answers: Tensor, *state: Tensor):
            answer, new = StepDeployable.forward(self, x.index_select(1, t.view(1)).squeeze(1), tuple(state))
            going = t < lengths  # [B]: sequences that have this step
            new = tuple(torch.where(going.view(1, -1, *([1] * (n.dim() - 2))), n, old) for n, old in zip(new, state))
            if per_step:
                answers = answers.index_copy(1, t.view(1), answer.unsqueeze(1))
            else:
                ends = (t == lengths - 1).view(-1, *([1] * (answer.dim() - 1)))
                answers = torch.where(ends, answer, answers)
            return (t + 1, answers, *new)

        start = torch.ones((), dtype=torch.long, device=x.device)
        _, answers, *_ = torch.while_loop(more, step, (start, answers, *state))
        return answers


def loops_export(model: nn.Module) -> bool:
    """Whether :class:`AnyLengthDeployable` can export ``model``: it reads forward only, and this torch
    has ``torch.while_loop`` (public since torch 2.6, a prototype feature)."""
    return model.rnn.num_directions == 1 and callable(getattr(torch, "while_loop", None))
