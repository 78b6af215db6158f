"""The conformance checks: each one property every cell must have, and what to fix if not.

A check is a function of a :class:`CellUnderTest`; it raises
:class:`ConformanceError` with a message that names the broken rule, or
:class:`CheckSkipped` when it cannot run here (``cuda`` without a GPU).
The :func:`precheck` runs first: when a cell fails it (cannot be built, a bad
name or option, a state of the wrong structure), that one sentence is the
report and the other checks do not run, instead of a cascade of tracebacks.
Sizes are tiny so that the whole kit runs in seconds on a CPU.
"""

from __future__ import annotations

import functools
import inspect
import io
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type, Union

import torch
from torch import Tensor

from seqframe.core import generated
from seqframe.core.cell import Cell, State
from seqframe.core.options import cell_options, check_options
from seqframe.core.recurrent import Recurrent
from seqframe.core.registry import check_cell_class, get_cell, registry
from seqframe.core.state import map_state
from seqframe.errors import SeqframeError

ATOL = 1e-5
PRECHECK = "precheck"
RANDOM_NOTE = (
    "step draws random numbers in training mode (dropout?): every check ran the cell in eval mode, and in "
    "training the cell runs on the step loop (generated kernels would not reproduce torch's random stream)"
)


class ConformanceError(AssertionError):
    """A cell broke a rule of the cell contract; the message says which and what to fix."""


class CheckSkipped(Exception):
    """A check that cannot run here (no GPU) or after a failed pre-check; the message says why."""


@dataclass
class CellUnderTest:
    """A cell class with the options to build it, and helpers to build it reproducibly."""

    cls: Type[Cell]
    options: Dict[str, Any] = field(default_factory=dict)
    input_size: int = 3
    hidden_size: int = 5

    @classmethod
    def resolve(cls, cell: Union[str, Type[Cell]], options: Optional[Dict[str, Any]] = None) -> CellUnderTest:
        cell_cls = get_cell(cell) if isinstance(cell, str) else cell
        check_options(cell_cls, dict(options or {}))
        return cls(cell_cls, dict(options or {}))

    @property
    def label(self) -> str:
        return self.cls.name or self.cls.__qualname__

    def make(self, seed: int = 0, dtype: torch.dtype = torch.float32) -> Cell:
        torch.manual_seed(seed)
        cell = self.cls(self.input_size, self.hidden_size, **self.options).to(dtype)
        return cell.eval() if self.random_in_training else cell

    @functools.cached_property
    def random_in_training(self) -> bool:
        """Whether ``step`` draws random numbers in training mode (dropout inside the recurrence): then
        every check runs the cell in eval mode, where its equations must be deterministic."""
        with torch.random.fork_rng(), torch.no_grad():
            try:
                torch.manual_seed(0)
                cell = self.cls(self.input_size, self.hidden_size, **self.options)
                p_t = cell.project(self.inputs(batch=2, steps=1))[:, 0]
                state = map_state(torch.randn_like, cell.initial_state(2))
                outputs = []
                for seed in (1, 2):
                    torch.manual_seed(seed)
                    outputs.append(cell.step(p_t, state)[0])
                return not torch.equal(*outputs)
            except Exception:  # noqa: BLE001 - a broken cell: the pre-check says what is wrong with it
                return False

    def layer(self, seed: int = 0, dtype: torch.dtype = torch.float32, **kwargs: Any) -> Recurrent:
        """A one-layer ``Recurrent`` of this cell; ``backend`` defaults to the cell's own ``scan``
        path when it has one, else to the loop (the generated path has a check of its own: built in
        the background, it would make the other checks depend on when its kernels are ready)."""
        torch.manual_seed(seed)
        kwargs.setdefault("cell_options", self.options)
        kwargs.setdefault("backend", "auto" if self.make().has_scan() else "loop")
        layer = Recurrent(self.cls, self.input_size, self.hidden_size, **kwargs).to(dtype)
        return layer.eval() if self.random_in_training else layer

    def twin_layers(self, dtype: torch.dtype = torch.float32, **kwargs: Any) -> tuple:
        """The same weights behind the cell's own path (``auto``, or ``backend=``) and the reference loop."""
        fast = self.layer(dtype=dtype, **kwargs)
        loop = self.layer(dtype=dtype, **{**kwargs, "backend": "loop"})
        loop.load_state_dict(fast.state_dict())
        return fast, loop

    def inputs(self, batch: int = 3, steps: int = 6, dtype: torch.dtype = torch.float32, seed: int = 1) -> Tensor:
        return torch.randn(batch, steps, self.input_size, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _fail(cell: CellUnderTest, message: str) -> None:
    raise ConformanceError(f"cell {cell.label!r}: {message}")


def _tensors(state: State) -> List[Tensor]:
    return [state] if isinstance(state, Tensor) else list(state)


def _leaves(value: Any) -> List[Tensor]:
    """Every tensor in a (nested) tuple or list, e.g. step's ``(h, (h, c))``."""
    if isinstance(value, Tensor):
        return [value]
    return [t for item in value for t in _leaves(item)] if isinstance(value, (tuple, list)) else []


def _close(a: Tensor, b: Tensor, atol: float = ATOL) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=atol))


