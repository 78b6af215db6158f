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
        state = data_state or {}
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
