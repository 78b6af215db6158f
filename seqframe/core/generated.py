"""Generated kernels: a cell written as plain equations, run as fast as a fused kernel.

For a cell without ``scan``, the ``generated`` path asks nothing of its author.
It traces one call of ``step`` (AOTAutograd: the forward and backward graphs of
the step, split by the min-cut partitioner), compiles both with Inductor, and
runs the whole sequence as ONE autograd node per layer and direction:

* forward: ``T`` calls of the compiled forward-step kernel, no autograd
  recording; each call also returns what the backward of that step needs;
* backward: ``T`` calls of the compiled backward-step kernel in reverse, with
  the per-step glue folded into it (the output's gradient added to the
  state's, the parameters' gradients accumulated).

Variable lengths fold a ``where(keep_t, new, old)`` into the step, so padded
steps leave the state as it was, exactly as the reference loop does.

Building takes seconds (imports of Inductor, a C++ compilation; later runs hit
Inductor's on-disk cache), so ``backend=auto`` builds in a background thread
while the step loop runs, and switches to the kernels once they are ready:
between two forward passes, never inside one. ``backend=generated`` waits for
them instead (a deterministic path from the first step). Kernels are shared by
every cell of the same structure (class, options, parameter shapes) and call
signature (batch size, dtypes, device, padding, autocast, train/eval).

Anything the generated path cannot handle falls back to the step loop with one
logged reason, never an error and never a different number: Python control flow
on tensor values, in-place changes of inputs, random numbers drawn inside
``step``, a state that changes dtype or shape, an unvalidated torch version, a
moved torch internal (:mod:`seqframe.core.inductor_adapter`), a failed compile.
"""

from __future__ import annotations

import atexit
import copy
import logging
import os
import queue
import threading
import weakref
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.utils._pytree as pytree
from torch import Tensor
from torch.autograd.function import once_differentiable

from seqframe.core import inductor_adapter as adapter
from seqframe.core.cell import Cell, State
from seqframe.core.step_graphs import (
    Signature,
    StepKernels,
    build,
    fingerprint,
    finish_deferred,
    prepare,
    signature,
)

logger = logging.getLogger("seqframe")

MODE_ENV = "SEQFRAME_GENERATED"
MODES = ("background", "wait", "off")  # how backend=auto treats cells without scan

__all__ = ["MODE_ENV", "MODES", "mode", "kernels_for", "run", "status", "CACHE", "StepKernels"]


def mode() -> str:
    """``background`` (default), ``wait`` or ``off``, from the ``SEQFRAME_GENERATED`` variable."""
    value = os.environ.get(MODE_ENV, "background").strip().lower() or "background"
    if value not in MODES:
        raise ValueError(f"{MODE_ENV}={value!r} is not valid; choose one of {', '.join(MODES)}")
    return value


def _no_autocast(device_type: str) -> Any:
    """Autocast switched off around kernels that have its casts built in (entered only when it is on:
    the context manager itself costs microseconds, T times per sequence at small sizes)."""
    return torch.autocast(device_type, enabled=False) if torch.is_autocast_enabled(device_type) else nullcontext()


def _dense(t: Tensor) -> Tensor:
    """``t`` in the dense layout the kernels were compiled for."""
    return t if t.is_contiguous() else t.contiguous()