def _max_diff(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max()) if a.shape == b.shape else float("inf")


def _methods(module: Cell) -> str:
    """``project/step`` (``/scan`` when the cell has one): the methods a hint may name."""
    return "project/step/scan" if module.has_scan() else "project/step"


def _check_state_like(cell: CellUnderTest, what: str, state: Any, reference: State) -> None:
    """``state`` must have the structure, shapes and dtypes of ``reference``."""
    if isinstance(reference, Tensor) != isinstance(state, Tensor):
        _fail(
            cell,
            f"{what} is a {type(state).__name__}, but initial_state() returned a "
            f"{type(reference).__name__}; keep one state structure everywhere",
        )
    for got, want in zip(_tensors(state), _tensors(reference)):
        if got.shape != want.shape or got.dtype != want.dtype:
            _fail(
                cell,
                f"{what} has a tensor of shape {tuple(got.shape)} and dtype {got.dtype}, "
                f"but initial_state() gives {tuple(want.shape)} {want.dtype}; "
                f"{what.split()[-1]} must return states shaped like initial_state(batch)",
            )
    if len(_tensors(state)) != len(_tensors(reference)):
        _fail(cell, f"{what} holds {len(_tensors(state))} tensors, initial_state() {len(_tensors(reference))}")


def check_shapes_and_dtypes(cell: CellUnderTest) -> None:
    """project/step/initial_state/scan return the documented shapes, in the input's dtype."""
    for dtype in (torch.float32, torch.float64):
        module = cell.make(dtype=dtype)
        x = cell.inputs(batch=2, steps=4, dtype=dtype)
        p = module.project(x)
        if not isinstance(p, Tensor) or p.dim() != 3 or p.shape[:2] != (2, 4) or p.dtype != dtype:
            _fail(
                cell,
                f"project(x) with x [2, 4, {cell.input_size}] {dtype} must return [2, 4, P] in {dtype}, "
                f"got {getattr(p, 'shape', type(p))} {getattr(p, 'dtype', '')}",
            )
        state = module.initial_state(2, device=x.device, dtype=dtype)
        for t in _tensors(state):
            if t.shape[0] != 2 or t.dtype != dtype:
                _fail(
                    cell,
                    f"initial_state(2, device, {dtype}) gave a tensor {tuple(t.shape)} {t.dtype}; "
                    "it must be [batch, ...] in the dtype it is given",
                )
        h, new_state = module.step(p[:, 0], state)
        if h.shape != (2, cell.hidden_size) or h.dtype != dtype:
            _fail(cell, f"step() must return h_t [2, {cell.hidden_size}] in {dtype}, got {tuple(h.shape)} {h.dtype}")
        _check_state_like(cell, "the state returned by step()", new_state, state)
        if module.has_scan():
            out, final = module.scan(x if type(module).fused_projection else p, state)
            if out.shape != (2, 4, cell.hidden_size) or out.dtype != dtype:
                _fail(
                    cell,
                    f"scan() must return outputs [2, 4, {cell.hidden_size}] in {dtype}, "
                    f"got {tuple(out.shape)} {out.dtype}",
                )
            _check_state_like(cell, "the state returned by scan()", final, state)


