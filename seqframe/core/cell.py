"""The cell contract: what a plugin author implements to add a recurrent cell.

Everything in seqframe (the layer runner, the training app, the conformance
kit, the benchmarks) talks to cells only through this class.
"""

from __future__ import annotations

from typing import ClassVar, Optional, Tuple, Union

import torch
from torch import Tensor, nn

State = Union[Tensor, Tuple[Tensor, ...]]
"""A cell's recurrent state: one tensor ``[B, S]`` or a tuple of them, e.g. ``(h, c)``."""


class Cell(nn.Module):
    """Base class of every recurrent cell: one time step of a recurrence.

    A cell splits its work in two so that the framework can make it fast:

    * ``project(x)`` does everything that depends only on the input, for all
      time steps at once (usually one ``Linear``): one big matrix product
      instead of ``T`` small ones.
    * ``step(p_t, state)`` is the recurrence itself, called once per step by
      :class:`seqframe.Recurrent`, which owns the time loop, stacking,
      directions, dropout between layers and variable lengths. A cell never
      loops over time and never sees padding.

    Members (the public contract; keep to it and your cell works everywhere):

    ``name: str`` (class attribute)
        What users type: ``cell=NAME``. Lower case, unique across installed
        plugins (two cells with one name are refused, naming both
        distributions).

    ``gates: int``, ``has_cell_state: bool`` (class attributes, optional)
        Descriptive metadata shown by ``seqframe cells`` and in reports
        (LSTM: 3 gates and a cell state; GRU: 2 gates; vanilla RNN: 0).

    ``__init__(input_size, hidden_size, **options)``
        ``input_size`` is ``I``, ``hidden_size`` is ``H``. Every keyword option
        must have a default; options become config keys (``cell.OPTION=...``)
        with those defaults, so give them type hints. Call
        ``super().__init__(input_size, hidden_size)`` first.

    ``project(x) -> p``
        ``x``: ``[B, T, I]``; returns ``p``: ``[B, T, P]`` where ``P`` is
        whatever ``step`` wants per step (for an LSTM ``4H``: all gate
        pre-activations from the input, biases included). ``project`` MAY use
        parameters and any per-element function of one time step. It MUST
        NOT mix time steps (no cumulative sums, no convolutions over ``T``)
        and must not modify ``x`` in place: the runner may reverse time,
        mask padded steps or call it on slices.

    ``step(p_t, state) -> (h_t, new_state)``
        ``p_t``: ``[B, P]``, one time step of ``project``'s output;
        ``state``: as returned by ``initial_state`` or a previous ``step``.
        Returns the output ``h_t``: ``[B, H]`` and the new state, with the
        same structure, shapes and dtype as ``state``. Return new tensors:
        never modify ``p_t`` or ``state`` in place (autograd needs them).

    ``initial_state(batch, device, dtype) -> state``
        The zero state for a batch: a tensor ``[B, S]`` or a tuple of them
        (``(h, c)`` for an LSTM). It holds no parameters.

    ``scan(p, state) -> (outputs, final_state)`` (optional)
        The whole sequence at once: ``p``: ``[B, T, P]`` -> outputs
        ``[B, T, H]`` and the state after the last step. Write it when the
        sequence can be run faster than a Python loop over ``step``: a fused
        library kernel (cuDNN / oneDNN) or a parallel scan (linear
        recurrences such as minGRU). It must give the same numbers as the
        loop over ``step`` (the conformance kit checks outputs, final state
        and gradients). It always runs forwards in time; the runner handles
        the reverse direction. If it also accepts a keyword ``lengths``
        (``[B]`` int64, right-padded batches), the runner gives it variable-
        length batches; otherwise such batches take the step loop. Outputs at
        padded positions are ignored (the runner zeroes them), but the
        returned state must be each sequence's state at its own last step.
        If ``scan`` suits only some option values, override ``has_scan()``.

    ``fused_projection: bool`` (class attribute, default ``False``)
        Set it to ``True`` when ``scan`` does the input projection itself,
        as fused RNN kernels do: ``scan`` then receives the layer input ``x``
        ``[B, T, I]`` instead of ``project(x)``, which saves one pass over
        the sequence. ``project`` must still exist for the step loop.

    Dtypes: parameters follow ``.to(dtype)``; ``initial_state`` must create
    the state in the dtype and on the device it is given, and ``step`` must
    keep that dtype. float32 and float64 must both work (float64 is used for
    gradient checks).
    """

    name: ClassVar[str] = ""
    gates: ClassVar[int] = 0
    has_cell_state: ClassVar[bool] = False
    fused_projection: ClassVar[bool] = False

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if int(input_size) <= 0 or int(hidden_size) <= 0:
            raise ValueError(
                f"cell {self.name!r}: input_size and hidden_size must be positive integers, "
                f"got input_size={input_size}, hidden_size={hidden_size}"
            )
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)

    def project(self, x: Tensor) -> Tensor:
        raise NotImplementedError(f"cell {self.name!r} must implement project(x)")

    def step(self, p_t: Tensor, state: State) -> Tuple[Tensor, State]:
        raise NotImplementedError(f"cell {self.name!r} must implement step(p_t, state)")

    def initial_state(
        self, batch: int, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None
    ) -> State:
        """One zero ``[B, H]`` tensor: right for every cell whose state is just ``h``."""
        return torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)

    def has_scan(self) -> bool:
        """Whether this cell, with its options, runs sequences through ``scan``.

        True when the class defines ``scan``; override it to return False for
        option combinations your ``scan`` cannot handle.
        """
        return callable(getattr(type(self), "scan", None))

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"