class GeneratedSequence(torch.autograd.Function):
    """A whole sequence through the compiled step kernels: one autograd node."""

    @staticmethod
    def forward(ctx: Any, kernels: StepKernels, p_time: Tensor, keep: Optional[Tensor], *tensors: Tensor) -> Any:
        """``p_time``: the projected input, time-major ``[T, B, P]`` and dense; ``keep``: ``[T, B, 1]``."""
        head = list(tensors[: kernels.module_tensors])
        state = list(tensors[kernels.module_tensors:])
        steps = p_time.unbind(0)
        tail: List[List[Tensor]] = [[k] for k in keep.unbind(0)] if keep is not None else [[]] * len(steps)
        forward, user, alias = kernels.forward, kernels.user_outputs, kernels.alias
        first = 0 if alias is not None else 1
        outputs, saved = [], []
        with _no_autocast(kernels.autocast_device):
            for p_t, extra in zip(steps, tail):
                result = forward(head + [p_t] + state + extra)
                state = list(result[first:user])
                if not kernels.dense_state:
                    state = [_dense(s) for s in state]
                outputs.append(result[0] if alias is None else state[alias])
                saved.extend(result[user:])
        ctx.kernels, ctx.steps, ctx.width = kernels, len(steps), p_time.shape[-1]
        ctx.save_for_backward(*saved, *(head[k] for k in kernels.accumulated))
        ctx.mark_non_differentiable(*(t for t in [keep] if t is not None))
        return (torch.stack(outputs, 1), *state)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, out_grad: Tensor, *state_grads: Tensor) -> Any:
        kernels: StepKernels = ctx.kernels
        everything = ctx.saved_tensors
        count = len(kernels.accumulated)
        saved, params = everything[: len(everything) - count], everything[len(everything) - count:]
        per_step = kernels.saved
        sums = [torch.zeros_like(p) for p in params]
        grads = [g.contiguous() for g in state_grads]  # compiled for dense inputs (zeros may come expanded)
        out_grads = out_grad.transpose(0, 1).contiguous().unbind(0)
        wanted = [i for i in kernels.collected if i > 0]
        collected: Dict[int, List[Tensor]] = {i: [] for i in wanted}
        p_grad = out_grad.new_empty((ctx.steps, out_grad.shape[0], ctx.width), dtype=kernels.p_grad_dtype)
        backward, leaves = kernels.backward, kernels.state_leaves
        with _no_autocast(kernels.autocast_device):
            for t in range(ctx.steps - 1, -1, -1):
                step_saved = list(saved[t * per_step: (t + 1) * per_step])
                result = backward(sums + step_saved + grads + [out_grads[t], p_grad[t]])
                sums = list(result[:count])
                grads = list(result[count: count + leaves])
                for i in wanted:
                    collected[i].append(result[count + i - 1])
        stacked = {i: torch.stack(parts[::-1]) for i, parts in collected.items()}  # [T, B, n], in time order
        stacked[0] = p_grad
        module_grads: List[Optional[Tensor]] = [None] * kernels.module_tensors
        for slot, grad in zip(kernels.accumulated, sums):
            module_grads[slot] = grad
        for slot, grad in finish_deferred(kernels, saved, stacked, ctx.steps).items():
            module_grads[slot] = grad
        return (None, stacked[0], None, *module_grads, *grads)


_places: weakref.WeakKeyDictionary[Cell, List[Tuple[Dict[str, Any], str]]] = weakref.WeakKeyDictionary()


def _tensor_places(cell: Cell) -> List[Tuple[Dict[str, Any], str]]:
    """Where each of :func:`module_tensors` lives (a submodule's parameter or buffer dictionary and
    key), found once per cell: reading them is then cheap, and a replaced parameter is still seen."""
    places = _places.get(cell)
    if places is None:
        places, seen = [], set()
        for kind in ("_parameters", "_buffers"):
            for module in cell.modules():
                for key, tensor in getattr(module, kind).items():
                    if tensor is not None and id(tensor) not in seen:  # shared ones once, as named_parameters()
                        seen.add(id(tensor))
                        places.append((getattr(module, kind), key))
        _places[cell] = places
    return places


