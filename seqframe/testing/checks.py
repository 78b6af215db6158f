"""The conformance checks: each one property every cell must have, and what to fix if not.

A check is a function of a :class:`CellUnderTest`; it raises
:class:`ConformanceError` with a message that names the broken rule.
Sizes are tiny so that the whole kit runs in seconds on a CPU.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Type, Union

import torch
from torch import Tensor

from seqframe.core.cell import Cell, State
from seqframe.core.options import check_options
from seqframe.core.recurrent import Recurrent
from seqframe.core.registry import get_cell

ATOL = 1e-5


class ConformanceError(AssertionError):
    """A cell broke a rule of the cell contract; the message says which and what to fix."""


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
        return self.cls(self.input_size, self.hidden_size, **self.options).to(dtype)

    def layer(self, seed: int = 0, dtype: torch.dtype = torch.float32, **kwargs: Any) -> Recurrent:
        torch.manual_seed(seed)
        kwargs.setdefault("cell_options", self.options)
        return Recurrent(self.cls, self.input_size, self.hidden_size, **kwargs).to(dtype)

    def twin_layers(self, dtype: torch.dtype = torch.float32, **kwargs: Any) -> tuple:
        """The same weights behind the cell's own path (``auto``) and the reference loop."""
        fast = self.layer(dtype=dtype, **kwargs)
        loop = self.layer(dtype=dtype, backend="loop", **kwargs)
        loop.load_state_dict(fast.state_dict())
        return fast, loop

    def inputs(self, batch: int = 3, steps: int = 6, dtype: torch.dtype = torch.float32, seed: int = 1) -> Tensor:
        return torch.randn(batch, steps, self.input_size, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _fail(cell: CellUnderTest, message: str) -> None:
    raise ConformanceError(f"cell {cell.label!r}: {message}")


def _tensors(state: State) -> List[Tensor]:
    return [state] if isinstance(state, Tensor) else list(state)


def _close(a: Tensor, b: Tensor, atol: float = ATOL) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=atol))


def _max_diff(a: Tensor, b: Tensor) -> float:
    return float((a - b).abs().max()) if a.shape == b.shape else float("inf")


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
                "step/scan must return states shaped like initial_state(batch)",
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
            out, final = module.scan(x if module.fused_projection else p, state)
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
        inp = (x if module.fused_projection else p).detach().clone()
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


def check_gradients_reach_parameters(cell: CellUnderTest) -> None:
    """Every parameter gets a non-zero gradient (else it is unused or detached)."""
    for backend in ("auto", "loop"):
        layer = cell.layer(backend=backend)
        _, _, grads = _run_with_grads(layer, cell.inputs(steps=5))
        for (name, _), grad in zip(layer.cells[0].named_parameters(), grads[1:]):
            if grad is None or not bool(grad.abs().sum() > 0):
                _fail(
                    cell,
                    f"parameter {name!r} gets no gradient ({backend} path): it is not used by "
                    "project/step/scan, or it is detached; use it or remove it",
                )


def check_gradcheck(cell: CellUnderTest) -> None:
    """Analytic gradients equal numerical ones in float64 (both paths, with lengths)."""
    small = CellUnderTest(cell.cls, cell.options, input_size=2, hidden_size=3)
    for backend in ("auto", "loop"):
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
    for backend in ("auto", "loop"):
        layer = cell.layer(backend=backend, num_layers=2, bidirectional=True)
        with torch.no_grad():
            out, state = layer(x, lengths=lengths)
            for b, n in enumerate(lengths.tolist()):
                alone, alone_state = layer(x[b : b + 1, :n])
                if not _close(out[b, :n], alone[0]) or bool(out[b, n:].abs().sum() > 0):
                    _fail(
                        cell,
                        f"with lengths, sequence {b} (length {n}) gets other outputs than alone "
                        f"({backend} path); a scan taking `lengths` must carry the state over padded steps",
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


def check_dtype_and_device_moves(cell: CellUnderTest) -> None:
    """``.double()`` (and ``.cuda()`` when a GPU exists) move everything, results unchanged."""
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
        if torch.cuda.is_available():
            moved = layer.float().cuda()(x.cuda())[0]
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


CHECKS: Dict[str, Callable[[CellUnderTest], None]] = {
    "shapes_and_dtypes": check_shapes_and_dtypes,
    "no_input_mutation": check_no_input_mutation,
    "state_round_trip": check_state_round_trip,
    "scan_matches_loop": check_scan_matches_loop,
    "gradients_reach_parameters": check_gradients_reach_parameters,
    "gradcheck": check_gradcheck,
    "lengths_masking": check_lengths_masking,
    "layers_and_directions": check_layers_and_directions,
    "dtype_and_device_moves": check_dtype_and_device_moves,
    "deterministic": check_deterministic,
    "state_dict_round_trip": check_state_dict_round_trip,
    "learns": check_learns,
}


def run_check(cell: Union[str, Type[Cell]], check: str, options: Optional[Dict[str, Any]] = None) -> None:
    """Run one named check (what the pytest fixture does per test)."""
    CHECKS[check](CellUnderTest.resolve(cell, options))


def check_cell(
    cell: Union[str, Type[Cell]],
    options: Optional[Dict[str, Any]] = None,
    checks: Optional[Sequence[str]] = None,
) -> None:
    """Run the conformance checks on a cell (a registered name or a class).

    Every check runs; if any fail, one :class:`ConformanceError` lists each
    failure with what to fix. ``checks`` limits the run to some of
    :data:`CHECKS`; ``options`` are the cell's constructor options.
    """
    subject = CellUnderTest.resolve(cell, options)
    unknown = sorted(set(checks or ()) - set(CHECKS))
    if unknown:
        raise ValueError(f"unknown checks {unknown}; the checks are: {', '.join(CHECKS)}")
    failures = []
    for name in checks or CHECKS:
        try:
            CHECKS[name](subject)
        except ConformanceError as exc:
            failures.append(f"[{name}] {exc}")
        except Exception as exc:  # noqa: BLE001 - a crash inside the cell is a failure too
            failures.append(f"[{name}] cell {subject.label!r} raised {type(exc).__name__}: {exc}")
    if failures:
        raise ConformanceError(f"{len(failures)} conformance check(s) failed:\n" + "\n".join(failures))