def check_no_input_mutation(cell: CellUnderTest) -> None:
    """project/step/scan leave their arguments untouched (autograd needs them)."""
    module = cell.make()
    x = cell.inputs(batch=2, steps=4)
    state = module.initial_state(2, dtype=x.dtype)
    state = tuple(torch.randn_like(t) for t in state) if isinstance(state, tuple) else torch.randn_like(state)

    def guard(name: str, call: Callable[[], Any], *arguments: Tensor) -> Any:
        before = [(a.clone(), a._version) for a in arguments]
        result = call()
        for (copy, version), a in zip(before, arguments):
            if a._version != version or not torch.equal(copy, a):
                _fail(
                    cell,
                    f"{name} modified its input in place; compute new tensors instead "
                    "(no `+=`, `.mul_()`, slice assignment on arguments)",
                )
        return result

    p = guard("project(x)", lambda: module.project(x), x)
    p_t = p[:, 0].detach().clone()
    guard("step(p_t, state)", lambda: module.step(p_t, state), p_t, *_tensors(state))
    if module.has_scan():
        inp = (x if type(module).fused_projection else p).detach().clone()
        guard("scan(p, state)", lambda: module.scan(inp, state), inp, *_tensors(state))


def check_state_round_trip(cell: CellUnderTest) -> None:
    """Two halves with the state passed between them equal one run over the whole sequence."""
    layer = cell.layer(backend="loop")
    x = cell.inputs(steps=8)
    with torch.no_grad():
        whole, final = layer(x)
        first, middle = layer(x[:, :3])
        second, end = layer(x[:, 3:], middle)
    if not _close(torch.cat([first, second], 1), whole):
        _fail(
            cell,
            "running a sequence in two halves, passing the state between them, changes the outputs "
            f"(max diff {_max_diff(torch.cat([first, second], 1), whole):.2e}); the state must carry "
            "everything step() needs from the past",
        )
    for got, want in zip(_tensors(end), _tensors(final)):
        if not _close(got, want):
            _fail(cell, "the final state after two halves differs from one run over the whole sequence")


def _run_with_grads(layer: Recurrent, x: Tensor, lengths: Optional[Tensor] = None) -> tuple:
    x = x.clone().requires_grad_()
    out, state = layer(x, lengths=lengths)
    loss = (out * torch.linspace(-1, 1, out.shape[-1], dtype=out.dtype)).sum()
    loss = loss + sum((t * 0.5).sum() for t in _tensors(state))
    grads = torch.autograd.grad(loss, [x, *layer.parameters()], allow_unused=True)
    return out.detach(), [t.detach() for t in _tensors(state)], grads


def check_scan_matches_loop(cell: CellUnderTest) -> None:
    """``scan`` gives the outputs, final state and gradients of the loop over ``step``."""
    if not cell.make().has_scan():
        return
    fast, loop = cell.twin_layers()
    x = cell.inputs(steps=7)
    (out_a, state_a, grads_a), (out_b, state_b, grads_b) = _run_with_grads(fast, x), _run_with_grads(loop, x)
    if not _close(out_a, out_b):
        _fail(
            cell,
            f"scan() outputs differ from the loop over step() by {_max_diff(out_a, out_b):.2e}; "
            "both must compute the same equations",
        )
    for a, b in zip(state_a, state_b):
        if not _close(a, b):
            _fail(cell, f"scan()'s final state differs from the loop's by {_max_diff(a, b):.2e}")
    names = ["the input", *(n for n, _ in fast.named_parameters())]
    for name, a, b in zip(names, grads_a, grads_b):
        if (a is None) != (b is None) or (a is not None and not _close(a, b, atol=1e-4)):
            _fail(cell, f"the gradient for {name} through scan() differs from the loop's")


def _backends(cell: CellUnderTest) -> Tuple[str, ...]:
    """The paths a check compares: the cell's own ``scan`` and the loop (the generated path has
    :func:`check_generated_matches_loop`)."""
    return ("auto", "loop") if cell.make().has_scan() else ("loop",)


def _uses_generated(cell: CellUnderTest) -> bool:
    """Whether ``backend=auto`` runs this cell on generated kernels for some batches: it has no
    ``scan``, or one without ``lengths`` (then padded batches)."""
    probe = cell.layer(backend="auto")
    return "generated" in probe._path(0, False) or "generated" in probe._path(0, True)