def run(cell: Cell, kernels: StepKernels, x: Tensor, state: State, keep: Optional[Tensor]) -> Tuple[Tensor, State]:
    """``cell`` over the layer input ``x`` ``[B, T, I]`` from ``state`` on its kernels: outputs
    ``[B, T, H]``, final state. ``keep`` ``[B, T, 1]`` marks valid steps (None: all are).

    The projection runs time-major when the cell allows it (checked once by :func:`prepare`):
    every step's ``p_t`` is then a dense slice, with no copy of the projected sequence."""
    leaves, spec = pytree.tree_flatten(state)
    tensors = [_dense(where[name]) for where, name in _tensor_places(cell)]
    if kernels.time_major:
        p_time = _dense(cell.project(x.transpose(0, 1)))
    else:
        p_time = cell.project(x).transpose(0, 1).contiguous()
    keep_time = None if keep is None else keep.transpose(0, 1).contiguous()
    result = GeneratedSequence.apply(kernels, p_time, keep_time, *tensors, *[_dense(t) for t in leaves])
    return result[0], pytree.tree_unflatten(list(result[1:]), spec)


class KernelCache:
    """Kernels built once per (structure, signature), in one background thread; failures remembered.

    The builder is a daemon thread fed by a queue (not a ``ThreadPoolExecutor``, whose threads the
    interpreter joins at exit): a short run that ends before its kernels are ready exits at once.
    The builder files each result itself, so a kernel is ready for the first call after it is built."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.ready: Dict[Any, StepKernels] = {}
        self._failed: Dict[Any, str] = {}
        self._pending: Dict[Any, Future] = {}
        self._queue: queue.Queue[Tuple[Any, Future, Cell, Signature, Any]] = queue.Queue()
        self._worker: Optional[threading.Thread] = None
        self._closing = threading.Event()

    def _interrupted(self) -> None:
        if self._closing.is_set():
            raise adapter.Unavailable("the process is exiting")

    def _work(self) -> None:
        while not self._closing.is_set():
            try:
                key, future, cell, sig, prepared = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                kernels = build(cell, sig, prepared, self._interrupted)
            except Exception as exc:  # any failure of the build means: stay on the loop
                self._fail(key, future, cell, exc)
            else:
                logger.info(
                    "seqframe: generated kernels for cell %r ready after %.1f s (%s compiler); leaving the step loop",
                    cell.name, kernels.seconds, kernels.compiler,
                )
                self._file(key, future, kernels, None)

    def _start_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._closing.clear()
            self._worker = threading.Thread(target=self._work, name="seqframe-generated", daemon=True)
            self._worker.start()

    def close(self) -> None:
        """Stop the builder at its next phase and wait for it (at exit: a thread stopped inside a
        C++ compilation while the interpreter shuts down would abort the process)."""
        self._closing.set()
        worker = self._worker
        if worker is not None and worker.is_alive():
            worker.join()

    def _after_fork(self) -> None:
        """In a forked child the builder thread does not exist: forget builds it was doing."""
        self._lock = threading.Lock()
        self._pending.clear()
        self._worker = None
        self._queue = queue.Queue()

    def _fail(self, key: Any, future: Future, cell: Cell, exc: Exception) -> None:
        reason = str(exc) if isinstance(exc, adapter.Unavailable) else f"{type(exc).__name__}: {exc}"
        if not self._closing.is_set():  # at exit a build cut short is no news
            logger.warning("seqframe: cell %r stays on the step loop: %s", cell.name, reason)
        self._file(key, future, None, reason)

    def _file(self, key: Any, future: Future, kernels: Optional[StepKernels], reason: Optional[str]) -> None:
        with self._lock:
            if self._pending.get(key) is future:  # not cleared meanwhile
                if kernels is not None:
                    self.ready[key] = kernels
                else:
                    self._failed[key] = str(reason)
                del self._pending[key]
        future.set_result(kernels)

    def lookup(self, key: Any, cell: Cell, sig: Signature, wait: bool) -> Optional[StepKernels]:
        """The kernels for ``key`` if built; else start building them (and with ``wait``, wait)."""
        kernels = self.ready.get(key)
        if kernels is not None or key in self._failed:
            return kernels
        future = self._pending.get(key)
        if future is None:
            try:
                prepared = prepare(cell, sig)  # on this thread: it runs the cell once, random state forked
            except Exception as exc:  # the author's code, or an unvalidated torch
                future = self._pending[key] = Future()
                self._fail(key, future, cell, exc)
                return None
            twin = copy.deepcopy(cell)  # tracing swaps parameters: never on the cell that trains meanwhile
            with self._lock:
                self._start_worker()
                future = self._pending[key] = Future()
            logger.info("seqframe: building generated step kernels for cell %r (%s)", cell.name, sig.describe())
            self._queue.put((key, future, twin, sig, prepared))
        if wait:
            future.result()
        return self.ready.get(key)

    def wait(self) -> None:
        """Wait until every kernel being built is ready or has failed (benchmarks, tests)."""
        with self._lock:
            pending = list(self._pending.values())
        for future in pending:
            future.result()

    def status(self, key: Any) -> str:
        """``generated``, ``compiling``, ``failed: reason`` or ``not built``."""
        if key in self.ready:
            return "generated"
        if key in self._failed:
            return f"failed: {self._failed[key]}"
        return "compiling" if key in self._pending else "not built"

    def clear(self) -> None:
        """Forget every kernel and failure (tests); builds under way finish but are not filed."""
        with self._lock:
            self.ready.clear()
            self._failed.clear()
            self._pending.clear()


CACHE = KernelCache()
atexit.register(CACHE.close)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=CACHE._after_fork)


class _Structure:
    """A cell's :func:`fingerprint` with its hash computed once (it is looked up every call)."""

    __slots__ = ("parts", "hash")

    def __init__(self, parts: Tuple[Any, ...]) -> None:
        self.parts, self.hash = parts, hash(parts)

    def __hash__(self) -> int:
        return self.hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Structure) and self.hash == other.hash and self.parts == other.parts


