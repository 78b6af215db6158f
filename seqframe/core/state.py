"""Helpers for cell states, which are one tensor or a tuple of tensors."""

from __future__ import annotations

from typing import Callable, Sequence

from torch import Tensor

from seqframe.core.cell import State


def map_state(fn: Callable[..., Tensor], *states: State) -> State:
    """Apply ``fn`` to corresponding tensors of states that share one structure."""
    if isinstance(states[0], Tensor):
        return fn(*states)
    return tuple(fn(*parts) for parts in zip(*states))


def stack_states(states: Sequence[State]) -> State:
    """Stack per-cell states ``[B, S]`` into ``[L*D, B, S]`` (torch.nn.LSTM's layout)."""
    import torch

    if len(states) == 1:  # one layer, one direction: a view, no copy (and no autograd node to build)
        return map_state(lambda part: part.unsqueeze(0), states[0])
    return map_state(lambda *parts: torch.stack(parts), *states)


def unstack_state(state: State, index: int) -> State:
    """The state of cell ``index`` from a stacked ``[L*D, B, S]`` state."""
    return map_state(lambda t: t[index], state)
