"""``Recurrent``: runs any cell over batches of sequences.

It owns everything a cell should not have to know about: the time loop,
stacked layers, the reverse direction, dropout between layers, initial
states, and variable-length (right-padded) batches. For each layer it picks
the fastest correct path:

* ``fused``: the cell's ``scan`` on the raw layer input (a kernel
  that does the input projection itself, ``fused_projection = True``);
* ``scan``: the cell's ``scan`` on ``project(x)``;
* ``loop``: ``project(x)`` once for all steps, then a loop over ``step``;
* ``generated``: the step's forward and backward compiled into two kernels
  and the whole sequence run as one autograd node
  (:mod:`seqframe.core.generated`): what a cell without ``scan`` gets;
* ``compile``: that loop through ``torch.compile`` (opt-in: its first call
  compiles for seconds to minutes, growing with T; later runs of the same
  shapes hit inductor's on-disk cache).

Backends (``backend=``): ``auto`` takes ``fused``/``scan`` when the cell has
one, else ``generated``, built in the background while the loop runs (never a
wait the user did not ask for); ``generated`` forces the generated kernels and
waits for them on the first call; ``loop`` forces the reference loop;
``compile`` forces the compiled loop. All paths give the same numbers
(tested); :meth:`Recurrent.paths` tells which path runs, and it is logged
when the layer is built.

``time_checkpoint=K`` bounds the memory of long sequences: while autograd
records, each layer and direction runs its path on chunks of ``K`` steps,
each under :func:`torch.utils.checkpoint.checkpoint`, so the backward pass
keeps only the states at chunk boundaries (and the layer outputs) and
recomputes one chunk's activations at a time. Any path works unchanged,
fused library kernels and hand-written ones included, since each takes a
starting state; the numbers are those of the plain path.
"""

from __future__ import annotations

import functools
import inspect
import logging
import numbers
from typing import Callable, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from seqframe.core import generated
from seqframe.core.cell import Cell, State
from seqframe.core.options import check_options
from seqframe.core.state import map_state, stack_states, unstack_state
from seqframe.kernels import run_steps, step_mask

logger = logging.getLogger("seqframe")

CellFactory = Callable[[int, int], Cell]
BACKENDS = ("auto", "loop", "compile", "generated")


def _cell_factory(cell: Union[str, CellFactory], options: dict) -> CellFactory:
    """The cell looked up and its options checked once; the layers and directions are then built unchecked."""
    if isinstance(cell, str):
        from seqframe.core.registry import cell_builder

        return cell_builder(cell, options)
    if inspect.isclass(cell) and issubclass(cell, Cell):
        check_options(cell, options)
    return functools.partial(cell, **options)


def reverse_within_lengths(x: Tensor, index: Optional[Tensor]) -> Tensor:
    """Reverse time of ``x`` ``[B, T, F]``; with ``index`` from :func:`reversal_index`,
    only each sequence's valid steps are reversed and padding stays where it is."""
    if index is None:
        return x.flip(1)
    return x.gather(1, index.unsqueeze(-1).expand_as(x))


def reversal_index(lengths: Tensor, steps: int) -> Tensor:
    """``[B, T]`` time index that reverses steps ``0..len-1`` of each sequence."""
    t = torch.arange(steps, device=lengths.device)
    valid = lengths.unsqueeze(1)
    return torch.where(t < valid, valid - 1 - t, t)


def project_and_run_steps(cell: Cell, x: Tensor, state: State, keep: Optional[Tensor] = None) -> Tuple[Tensor, State]:
    """One layer and direction through the step loop: what ``backend="compile"`` compiles."""
    return run_steps(cell, cell.project(x), state, keep)


_compiled_sequence: Optional[Callable[..., Tuple[Tensor, State]]] = None


def compiled_sequence() -> Callable[..., Tuple[Tensor, State]]:
    """``project_and_run_steps`` through ``torch.compile``, built on first use."""
    global _compiled_sequence
    if _compiled_sequence is None:
        _compiled_sequence = torch.compile(project_and_run_steps, dynamic=False)
    return _compiled_sequence


def run_path(
    path: str,
    cell: Cell,
    x: Tensor,
    state: State,
    lengths: Optional[Tensor],
    keep: Optional[Tensor],
    kernels: Optional[generated.StepKernels] = None,
) -> Tuple[Tensor, State]:
    """One layer and direction over ``x`` from ``state`` on ``path`` (see the module's docstring);
    outputs at padded steps are left as the path made them. ``generated`` needs the ``kernels``."""
    if path == "loop":
        return project_and_run_steps(cell, x, state, keep)
    if path == "generated":
        assert kernels is not None
        return generated.run(cell, kernels, x, state, keep)
    if path == "compile":
        return compiled_sequence()(cell, x, state, keep)
    inp = x if path == "fused" else cell.project(x)
    return cell.scan(inp, state) if lengths is None else cell.scan(inp, state, lengths=lengths)


