"""``Deployable``: a trained model as users call it, from raw inputs to answers.

It applies the training split's normalisation, runs the model and turns its
outputs into what a user wants: class probabilities (``[B, C]``, or
``[B, T, C]`` per step) or regression values. ``seqframe-predict`` runs
exactly this module and ``seqframe export`` exports exactly this module, so
predictions and exported models agree.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch
from torch import Tensor, nn

from seqframe.data.base import REGRESSION_TASKS


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
        if self.normalize:
            x = (x - self.mean) / self.std
        out = self.model(x, lengths)
        if self.task in REGRESSION_TASKS:
            return out
        if self.binary:
            p = torch.sigmoid(out)
            return torch.cat([1 - p, p], dim=-1)
        return torch.softmax(out, dim=-1)
