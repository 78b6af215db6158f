"""``gru``: the spec's GRU (reset-before), or the cuDNN / torch.nn.GRU form.

Default (``reset_after=False``), the spec's equations exactly:

    z = sigmoid(W_z x + U_z h + b_z)      r = sigmoid(W_r x + U_r h + b_r)
    h~ = tanh(W_h x + U_h (r * h) + b_h)  h' = (1 - z) * h + z * h~

``reset_after=True``: the form of torch.nn.GRU, cuDNN and Keras's default,
which applies ``r`` after the recurrent product and has a second bias; its
update gate is the spec's ``1 - z`` (Keras's and torch's convention):

    z = sigmoid(W_z x + b_z + U_z h + c_z)   r = sigmoid(W_r x + b_r + U_r h + c_r)
    n = tanh(W_h x + b_h + r * (U_h h + c_h))  h' = z * h + (1 - z) * n

Weight layout (see :mod:`seqframe.core.cells.standard`): three blocks in
torch's order ``r, z, h~`` (Keras stores ``z, r, h``): ``weight_ih [3H, I]``,
``weight_hh [3H, H]``, ``bias [3H]`` (the ``b_*``), and with
``reset_after`` also ``bias_hh [3H]`` (the ``c_*``). 3(IH + HH + H)
parameters, 1200 at I=8, H=16; 1248 with ``reset_after`` (as Keras).

State: ``h`` ``[B, H]``. Fast paths: torch's fused GRU kernel for the
``reset_after`` form; for the spec's form, which no library kernel computes,
seqframe's own whole-sequence kernel (:mod:`seqframe.core.cells.gru_kernel`).
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from seqframe.core.cells.gru_kernel import spec_gru_sequence
from seqframe.core.cells.standard import StandardCell, copy_blocks, run_fused
from seqframe.hookspecs import hookimpl

KERAS_ORDER = (1, 0, 2)  # Keras's z, r, h blocks are our blocks 1, 0, 2


class GRU(StandardCell):
    """The spec's reset-before GRU; ``reset_after=True`` gives torch.nn.GRU's form."""

    name = "gru"
    gates = 2
    has_cell_state = False
    num_blocks = 3

    def __init__(self, input_size: int, hidden_size: int, reset_after: bool = False, init: str = "keras") -> None:
        super().__init__(input_size, hidden_size, init=init)
        self.reset_after = bool(reset_after)
        if self.reset_after:
            self.bias_hh = nn.Parameter(torch.empty(3 * self.hidden_size))
        self.reset_parameters()

    fused_projection = True  # both forms project the input inside scan (see there)

    def step(self, p_t: Tensor, state: Tensor) -> Tuple[Tensor, Tensor]:
        h = state
        hs = self.hidden_size
        if self.reset_after:
            gh = torch.addmm(self.bias_hh, h, self.weight_hh.t())
            rz = torch.sigmoid(p_t[:, : 2 * hs] + gh[:, : 2 * hs])
            r, z = rz[:, :hs], rz[:, hs:]
            n = torch.tanh(p_t[:, 2 * hs :] + r * gh[:, 2 * hs :])
            h = n + z * (h - n)
        else:
            rz = torch.sigmoid(torch.addmm(p_t[:, : 2 * hs], h, self.weight_hh[: 2 * hs].t()))
            r, z = rz[:, :hs], rz[:, hs:]
            candidate = torch.tanh(torch.addmm(p_t[:, 2 * hs :], r * h, self.weight_hh[2 * hs :].t()))
            h = h + z * (candidate - h)
        return h, h

    def scan(self, x: Tensor, state: Tensor, lengths: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Reset-after: torch's fused kernel on the raw input ``x``. Spec form: the
        hand-written sequence kernel of :mod:`seqframe.core.cells.gru_kernel`, which projects
        ``x`` time-major itself."""
        if not self.reset_after:
            return spec_gru_sequence(x, state, self.weight_ih, self.bias, self.weight_hh, lengths)
        weights = [self.weight_ih, self.weight_hh, self.bias, self.bias_hh]
        out, (h,) = run_fused(torch.gru, x, (state,), weights, self.training, lengths)
        return out, h

    def load_keras(self, kernel, recurrent_kernel, bias) -> None:
        """Load a Keras GRU's ``get_weights()``; its ``reset_after`` must match this cell's.

        Keras's ``reset_after=False`` GRU uses ``z`` where the spec uses
        ``1 - z``; since ``1 - sigmoid(a) = sigmoid(-a)`` its z block is negated.
        """
        kernel, recurrent_kernel, bias = (torch.as_tensor(a) for a in (kernel, recurrent_kernel, bias))
        stacked_bias = bias.ndim == 2
        if stacked_bias != self.reset_after:
            raise ValueError(
                f"Keras GRU weights with bias shape {tuple(bias.shape)} come from a layer with "
                f"reset_after={stacked_bias}; create this cell with cell.reset_after={stacked_bias}"
            )
        w_ih, w_hh = kernel.T.clone(), recurrent_kernel.T.clone()
        input_bias = bias[0] if self.reset_after else bias.clone()
        if not self.reset_after:
            hs = self.hidden_size
            for tensor in (w_ih, w_hh, input_bias):
                tensor[:hs] = -tensor[:hs]
        self.load_blocks(w_ih, w_hh, input_bias, KERAS_ORDER)
        if self.reset_after:
            copy_blocks(self.name, self.bias_hh, bias[1], KERAS_ORDER, self.hidden_size)

    def load_torch(self, module: nn.RNNBase, layer: int = 0, reverse: bool = False) -> None:
        """Load one layer/direction of a ``torch.nn.GRU`` (``reset_after=True`` only)."""
        if not self.reset_after:
            raise ValueError(
                "torch.nn.GRU computes the reset-after form, not the spec's; "
                "create this cell with cell.reset_after=true to load its weights"
            )
        suffix = f"_l{layer}" + ("_reverse" if reverse else "")
        order = range(3)
        self.load_blocks(
            getattr(module, "weight_ih" + suffix),
            getattr(module, "weight_hh" + suffix),
            getattr(module, "bias_ih" + suffix),
            order,
        )
        copy_blocks(self.name, self.bias_hh, getattr(module, "bias_hh" + suffix), order, self.hidden_size)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reset_after={self.reset_after}"


@hookimpl
def seqframe_cells():
    return [GRU]
