"""The cell contract: what a plugin author implements to add a recurrent cell.

Everything in seqframe (the layer runner, the training app, the conformance
kit, the benchmarks) talks to cells only through this class.
"""

from __future__ import annotations

import functools
import inspect
import re
from typing import Any, ClassVar, Dict, Optional, Tuple, Union

import torch
from torch import Tensor, nn

State = Union[Tensor, Tuple[Tensor, ...]]
"""A cell's recurrent state: one tensor ``[B, S]`` or a tuple of them, e.g. ``(h, c)``."""

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
"""What a cell's ``name`` may be: what users type after ``cell=`` (lower case letters, digits, ``_``)."""

SIZE_NAMES = ("input_size", "hidden_size")


def name_problem(name: Any) -> Optional[str]:
    """Why ``name`` cannot be a cell's name (``cell=NAME``), or None: the rule for registration and the kit."""
    if not isinstance(name, str) or not name:
        return "there is no `name`: set the class attribute name = '...', what users type after cell="
    if not NAME_PATTERN.match(name):
        lower = re.sub(r"[^a-z0-9_]", "_", name.lower())
        return (
            f"the name {name!r} must be lower case letters, digits and _, starting with a letter "
            f"(users type cell=NAME): use {lower!r}"
        )
    return None


@functools.cache
def _size_parameters(init: Any) -> Tuple[str, str]:
    """The names of the two size arguments of a constructor: its first two after ``self``."""
    try:
        parameters = list(inspect.signature(init).parameters.values())[1:]
    except (TypeError, ValueError):
        return SIZE_NAMES
    named = [p.name for p in parameters[:2] if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (named[0], named[1]) if len(named) == 2 else SIZE_NAMES


def _sizes_of_call(cls: type, args: Tuple[Any, ...], kwargs: Dict[str, Any]) -> Optional[Tuple[Any, Any]]:
    """``(input_size, hidden_size)`` as a constructor call gives them (by position or keyword), else None."""
    values = list(args[:2])
    for name in _size_parameters(cls.__init__)[len(values) :]:
        if name not in kwargs:
            return None
        values.append(kwargs[name])
    return values[0], values[1]


def _binds(function: Any, *args: Any, **kwargs: Any) -> bool:
    """Whether ``function`` can be called with these arguments (by its signature)."""
    try:
        inspect.signature(function).bind(*args, **kwargs)
    except (TypeError, ValueError):
        return False
    return True


def _placed(initial_state: Any) -> Any:
    """``initial_state(batch)`` as ``initial_state(batch, device, dtype)``: its tensors moved there."""

    @functools.wraps(initial_state)
    def placed(self: Cell, batch: int, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None):
        where = {k: v for k, v in (("device", device), ("dtype", dtype)) if v is not None}
        state = initial_state(self, batch)
        if not where:
            return state
        return state.to(**where) if isinstance(state, Tensor) else tuple(t.to(**where) for t in state)

    return placed


class _Metadata:
    """A class-level default that a submodule, parameter or buffer of the same name hides on the
    instance: an author's ``self.gates = nn.Linear(...)`` must be what ``self.gates`` reads in
    ``step``, not the class's ``gates = 0`` (a plain class attribute would win over ``nn.Module``'s
    lookup of its submodules). Read metadata from the class: ``type(cell).gates``."""

    def __init__(self, default: Any) -> None:
        self.default = default

    def __set_name__(self, owner: type, name: str) -> None:
        self.attribute = name

    def __repr__(self) -> str:  # as documentation shows the class attribute: its default
        return repr(self.default)

    def __get__(self, instance: Any, owner: Optional[type] = None) -> Any:
        if instance is not None:
            for store in ("_modules", "_parameters", "_buffers"):
                found = instance.__dict__.get(store, {})
                if self.attribute in found:
                    return found[self.attribute]
        return self.default


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
        What users type: ``cell=NAME``. Lower case letters, digits and ``_``
        (``name = "JANET"`` is refused when the plugin loads), unique across
        installed plugins (two cells with one name are refused, naming both
        distributions).

    ``gates: int``, ``has_cell_state: bool`` (class attributes, optional)
        Descriptive metadata shown by ``seqframe cells`` and in reports
        (LSTM: 3 gates and a cell state; GRU: 2 gates; vanilla RNN: 0).

    ``__init__(input_size, hidden_size, **options)``
        ``input_size`` is ``I``, ``hidden_size`` is ``H``. Every keyword option
        must have a default and a type hint (``beta: float = 1.0``): options
        become config keys (``cell.OPTION=...``) with those defaults and
        types, so a default must be a plain value (bool, int, float, str,
        None, or a list/dict of them). Call ``super().__init__()`` first, as
        in any ``nn.Module``: the framework supplies the sizes, which are then
        ``self.input_size`` and ``self.hidden_size`` (readable even before
        the call). ``super().__init__(input_size, hidden_size)`` works too,
        and sizes given there win (a cell that wraps another may pass others)::

            def __init__(self, input_size: int, hidden_size: int, beta: float = 1.0) -> None:
                super().__init__()
                self.w = nn.Linear(input_size, 4 * hidden_size)
                self.u = nn.Linear(hidden_size, 4 * hidden_size, bias=False)

    ``project(x) -> p``
        ``x``: ``[B, T, I]``; returns ``p``: ``[B, T, P]`` where ``P`` is
        whatever ``step`` wants per step (for an LSTM ``4H``: all gate
        pre-activations from the input, biases included). ``project`` MAY use
        parameters and any per-element function of one time step. It MUST
        NOT mix time steps (no cumulative sums, no convolutions over ``T``)
        and must not modify ``x`` in place: the runner may reverse time,
        mask padded steps or call it on slices. Optional: without it ``p`` is
        ``x`` itself, and ``step`` gets each step's raw input (it then does the
        input's matrix product once per step, which is slower).

    ``step(p_t, state) -> (h_t, new_state)``
        ``p_t``: ``[B, P]``, one time step of ``project``'s output;
        ``state``: as returned by ``initial_state`` or a previous ``step``.
        Returns the output ``h_t``: ``[B, H]`` and the new state, with the
        same structure, shapes and dtype as ``state``. Return new tensors:
        never modify ``p_t`` or ``state`` in place (autograd needs them).
        A cell that defines ``forward(p_t, state)`` and no ``step`` has it
        taken as its ``step``.

    ``initial_state(batch, device, dtype) -> state``
        The zero state for a batch: a tensor ``[B, S]`` or a tuple of them
        (``(h, c)`` for an LSTM). It holds no parameters. Optional: the
        default is one zero ``[B, H]`` tensor, or the pair ``(h, c)`` of them
        when the class sets ``has_cell_state = True``. An ``initial_state(batch)``
        without ``device`` and ``dtype`` works too: its tensors are moved there.

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
    gates: ClassVar[int] = _Metadata(0)  # type: ignore[assignment]
    has_cell_state: ClassVar[bool] = _Metadata(False)  # type: ignore[assignment]
    fused_projection: ClassVar[bool] = _Metadata(False)  # type: ignore[assignment]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Take the ways newcomers write a cell: ``forward(x, state)`` for ``step``, and an
        ``initial_state(batch)`` without ``device``/``dtype`` (its state is then moved to them)."""
        super().__init_subclass__(**kwargs)
        inherited = cls.step is Cell.step or getattr(cls.step, "_seqframe_from_forward", False)
        if "forward" in cls.__dict__ and "step" not in cls.__dict__ and inherited:
            forward = cls.__dict__["forward"]

            @functools.wraps(forward)
            def step(self: Cell, p_t: Tensor, state: State) -> Tuple[Tensor, State]:
                return forward(self, p_t, state)

            step._seqframe_from_forward = True  # type: ignore[attr-defined]
            cls.step = step  # type: ignore[method-assign]
        own = cls.__dict__.get("initial_state")
        if callable(own) and not _binds(own, None, 1, device=None, dtype=None) and _binds(own, None, 1):
            cls.initial_state = _placed(own)

    def __new__(cls, *args: Any, **kwargs: Any) -> Cell:
        """Note the sizes of the constructor call, so that ``super().__init__()`` needs no arguments."""
        self = super().__new__(cls)
        sizes = _sizes_of_call(cls, args, kwargs)
        if sizes is not None:  # plain attributes: nn.Module allows them before its __init__
            object.__setattr__(self, "input_size", sizes[0])
            object.__setattr__(self, "hidden_size", sizes[1])
        return self

    def __init__(self, input_size: Optional[int] = None, hidden_size: Optional[int] = None) -> None:
        known = self.__dict__
        input_size = known.get("input_size") if input_size is None else input_size
        hidden_size = known.get("hidden_size") if hidden_size is None else hidden_size
        super().__init__()
        if input_size is None or hidden_size is None:
            raise TypeError(
                f"cell {self.name!r}: the sizes are unknown; build it as {type(self).__name__}(input_size, "
                "hidden_size, ...), or pass them on: super().__init__(input_size, hidden_size)"
            )
        if int(input_size) <= 0 or int(hidden_size) <= 0:
            raise ValueError(
                f"cell {self.name!r}: input_size and hidden_size must be positive integers, "
                f"got input_size={input_size}, hidden_size={hidden_size}"
            )
        self.input_size = int(input_size)
        self.hidden_size = int(hidden_size)

    def project(self, x: Tensor) -> Tensor:
        """The input itself: a cell without ``project`` reads each raw step in ``step``."""
        return x

    def step(self, p_t: Tensor, state: State) -> Tuple[Tensor, State]:
        raise NotImplementedError(f"cell {self.name!r} must implement step(p_t, state)")

    def forward(self, p_t: Tensor, state: State) -> Tuple[Tensor, State]:
        """``cell(p_t, state)`` is one ``step``, as an ``nn.Module`` call."""
        return self.step(p_t, state)

    def initial_state(
        self, batch: int, device: Optional[torch.device] = None, dtype: Optional[torch.dtype] = None
    ) -> State:
        """One zero ``[B, H]`` tensor: right for every cell whose state is just ``h``; ``(h, c)``, two of
        them, for a cell that says ``has_cell_state = True`` (an LSTM's state, as ``step`` unpacks it)."""
        zeros = torch.zeros(batch, self.hidden_size, device=device, dtype=dtype)
        return (zeros, torch.zeros_like(zeros)) if type(self).has_cell_state else zeros

    def has_scan(self) -> bool:
        """Whether this cell, with its options, runs sequences through ``scan``.

        True when the class defines ``scan``; override it to return False for
        option combinations your ``scan`` cannot handle.
        """
        return callable(getattr(type(self), "scan", None))

    def extra_repr(self) -> str:
        return f"input_size={self.input_size}, hidden_size={self.hidden_size}"