def _run_chunk(
    path: str,
    cell: Cell,
    x: Tensor,
    state: State,
    lengths: Optional[Tensor],
    keep: Optional[Tensor],
    kernels: Optional[generated.StepKernels] = None,
) -> Tuple[Tensor, State]:
    """:func:`run_path` on one chunk of time, where ``lengths`` (steps left in this chunk) may be 0:
    such sequences run one step (scans refuse empty ones) and get their state back unchanged.
    The final state comes back as new tensors: a view (of the spec GRU kernel's ``[K, B, H]``
    buffer, say) would keep the chunk's buffers alive until the backward pass."""
    if lengths is None:
        out, final = run_path(path, cell, x, state, None, keep, kernels)
        return out, map_state(torch.clone, final)
    out, final = run_path(path, cell, x, state, lengths.clamp(min=1), keep, kernels)
    ran = (lengths > 0).to(x.device).unsqueeze(1)
    return out, map_state(functools.partial(torch.where, ran), final, state)


def run_checkpointed(
    path: str,
    cell: Cell,
    x: Tensor,
    state: State,
    lengths: Optional[Tensor],
    keep: Optional[Tensor],
    chunk: int,
    kernels: Optional[generated.StepKernels] = None,
) -> Tuple[Tensor, State]:
    """:func:`run_path` over chunks of ``chunk`` steps, each recomputed in the backward pass
    instead of keeping its activations: memory ~``T/chunk`` states plus one chunk's activations."""
    outputs = []
    steps = x.shape[1]
    for start in range(0, steps, chunk):
        stop = min(start + chunk, steps)
        part_lengths = None if lengths is None else (lengths - start).clamp(0, stop - start)
        part_keep = None if keep is None else keep[:, start:stop]
        out, state = checkpoint(
            _run_chunk, path, cell, x[:, start:stop], state, part_lengths, part_keep, kernels, use_reentrant=False
        )
        outputs.append(out)
    return torch.cat(outputs, dim=1), state