def check_generated_matches_loop(cell: CellUnderTest) -> None:
    """The generated kernels (what ``auto`` runs for a cell without ``scan``) give the loop's outputs,
    final state and gradients: with padding, a non-zero initial state, another batch size and length;
    and pass gradcheck in float64."""
    if not _uses_generated(cell):
        raise CheckSkipped("the cell's own scan runs every batch; the generated path is not used")
    fast, loop = cell.twin_layers(backend="generated")
    cases = [(cell.inputs(batch=3, steps=7), None), (cell.inputs(batch=3, steps=5), torch.tensor([5, 2, 4])),
             (cell.inputs(batch=2, steps=9, seed=4), None)]
    for x, lengths in cases:
        start = map_state(torch.randn_like, fast.cells[0].initial_state(x.shape[0], dtype=x.dtype))
        stacked = map_state(lambda t: t.unsqueeze(0), start)
        results = []
        for layer in (fast, loop):
            inp = x.clone().requires_grad_()
            out, state = layer(inp, stacked, lengths)
            if lengths is not None:
                out = out * (torch.arange(x.shape[1]) < lengths[:, None]).unsqueeze(-1)
            loss = (out * torch.linspace(-1, 1, out.shape[-1])).sum() + sum((t * 0.5).sum() for t in _tensors(state))
            grads = torch.autograd.grad(loss, [inp, *layer.parameters()], allow_unused=True)
            results.append((out.detach(), [t.detach() for t in _tensors(state)], grads))
        status = generated.status(fast.cells[0])
        if status != "generated":
            raise CheckSkipped(f"the generated path cannot run this cell, so it runs on the step loop ({status})")
        (out_a, state_a, grads_a), (out_b, state_b, grads_b) = results
        where = f"batch {x.shape[0]}, {x.shape[1]} steps" + (", padded" if lengths is not None else "")
        if not _close(out_a, out_b):
            _fail(cell, f"the generated kernels' outputs differ from the loop's by {_max_diff(out_a, out_b):.2e} "
                        f"({where}); please report this with the cell's code")
        for a, b in zip(state_a, state_b):
            if not _close(a, b):
                _fail(cell, f"the generated kernels' final state differs from the loop's by {_max_diff(a, b):.2e} "
                            f"({where})")
        for name, a, b in zip(["the input", *(n for n, _ in fast.named_parameters())], grads_a, grads_b):
            if (a is None) != (b is None) or (a is not None and not _close(a, b, atol=1e-4)):
                _fail(cell, f"the gradient for {name} through the generated kernels differs from the loop's ({where})")
    small = CellUnderTest(cell.cls, cell.options, input_size=2, hidden_size=3)
    layer = small.layer(dtype=torch.float64, backend="generated")
    names = [n for n, _ in layer.named_parameters()]
    x = small.inputs(batch=2, steps=3, dtype=torch.float64).requires_grad_()

    def run(inp: Tensor, *ws: Tensor) -> Tensor:
        out, state = torch.func.functional_call(layer, dict(zip(names, ws)), (inp,), {"lengths": torch.tensor([3, 2])})
        return torch.cat([out.flatten(), *(t.flatten() for t in _tensors(state))])

    weights = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())
    if not torch.autograd.gradcheck(run, (x, *weights), raise_exception=False):
        _fail(cell, "gradcheck failed on the generated kernels in float64; please report this with the cell's code")


def check_gradients_reach_parameters(cell: CellUnderTest) -> None:
    """Every parameter gets a non-zero gradient (else it is unused or detached)."""
    for backend in _backends(cell):
        layer = cell.layer(backend=backend)
        _, _, grads = _run_with_grads(layer, cell.inputs(steps=5))
        for (name, _), grad in zip(layer.cells[0].named_parameters(), grads[1:]):
            if grad is None or not bool(grad.abs().sum() > 0):
                _fail(
                    cell,
                    f"parameter {name!r} gets no gradient ({backend} path): it is not used by "
                    f"{_methods(layer.cells[0])}, or it is detached; use it or remove it",
                )