@dataclass
class _CellPlan:
    """What :func:`kernels_for` remembers about one cell between calls, to stay cheap per call."""

    structure: _Structure
    keys: Dict[Tuple[Any, ...], Tuple[Any, Signature]]  # a call's quick description -> (cache key, signature)
    last_key: Any = None


_plans: weakref.WeakKeyDictionary[Cell, _CellPlan] = weakref.WeakKeyDictionary()


def kernels_for(cell: Cell, x: Tensor, state: State, masked: bool, wait: bool) -> Optional[StepKernels]:
    """The kernels to run ``cell`` on the layer input ``x`` ``[B, T, I]`` from ``state``, or None:
    then the step loop runs (kernels not built yet, or not possible: see :func:`status`)."""
    if torch.compiler.is_compiling() or torch.compiler.is_exporting() or torch.jit.is_tracing() or not x.shape[0]:
        return None  # an outer tracer follows the plain loop
    plan = _plans.get(cell)
    if plan is None:
        plan = _plans[cell] = _CellPlan(_Structure(fingerprint(cell)), {})
    device_type = x.device.type
    autocast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    if isinstance(state, Tensor):
        described: Tuple[Any, ...] = (state.dtype, state.shape)
    else:
        described = tuple((t.dtype, t.shape) for t in pytree.tree_leaves(state))
    quick = (x.shape[0], x.dtype, x.device, masked, autocast, cell.training, described)
    known = plan.keys.get(quick)
    if known is None:
        with torch.no_grad():  # P and the projection's dtype, once per kind of call; nothing for autograd
            probe = cell.project(x[:1, :1])
        sig = signature(cell, probe.expand(x.shape[0], 1, probe.shape[-1]), state, masked)
        known = plan.keys[quick] = ((plan.structure, sig), sig)
    plan.last_key = known[0]
    kernels = CACHE.ready.get(known[0])
    if kernels is not None:
        return kernels
    wait = wait or mode() == "wait"
    if not (wait or torch.is_grad_enabled()):
        return None  # no build for inference alone (eval, predict, export): it would outlive a short command
    return CACHE.lookup(known[0], cell, known[1], wait)


def status(cell: Cell) -> str:
    """How ``cell``'s last call ran: ``generated``, ``compiling``, ``failed: reason`` or ``not built``."""
    plan = _plans.get(cell)
    return "not built" if plan is None or plan.last_key is None else CACHE.status(plan.last_key)
