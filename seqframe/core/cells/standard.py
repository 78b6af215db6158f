"""What the three classic cells share: gate-stacked weights, initialisation,
the input projection, and the call into torch's fused RNN kernels.

Weight layout (one convention for rnn, lstm and gru, the one torch's fused
kernels read, so they run on the cell's own parameters with no copies):

* ``weight_ih``: ``[G*H, I]``, the input kernels of the ``G`` gate blocks
  stacked by rows; ``weight_hh``: ``[G*H, H]``, the recurrent kernels, same
  order; ``bias``: ``[G*H]``, one bias per gate (the spec's ``b_*``).
* Block ``k`` is rows ``k*H:(k+1)*H``; each cell's module says which gate
  each block is.

Keras stores the transposes (``kernel``: ``[I, G*H]``,
``recurrent_kernel``: ``[H, G*H]``), column blocks in its own gate order.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from seqframe.core.cell import Cell

INITS = ("keras", "torch")


def check_choice(cell: str, option: str, value: object, choices: Sequence[object]) -> None:
    """Refuse an option value outside its choices, naming the valid ones."""
    if value not in choices:
        valid = ", ".join(repr(c) for c in choices)
        raise ValueError(f"cell {cell!r}: {option}={value!r} is not valid; choose one of {valid}")


class StandardCell(Cell):
    """A cell with ``G`` gate blocks: ``project(x) = x @ weight_ih.T + bias``.

    Initialisation (``init`` option):

    * ``keras`` (default, as the spec's Keras example): glorot-uniform
      ``weight_ih``, orthogonal ``weight_hh``, zero biases.
    * ``torch``: every parameter uniform in ``[-1/sqrt(H), 1/sqrt(H)]``, as
      ``torch.nn.RNN/LSTM/GRU`` do.
    """

    num_blocks: int = 1

    def __init__(self, input_size: int, hidden_size: int, init: str = "keras") -> None:
        super().__init__(input_size, hidden_size)
        check_choice(self.name, "init", init, INITS)
        self.init = init
        rows = self.num_blocks * self.hidden_size
        self.weight_ih = nn.Parameter(torch.empty(rows, self.input_size))
        self.weight_hh = nn.Parameter(torch.empty(rows, self.hidden_size))
        self.bias = nn.Parameter(torch.empty(rows))
        # The fused kernels add a second, recurrent bias; the spec has one, so
        # they get this constant zero vector (a buffer: it follows .to()).
        self.register_buffer("zero_bias", torch.zeros(rows), persistent=False)

    def reset_parameters(self) -> None:
        """Initialise all parameters according to ``self.init``."""
        if self.init == "keras":
            nn.init.xavier_uniform_(self.weight_ih)
            nn.init.orthogonal_(self.weight_hh)
            for name, param in self.named_parameters():
                if name.startswith("bias"):
                    nn.init.zeros_(param)
        else:
            bound = 1.0 / math.sqrt(self.hidden_size)
            for param in self.parameters():
                nn.init.uniform_(param, -bound, bound)

    def project(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight_ih, self.bias)

    def fused_weights(self) -> List[Tensor]:
        """The weight list torch's fused kernels take: ``[w_ih, w_hh, b_ih, b_hh]``."""
        return [self.weight_ih, self.weight_hh, self.bias, self.zero_bias]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, init={self.init!r}"

    # -- weight import ---------------------------------------------------
    def load_blocks(self, weight_ih: Tensor, weight_hh: Tensor, bias: Tensor, order: Sequence[int]) -> None:
        """Copy gate-stacked weights whose block ``k`` is this cell's block ``order[k]``."""
        for target, source in ((self.weight_ih, weight_ih), (self.weight_hh, weight_hh), (self.bias, bias)):
            copy_blocks(self.name, target, source, order, self.hidden_size)

    def load_keras(self, kernel, recurrent_kernel, bias) -> None:
        """Load a Keras layer's ``get_weights()`` arrays (``[I, G*H]``, ``[H, G*H]``, ``[G*H]``)."""
        kernel, recurrent_kernel, bias = (torch.as_tensor(a) for a in (kernel, recurrent_kernel, bias))
        self.load_blocks(kernel.T, recurrent_kernel.T, bias, self.keras_order())

    def keras_order(self) -> Sequence[int]:
        """This cell's block index for each of Keras's gate blocks, in Keras's order."""
        return range(self.num_blocks)

    def load_torch(self, module: nn.RNNBase, layer: int = 0, reverse: bool = False) -> None:
        """Load one layer/direction of a ``torch.nn.RNN/LSTM/GRU`` (its two biases summed)."""
        suffix = f"_l{layer}" + ("_reverse" if reverse else "")
        w_ih = getattr(module, "weight_ih" + suffix)
        w_hh = getattr(module, "weight_hh" + suffix)
        if module.bias:
            bias = getattr(module, "bias_ih" + suffix) + getattr(module, "bias_hh" + suffix)
        else:
            bias = torch.zeros(w_ih.shape[0], dtype=w_ih.dtype)
        self.load_blocks(w_ih.detach(), w_hh.detach(), bias.detach(), range(self.num_blocks))


@torch.no_grad()
def copy_blocks(cell: str, target: Tensor, source, order: Sequence[int], block_rows: int) -> None:
    """Copy ``source``'s row block ``k`` into ``target``'s row block ``order[k]``."""
    source = torch.as_tensor(source, dtype=target.dtype)
    if source.shape != target.shape:
        raise ValueError(
            f"cell {cell!r}: expected weights of shape {tuple(target.shape)} "
            f"(gate blocks stacked by rows), got {tuple(source.shape)}"
        )
    for k, block in enumerate(order):
        target[block * block_rows : (block + 1) * block_rows] = source[k * block_rows : (k + 1) * block_rows]


FusedKernel = Callable[..., Tuple[Tensor, ...]]


def run_fused(
    kernel: FusedKernel,
    x: Tensor,
    hx: Tuple[Tensor, ...],
    weights: List[Tensor],
    training: bool,
    lengths: Optional[Tensor] = None,
) -> Tuple[Tensor, Tuple[Tensor, ...]]:
    """Run one layer, one direction, of a fused torch RNN kernel over ``x`` ``[B, T, I]``.

    ``kernel`` is ``torch.lstm``, ``torch.gru``, ``torch.rnn_tanh`` or
    ``torch.rnn_relu``; ``hx`` holds the state tensors ``[B, H]``. Returns the
    outputs ``[B, T, H]`` and the final state tensors ``[B, H]``. Variable
    lengths go through a packed sequence, so each final state is taken at
    that sequence's own last step.
    """
    hx = tuple(h.unsqueeze(0) for h in hx)
    state_arg = hx if len(hx) > 1 else hx[0]
    if lengths is None:
        out, *final = kernel(x, state_arg, weights, True, 1, 0.0, training, False, True)
        return out, tuple(h.squeeze(0) for h in final)
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    order, restore = packed.sorted_indices, packed.unsorted_indices
    sorted_hx = tuple(h.index_select(1, order) for h in hx)
    state_arg = sorted_hx if len(hx) > 1 else sorted_hx[0]
    data, *final = kernel(packed.data, packed.batch_sizes, state_arg, weights, True, 1, 0.0, training, False)
    out, _ = pad_packed_sequence(
        PackedSequence(data, packed.batch_sizes, order, restore), batch_first=True, total_length=x.shape[1]
    )
    return out, tuple(h.index_select(1, restore).squeeze(0) for h in final)