def check_gradcheck(cell: CellUnderTest) -> None:
    """Analytic gradients equal numerical ones in float64 (both paths, with lengths)."""
    small = CellUnderTest(cell.cls, cell.options, input_size=2, hidden_size=3)
    for backend in _backends(cell):
        layer = small.layer(dtype=torch.float64, backend=backend)
        x = small.inputs(batch=2, steps=3, dtype=torch.float64).requires_grad_()
        lengths = torch.tensor([3, 2])
        names = [n for n, _ in layer.named_parameters()]
        weights = tuple(p.detach().clone().requires_grad_() for p in layer.parameters())

        def run(inp: Tensor, *ws: Tensor, layer=layer, names=names, lengths=lengths) -> Tensor:
            out, state = torch.func.functional_call(layer, dict(zip(names, ws)), (inp,), {"lengths": lengths})
            return torch.cat([out.flatten(), *(t.flatten() for t in _tensors(state))])

        try:
            ok = torch.autograd.gradcheck(run, (x, *weights), raise_exception=False)
        except Exception as exc:  # noqa: BLE001 - the cell's own code
            _fail(cell, f"gradcheck could not run on the {backend} path: {type(exc).__name__}: {exc}")
        if not ok:
            _fail(
                cell,
                f"gradcheck failed on the {backend} path: analytic gradients differ from numerical ones "
                "(a custom autograd.Function or a non-differentiable operation in step/scan?)",
            )


def check_lengths_masking(cell: CellUnderTest) -> None:
    """In a padded batch each sequence gets the outputs and state it gets alone (2 layers, both directions)."""
    lengths = torch.tensor([6, 2, 1, 4])
    x = cell.inputs(batch=4, steps=6)
    x[torch.arange(6) >= lengths[:, None]] = 100.0  # padding must not leak
    for backend in _backends(cell):
        layer = cell.layer(backend=backend, num_layers=2, bidirectional=True)
        if layer.cells[0].has_scan():
            hint = "a scan taking `lengths` must carry the state over padded steps"
        else:
            hint = "step must treat each batch row on its own (no statistics or mixing across the batch)"
        with torch.no_grad():
            out, state = layer(x, lengths=lengths)
            for b, n in enumerate(lengths.tolist()):
                alone, alone_state = layer(x[b : b + 1, :n])
                if not _close(out[b, :n], alone[0]) or bool(out[b, n:].abs().sum() > 0):
                    _fail(
                        cell,
                        f"with lengths, sequence {b} (length {n}) gets other outputs than alone "
                        f"({backend} path); {hint}",
                    )
                for got, want in zip(_tensors(state), _tensors(alone_state)):
                    if not _close(got[:, b], want[:, 0]):
                        _fail(
                            cell,
                            f"with lengths, sequence {b}'s final state is not the state at its own "
                            f"last step ({backend} path)",
                        )


def check_layers_and_directions(cell: CellUnderTest) -> None:
    """Stacked and bidirectional layers run and give torch.nn-style shapes."""
    layer = cell.layer(num_layers=3, bidirectional=True, dropout=0.1)
    out, state = layer(cell.inputs(batch=2, steps=4))
    if out.shape != (2, 4, 2 * cell.hidden_size):
        _fail(cell, f"3 bidirectional layers gave outputs {tuple(out.shape)}, expected (2, 4, {2 * cell.hidden_size})")
    for t in _tensors(state):
        if t.shape[:2] != (6, 2):
            _fail(cell, f"3 bidirectional layers gave a state tensor {tuple(t.shape)}, expected [6, 2, ...]")


def check_dtype_moves(cell: CellUnderTest) -> None:
    """``.double()`` moves everything and keeps the results."""
    layer = cell.layer()
    x = cell.inputs()
    with torch.no_grad():
        reference = layer(x)[0]
        doubled = layer.double()(x.double())[0]
    if doubled.dtype != torch.float64 or not _close(doubled.float(), reference, atol=1e-4):
        _fail(
            cell,
            "after .double() the outputs are not float64 or differ; create states and constants with "
            "the dtype/device given to initial_state, and register constant tensors as buffers",
        )