def check_time_checkpoint(value: Optional[int]) -> Optional[int]:
    """``None`` or a positive int (steps per recomputed chunk); anything else is refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(
            f"time_checkpoint must be a positive integer (steps per recomputed chunk) or None, got {value!r}"
        )
    return int(value)


class Recurrent(nn.Module):
    """A multi-layer, optionally bidirectional recurrent network of any cell.

    Args:
        cell: a registered cell name (``"lstm"``), or a Cell class / factory
            called as ``cell(input_size, hidden_size, **cell_options)``.
        input_size, hidden_size: ``I`` and ``H``.
        num_layers: stacked layers; layer ``l > 0`` reads ``D*H`` features.
        bidirectional: add a reverse-time direction (``D = 2``) per layer.
        dropout: dropout on the outputs of every layer but the last.
        backend: ``auto`` (fastest correct path per layer without a long
            start-up), ``loop`` (the plain step loop: the reference) or
            ``compile`` (the step loop through ``torch.compile``).
        cell_options: keyword options for the cell's constructor.
        time_checkpoint: ``K`` steps per recomputed chunk, or None (keep
            everything). While autograd records, only every ``K``-th state
            and the layer outputs are kept for the backward pass, which runs
            each chunk's forward again: about ``1/K`` of the per-step
            activations for one extra forward pass. Same numbers; no effect
            under ``torch.no_grad()`` or on sequences of at most ``K`` steps.

    ``forward(x, state=None, lengths=None)`` takes ``x`` ``[B, T, I]`` (batch
    first) and returns ``(outputs [B, T, D*H], final_state)``. States use
    torch.nn.LSTM's layout: a tensor ``[L*D, B, S]`` (or a tuple of them for
    cells such as the LSTM), index ``layer * D + direction``. With ``lengths``
    (``[B]``, each in ``1..T``), padded steps change neither outputs (zeros
    there) nor states (each taken at its sequence's own last step).
    """

    def __init__(
        self,
        cell: Union[str, CellFactory],
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        backend: str = "auto",
        cell_options: Optional[dict] = None,
        time_checkpoint: Optional[int] = None,
    ) -> None:
        super().__init__()
        if int(num_layers) < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r} is not valid; choose one of {', '.join(BACKENDS)}")
        self.input_size, self.hidden_size = int(input_size), int(hidden_size)
        self.num_layers, self.num_directions = int(num_layers), 2 if bidirectional else 1
        self.backend = backend
        self.time_checkpoint = check_time_checkpoint(time_checkpoint)
        self.dropout = nn.Dropout(float(dropout)) if dropout else None
        factory = _cell_factory(cell, dict(cell_options or {}))
        self.cells = nn.ModuleList(
            factory(self.input_size if layer == 0 else self.num_directions * self.hidden_size, self.hidden_size)
            for layer in range(self.num_layers)
            for _ in range(self.num_directions)
        )
        self._scan_takes_lengths = [  # from the method itself: has_scan() may change with the device
            callable(getattr(type(c), "scan", None)) and "lengths" in inspect.signature(c.scan).parameters
            for c in self.cells
        ]
        logger.info("Recurrent(%s): paths per layer %s", self.cells[0].name, self.paths())

    @property
    def output_size(self) -> int:
        return self.num_directions * self.hidden_size

    def _path(self, index: int, has_lengths: bool) -> str:
        cell = self.cells[index]
        if self.backend == "compile":
            return "compile"
        if self.backend == "loop":
            return "loop"
        if self.backend == "generated":
            return "generated"
        if cell.has_scan() and not (has_lengths and not self._scan_takes_lengths[index]):
            return "fused" if type(cell).fused_projection else "scan"
        return "loop" if generated.mode() == "off" else "generated"

    def paths(self, with_lengths: bool = False) -> List[str]:
        """The path each layer runs (``fused``, ``scan``, ``generated``, ``loop`` or ``compile``), for
        fixed-length batches or, with ``with_lengths=True``, padded ones. A ``generated`` layer whose
        kernels are still being built, or could not be, says so: ``loop (generated: compiling)``."""
        paths = []
        for layer in range(self.num_layers):
            path = self._path(layer * self.num_directions, with_lengths)
            if path == "generated":
                status = generated.status(self.cells[layer * self.num_directions])
                path = path if status in ("generated", "not built") else f"loop (generated: {status})"
            paths.append(path)
        return paths

    def _check_input(self, x: Tensor, lengths: Optional[Tensor]) -> Optional[Tensor]:
        if x.dim() != 3 or x.shape[2] != self.input_size:
            raise ValueError(
                f"Recurrent expects input of shape [batch, time, {self.input_size}] (batch first), got {tuple(x.shape)}"
            )
        if lengths is None:
            return None
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        batch, steps = x.shape[:2]
        if lengths.shape != (batch,):
            raise ValueError(f"lengths must have shape [{batch}] (one per sequence), got {tuple(lengths.shape)}")
        if torch.compiler.is_exporting():  # a traced graph cannot branch on values; exported models document the range
            return lengths
        if bool((lengths < 1).any()) or bool((lengths > steps).any()):
            raise ValueError(f"every length must be in 1..{steps} (the padded time size), got {lengths.tolist()}")
        return lengths

    def forward(
        self, x: Tensor, state: Optional[State] = None, lengths: Optional[Tensor] = None
    ) -> Tuple[Tensor, State]:
        lengths = self._check_input(x, lengths)
        batch, steps = x.shape[:2]
        keep = index = None
        if lengths is not None:
            keep = step_mask(lengths, steps, x.device)
            index = reversal_index(lengths.to(x.device), steps) if self.num_directions == 2 else None
        finals: List[State] = []
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                i = layer * self.num_directions + direction
                cell = self.cells[i]
                start = (
                    cell.initial_state(batch, device=x.device, dtype=x.dtype)
                    if state is None
                    else unstack_state(state, i)
                )
                inp = layer_input if direction == 0 else reverse_within_lengths(layer_input, index)
                out, final = self._run(i, cell, inp, start, lengths, keep)
                outputs.append(out if direction == 0 else reverse_within_lengths(out, index))
                finals.append(final)
            layer_input = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
            if self.dropout is not None and layer < self.num_layers - 1:
                layer_input = self.dropout(layer_input)
        return layer_input, stack_states(finals)

    def _run(
        self, i: int, cell: Cell, x: Tensor, state: State, lengths: Optional[Tensor], keep: Optional[Tensor]
    ) -> Tuple[Tensor, State]:
        path = self._path(i, lengths is not None)
        kernels = None
        if path == "generated":  # resolved once per call: a checkpointed recomputation takes the same path
            kernels = generated.kernels_for(cell, x, state, keep is not None, wait=self.backend == "generated")
            path = "generated" if kernels is not None else "loop"
        chunk = self.time_checkpoint
        if chunk is None or x.shape[1] <= chunk or not torch.is_grad_enabled() or torch.compiler.is_exporting():
            out, final = run_path(path, cell, x, state, lengths, keep, kernels)
        else:
            out, final = run_checkpointed(path, cell, x, state, lengths, keep, chunk, kernels)
        if keep is not None:
            out = out.masked_fill(~keep, 0.0)
        return out, final

    def load_torch(self, module: nn.RNNBase) -> None:
        """Copy every layer and direction of a matching ``torch.nn.RNN/LSTM/GRU``."""
        for layer in range(self.num_layers):
            for direction in range(self.num_directions):
                cell = self.cells[layer * self.num_directions + direction]
                cell.load_torch(module, layer=layer, reverse=direction == 1)  # type: ignore[operator]