HOST_CONSTANT = (
    "creates a tensor on the CPU while its inputs are on another device: it ran with every parameter and "
    "input on the meta device, as on a GPU, and a tensor made inside it without device= "
    "(torch.tensor([...]), torch.ones(...)) stays on the CPU; make it a buffer in __init__ "
    "(self.register_buffer('beta', torch.tensor([beta]))) or create it with device=p_t.device, dtype=p_t.dtype"
)
TENSOR_TO_PYTHON = (
    "turns a tensor's value into a Python value (an `if` or `while` on a tensor, .item(), float(), bool()): "
    "that waits for the device at every step and cannot be compiled or exported; compute both branches "
    "and choose with torch.where(condition, a, b)"
)
DATA_DEPENDENT_SHAPE = (
    "uses an operation whose output shape depends on tensor values (nonzero, boolean indexing, unique): "
    "it cannot be compiled or exported; keep shapes fixed (torch.where, masks multiplied in)"
)


def _meta_problem(exc: BaseException) -> str:
    """What a failure on the meta device means for a cell on a real accelerator."""
    text = str(exc)
    if "cannot be called on meta tensors" in text:
        return TENSOR_TO_PYTHON
    if "expected device" in text or "same device" in text:
        return HOST_CONSTANT
    if "data-dependent" in text or "data-independent" in text:
        return DATA_DEPENDENT_SHAPE
    return f"failed on the meta device ({type(exc).__name__}: {' '.join(text.split())[:300]})"


def _on_meta(cell: CellUnderTest, what: str, call: Callable[[], Any]) -> Any:
    try:
        result = call()
    except Exception as exc:  # noqa: BLE001 - the cell's own code, on a device without data
        _fail(cell, f"{what} {_meta_problem(exc)}")
    if any(t.device.type != "meta" for t in _leaves(result)):
        _fail(cell, f"{what} {HOST_CONSTANT}")
    return result


def check_meta_device(cell: CellUnderTest) -> None:
    """Device independence without a GPU: ``project``, ``initial_state`` and ``step`` run on the meta
    device (shapes only, no data), which catches CPU constants made inside them and Python control
    flow on tensor values, the two faults a CPU-only run of the other checks cannot see."""
    module = cell.make().to("meta")
    x = cell.inputs(batch=2, steps=3).to("meta")
    p = _on_meta(cell, "project(x)", lambda: module.project(x))
    state = _on_meta(cell, "initial_state(batch, device, dtype)", lambda: module.initial_state(2, x.device, x.dtype))
    h, new_state = _on_meta(cell, "step(p_t, state)", lambda: module.step(p[:, 0], state))
    _on_meta(cell, "step(p_t, state) with a state from step", lambda: module.step(p[:, 1], new_state))


def check_cuda(cell: CellUnderTest) -> None:
    """``.cuda()`` moves everything and keeps the results (skipped without a GPU)."""
    if not torch.cuda.is_available():
        raise CheckSkipped("no CUDA GPU here: .cuda() was not run (the meta_device check still ran)")
    layer = cell.layer()
    x = cell.inputs()
    with torch.no_grad():
        reference = layer(x)[0]
        moved = layer.cuda()(x.cuda())[0]
    if moved.device.type != "cuda" or not _close(moved.cpu(), reference, atol=1e-4):
        _fail(cell, "after .cuda() the outputs are not on the GPU or differ from the CPU's")


def check_deterministic(cell: CellUnderTest) -> None:
    """The same seed gives the same parameters, and the same input the same outputs."""
    a, b = cell.layer(seed=3), cell.layer(seed=3)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        if not torch.equal(pa, pb):
            _fail(
                cell,
                f"two cells built under the same seed differ in {name!r}; draw initial values from torch's "
                "global generator (torch.nn.init), not from another source of randomness",
            )
    a.eval()
    x = cell.inputs()
    with torch.no_grad():
        if not torch.equal(a(x)[0], a(x)[0]):
            _fail(cell, "the same input gives different outputs in eval mode")


def check_state_dict_round_trip(cell: CellUnderTest) -> None:
    """Weights saved and loaded (weights-only) into a fresh cell reproduce its outputs."""
    source, target = cell.layer(seed=0), cell.layer(seed=1)
    buffer = io.BytesIO()
    torch.save(source.state_dict(), buffer)
    buffer.seek(0)
    try:
        target.load_state_dict(torch.load(buffer, weights_only=True))
    except Exception as exc:  # noqa: BLE001
        _fail(cell, f"state_dict() did not load back into a fresh cell: {exc}")
    x = cell.inputs()
    with torch.no_grad():
        if not torch.equal(source(x)[0], target(x)[0]):
            _fail(
                cell,
                "a fresh cell loaded with another's state_dict computes something else; keep all weights in "
                "parameters or persistent buffers",
            )


def check_learns(cell: CellUnderTest) -> None:
    """A short training run on a tiny task (sum of the inputs) lowers the loss."""
    layer = cell.layer(seed=0)
    torch.manual_seed(0)
    head = torch.nn.Linear(cell.hidden_size, 1)
    x = cell.inputs(batch=32, steps=5, seed=2)
    y = x.sum(dim=(1, 2)).unsqueeze(1) / 4
    optimizer = torch.optim.Adam([*layer.parameters(), *head.parameters()], lr=0.02)
    losses = []
    for _ in range(60):
        optimizer.zero_grad()
        out, _ = layer(x)
        loss = torch.nn.functional.mse_loss(head(out[:, -1]), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    if not losses[-1] < 0.7 * losses[0]:
        _fail(
            cell,
            f"60 Adam steps on a tiny regression did not lower the loss enough ({losses[0]:.4f} -> "
            f"{losses[-1]:.4f}); check the gradient flow through step()",
        )


def _unique_name_problem(cls: Type[Cell]) -> Optional[str]:
    """Another installed cell with this class's name, if any."""
    found = registry()
    if cls.name in found.conflicts:
        return f"the name {cls.name!r} is claimed by more than one installed plugin; choose a name no other cell has"
    other = found.cells.get(cls.name)
    if other is not None and other.cls is not cls:
        return (
            f"the name {cls.name!r} is already the cell {other.cls.__module__}.{other.cls.__qualname__} "
            f"of {other.distribution}; choose a name no other cell has"
        )
    return None


def _construction_problem(cell: CellUnderTest, exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if "before Module.__init__() call" in text:
        return "__init__ must call super().__init__() before it assigns parameters or layers"
    call = ", ".join([str(cell.input_size), str(cell.hidden_size), *(f"{k}={v!r}" for k, v in cell.options.items())])
    return f"{cell.cls.__name__}({call}) raised {type(exc).__name__}: {text}"


def _call(cell: CellUnderTest, what: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the cell's own code
        _fail(cell, f"{what} raised {type(exc).__name__}: {' '.join(str(exc).split())}")


def precheck(cell: CellUnderTest) -> None:
    """The basics every other check builds on, each with one sentence: a valid, unique name; options that
    have defaults and type hints; the cell builds with the sizes; ``initial_state``, ``project`` and one
    ``step`` give the documented structure, shapes and dtype."""
    problem = check_cell_class(cell.cls) or _unique_name_problem(cell.cls)
    if problem:
        _fail(cell, problem)
    for key, parameter in cell_options(cell.cls).items():
        if parameter.annotation is inspect.Parameter.empty:
            _fail(
                cell,
                f"option {key!r} has no type hint; write it as {key}: {type(parameter.default).__name__} = "
                f"{parameter.default!r} so that cell.{key}=... is type-checked",
            )
    try:
        module = cell.make()
    except Exception as exc:  # noqa: BLE001 - the cell's own constructor
        _fail(cell, _construction_problem(cell, exc))
    if (module.input_size, module.hidden_size) != (cell.input_size, cell.hidden_size):
        _fail(
            cell,
            f"built with sizes ({cell.input_size}, {cell.hidden_size}) it has input_size={module.input_size}, "
            f"hidden_size={module.hidden_size}; do not change them in __init__",
        )
    state = _call(
        cell, "initial_state(2, device, dtype)", lambda: module.initial_state(2, torch.device("cpu"), torch.float32)
    )
    parts = (state,) if isinstance(state, Tensor) else state
    if not isinstance(parts, tuple) or not parts or not all(isinstance(t, Tensor) for t in parts):
        _fail(
            cell,
            f"initial_state() returned a {type(state).__name__}; return a tensor [batch, S] or a tuple of them "
            "(not a list), e.g. (h, c)",
        )
    for t in parts:
        if t.dim() < 2 or t.shape[0] != 2 or t.dtype != torch.float32:
            _fail(
                cell,
                f"initial_state(2, device, torch.float32) gave a tensor {tuple(t.shape)} {t.dtype}; each must be "
                "[batch, ...] in the dtype and on the device it is given",
            )
    x = cell.inputs(batch=2, steps=3)
    p = _call(cell, "project(x)", lambda: module.project(x))
    if not isinstance(p, Tensor) or p.dim() != 3 or p.shape[:2] != (2, 3):
        _fail(cell, f"project(x) with x [2, 3, {cell.input_size}] must return [2, 3, P], got {getattr(p, 'shape', p)}")
    result = _call(cell, "step(p_t, state)", lambda: module.step(p[:, 0], state))
    if not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[0], Tensor):
        _fail(cell, f"step(p_t, state) must return a pair (h_t, new_state), got {type(result).__name__}")
    if result[0].shape != (2, cell.hidden_size):
        _fail(
            cell, f"step() must return h_t [2, {cell.hidden_size}] (batch, hidden_size), got {tuple(result[0].shape)}"
        )
    _check_state_like(cell, "the state returned by step()", result[1], state)


CHECKS: Dict[str, Callable[[CellUnderTest], None]] = {
    PRECHECK: precheck,
    "shapes_and_dtypes": check_shapes_and_dtypes,
    "no_input_mutation": check_no_input_mutation,
    "state_round_trip": check_state_round_trip,
    "scan_matches_loop": check_scan_matches_loop,
    "generated_matches_loop": check_generated_matches_loop,
    "gradients_reach_parameters": check_gradients_reach_parameters,
    "gradcheck": check_gradcheck,
    "lengths_masking": check_lengths_masking,
    "layers_and_directions": check_layers_and_directions,
    "dtype_moves": check_dtype_moves,
    "meta_device": check_meta_device,
    "cuda": check_cuda,
    "deterministic": check_deterministic,
    "state_dict_round_trip": check_state_dict_round_trip,
    "learns": check_learns,
}


def run_check(cell: Union[str, Type[Cell]], check: str, options: Optional[Dict[str, Any]] = None) -> None:
    """Run one named check (what the pytest fixture does per test), after the pre-check.

    Raises :class:`ConformanceError` when the check fails, and :class:`CheckSkipped` when it cannot
    run: here (``cuda`` without a GPU), or because the pre-check failed (its sentence is the reason).
    For ``precheck`` itself a cell that cannot be found, or options it refuses, fail the pre-check.
    """
    try:
        subject = CellUnderTest.resolve(cell, options)
        precheck(subject)
    except (ConformanceError, SeqframeError) as exc:
        if check == PRECHECK:
            raise ConformanceError(str(exc)) from None
        raise CheckSkipped(f"the pre-check failed: {exc}") from None
    if check != PRECHECK:
        CHECKS[check](subject)


def check_cell(
    cell: Union[str, Type[Cell]],
    options: Optional[Dict[str, Any]] = None,
    checks: Optional[Sequence[str]] = None,
) -> List[str]:
    """Run the conformance checks on a cell (a registered name or a class); returns the skipped ones.

    The pre-check runs first; if it fails, its one sentence is the report and nothing else runs.
    Then every check runs; if any fail, one :class:`ConformanceError` lists each failure with what
    to fix. ``checks`` limits the run to some of :data:`CHECKS`; ``options`` are the cell's
    constructor options (``check_cell("mycell", {"beta": 2.0})``). The result lists the checks that
    could not run here, with why (``cuda`` without a GPU).
    """
    subject = CellUnderTest.resolve(cell, options)
    unknown = sorted(set(checks or ()) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; the checks are: {', '.join(CHECKS)}")
    try:
        precheck(subject)
    except ConformanceError as exc:
        raise ConformanceError(f"the pre-check failed, so no other check ran:\n[{PRECHECK}] {exc}") from None
    failures, skipped = [], []
    if subject.random_in_training:
        skipped.append(f"[train_mode] {RANDOM_NOTE}")
    for name in [c for c in checks or CHECKS if c != PRECHECK]:
        try:
            CHECKS[name](subject)
        except CheckSkipped as exc:
            skipped.append(f"[{name}] {exc}")
        except ConformanceError as exc:
            failures.append(f"[{name}] {exc}")
        except Exception as exc:  # noqa: BLE001 - a crash inside the cell is a failure too
            failures.append(f"[{name}] cell {subject.label!r} raised {type(exc).__name__}: {exc}")
    if failures:
        raise ConformanceError(f"{len(failures)} conformance check(s) failed:\n" + "\n".join(failures))
    return skipped
