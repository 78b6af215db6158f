"""From a cell's ``step`` to two compiled kernels: what :mod:`seqframe.core.generated` runs.

:func:`prepare` runs on the caller's thread (one eager step, under a forked
random state): it refuses what kernels could not reproduce (in-place changes of
inputs, a state that changes dtype or shape). :func:`build` runs in the
background on a copy of the cell:

1. the forward and backward graphs of one step (AOTAutograd through
   :mod:`seqframe.core.inductor_adapter`), ``step`` seen as a function of flat
   tensors: the cell's parameters and buffers, ``p_t``, the state (and, for
   padded batches, ``keep_t``, folded in as ``where(keep_t, new, old)``);
2. parameter gradients of the form ``X^T R`` (a matrix product summed over the
   batch: every weight a ``Linear`` applies) or a batch sum of a tensor the
   backward returns anyway (a bias) are *deferred*: the backward step returns
   their per-step rows instead, and one large matrix product over all ``T x B``
   rows after the loop replaces ``T`` small ones plus ``T`` accumulations;
3. the other parameter gradients are accumulated inside the backward kernel,
   together with the output's gradient added to the state's;
4. both graphs compiled with Inductor.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
import torch.utils._pytree as pytree
from torch import Tensor, nn

from seqframe.core import inductor_adapter as adapter
from seqframe.core.cell import Cell, State

RANDOM_OPS = ("rand", "bernoulli", "dropout", "philox", "multinomial", "normal", "exponential", "poisson")


@dataclass(frozen=True)
class Signature:
    """What a compiled kernel is specialised to, besides the cell's structure."""

    batch: int
    width: int  # P, the projected input's features
    dtype: torch.dtype  # of the projected input
    state_dtypes: Tuple[torch.dtype, ...]
    state_shapes: Tuple[Tuple[int, ...], ...]
    device: torch.device
    masked: bool  # variable lengths: padded steps keep the state
    autocast: Optional[torch.dtype]  # the autocast dtype of this device, None when autocast is off
    training: bool

    def describe(self) -> str:
        extra = ", padded" if self.masked else ""
        extra += f", autocast {self.autocast}" if self.autocast is not None else ""
        return f"batch {self.batch}, {self.dtype}, {self.device.type}{extra}"


def signature(cell: Cell, p: Tensor, state: State, masked: bool) -> Signature:
    """The signature of a call of ``cell`` on ``p`` ``[B, T, P]`` from ``state``."""
    leaves = pytree.tree_leaves(state)
    device_type = p.device.type
    autocast = torch.get_autocast_dtype(device_type) if torch.is_autocast_enabled(device_type) else None
    return Signature(
        batch=p.shape[0], width=p.shape[2], dtype=p.dtype,
        state_dtypes=tuple(t.dtype for t in leaves), state_shapes=tuple(tuple(t.shape) for t in leaves),
        device=p.device, masked=masked, autocast=autocast, training=cell.training,
    )


_MODULE_INTERNALS = frozenset(vars(nn.Module()))


def _plain(value: Any) -> Any:
    """A hashable stand-in for an attribute value (``value`` itself when hashable)."""
    if isinstance(value, (list, tuple)):
        return tuple(_plain(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), _plain(v)) for k, v in value.items()))
    try:
        hash(value)
        return value
    except TypeError:
        return repr(value)


def fingerprint(cell: Cell) -> Tuple[Any, ...]:
    """The structure a traced step depends on: classes, plain attributes (options), parameter and
    buffer shapes. Cells with equal fingerprints share kernels; a tensor attribute that is neither a
    parameter nor a buffer would be baked into the kernel, so such a cell gets its own."""
    parts: List[Any] = []
    for name, module in cell.named_modules():
        for key, value in sorted(vars(module).items()):
            if key in _MODULE_INTERNALS:
                continue
            if isinstance(value, Tensor):
                return ("instance", id(cell))
            parts.append((name, key, _plain(value)))
        parts.append((name, type(module)))
    for name, tensor in module_tensors(cell):
        parts.append((name, tuple(tensor.shape), tensor.dtype, tensor.requires_grad))
    return tuple(parts)


def module_tensors(module: nn.Module) -> List[Tuple[str, Tensor]]:
    """Parameters, then buffers, with their dotted names: the kernels' first inputs, in this order."""
    return list(module.named_parameters()) + list(module.named_buffers())


@dataclass(frozen=True)
class Rows:
    """Where a deferred gradient finds one of its per-step ``[B, n]`` row blocks: a tensor the
    forward saved (``saved``), or an output of the backward step (``output``: 0 is ``p_t``'s
    gradient, then the state's, then extra row outputs)."""

    kind: str
    index: int


@dataclass(frozen=True)
class Deferred:
    """A parameter gradient computed once after the backward loop from all steps' rows:
    ``X^T R`` (``product``; transposed if ``transpose``) or the row sum of ``X``, then viewed
    as the parameter and cast to its dtype."""

    slot: int  # the parameter's position among the module tensors
    x: Rows
    r: Optional[Rows]  # None: a row sum
    transpose: bool
    compute: torch.dtype  # the dtype the step's own product or sum ran in (autocast: the low one)
    shape: Tuple[int, ...]
    dtype: torch.dtype


@dataclass
class StepKernels:
    """The compiled forward and backward kernels of one step, and how to call them.

    forward: ``[*module tensors, p_t, *state (, keep_t)]`` -> ``[out (unless aliased), *state,
    *saved]``; backward: ``[*accumulated, *saved, *state grads, out grad, p_t grad (written)]`` ->
    ``[*accumulated, *state grads before the step, *extra rows]``; :class:`Rows` ``output`` 0 is the
    written ``p_t`` gradient, ``i > 0`` the ``i``-th output after the accumulations."""

    forward: adapter.Kernel
    backward: adapter.Kernel
    module_tensors: int  # parameters and buffers passed first, in named order
    accumulated: Tuple[int, ...]  # module tensors whose gradient the backward kernel accumulates
    deferred: Tuple[Deferred, ...]  # module tensors whose gradient comes from all rows at the end
    state_leaves: int
    saved: int  # tensors the forward step keeps for the backward step
    alias: Optional[int]  # index of the state leaf that is also the output (LSTM's h), or None
    autocast_device: str
    compiler: str
    time_major: bool = False  # project() may be called on time-major input (same numbers)
    dense_state: bool = False  # the forward kernel returns the state dense (no copy before the next step)
    p_grad_dtype: torch.dtype = torch.float32
    seconds: float = 0.0

    @property
    def user_outputs(self) -> int:
        return self.state_leaves if self.alias is not None else self.state_leaves + 1

    @functools.cached_property
    def collected(self) -> Tuple[int, ...]:
        """Backward outputs kept from every step: ``p_t``'s gradient and the deferred gradients' rows."""
        rows = {w.index for d in self.deferred for w in (d.x, d.r) if w is not None and w.kind == "output"}
        return tuple(sorted(rows | {0}))


class _StepCall(nn.Module):
    """``cell.step`` as a module's forward, for ``torch.func.functional_call``."""

    def __init__(self, cell: Cell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, p_t: Tensor, state: State) -> Tuple[Tensor, State]:
        return self.cell.step(p_t, state)


def _autocast(sig: Signature) -> Any:
    if sig.autocast is None:
        return torch.autocast(sig.device.type, enabled=False)
    return torch.autocast(sig.device.type, dtype=sig.autocast)


def _example_step(sig: Signature) -> Tuple[Tensor, List[Tensor]]:
    """A ``p_t`` and a state for tracing, from a private generator: the background build must never
    draw from torch's global random stream, which the training run uses meanwhile."""
    generator = torch.Generator(device=sig.device).manual_seed(0)
    p_t = torch.randn(sig.batch, sig.width, generator=generator, device=sig.device).to(sig.dtype)
    leaves = [
        torch.randn(s, generator=generator, device=sig.device).to(d) for s, d in zip(sig.state_shapes, sig.state_dtypes)
    ]
    return p_t, leaves


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare` learnt from one eager step: the state's structure and the aliased leaf."""

    spec: Any
    alias: Optional[int]
    time_major: bool


def _as_tuples(tree: Any) -> Any:
    """``tree`` with its lists made tuples: a step may return ``[h, c]`` for an initial ``(h, c)``
    (the leaves, in their order, are what the kernels carry)."""
    if type(tree) in (list, tuple):
        return tuple(_as_tuples(t) for t in tree)
    return tree


def prepare(cell: Cell, sig: Signature) -> Prepared:
    """Run one step eagerly (on the caller's thread, random state restored) and refuse what
    compiled kernels could not reproduce; :class:`Unavailable` says why."""
    adapter.check_torch_version()
    initial = cell.initial_state(1, device=sig.device, dtype=sig.dtype)
    spec = pytree.tree_structure(initial)
    p_t, leaves = _example_step(sig)
    tensors = [t.detach() for _, t in module_tensors(cell)]
    before = [t.clone() for t in [p_t, *leaves, *tensors]]
    devices = [sig.device] if sig.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), _autocast(sig), torch.no_grad():
        out, new = cell.step(p_t, pytree.tree_unflatten(leaves, spec))
    if any(not torch.equal(a, b) for a, b in zip(before, [p_t, *leaves, *tensors]) if not a.isnan().any()):
        raise adapter.Unavailable("step changes its inputs or the cell's parameters in place")
    new_leaves = pytree.tree_leaves(new)
    if pytree.tree_structure(_as_tuples(new)) != pytree.tree_structure(_as_tuples(initial)):
        described = pytree.tree_structure(new)
        raise adapter.Unavailable(f"step returns a state of another structure ({described} instead of {spec})")
    for old, fresh in zip(leaves, new_leaves):
        if fresh.dtype != old.dtype or fresh.shape != old.shape:
            raise adapter.Unavailable(
                f"step turns a state of {old.dtype} {tuple(old.shape)} into {fresh.dtype} {tuple(fresh.shape)}"
            )
    if not isinstance(out, Tensor) or out.dim() != 2 or out.shape[0] != sig.batch:
        raise adapter.Unavailable("step's output is not a [batch, hidden] tensor")
    alias = next((k for k, leaf in enumerate(new_leaves) if leaf is out), None)
    return Prepared(spec, alias, _projects_time_major(cell, sig))


def _projects_time_major(cell: Cell, sig: Signature) -> bool:
    """Whether ``project`` gives the same numbers on a time-major ``[T, B, I]`` input (the contract
    says it treats every step alike; one call on a small input checks it)."""
    generator = torch.Generator(device=sig.device).manual_seed(1)
    x = torch.randn(3, 4, cell.input_size, generator=generator, device=sig.device)
    parameter = next(iter(cell.parameters()), None)
    x = x.to(parameter.dtype if parameter is not None and parameter.is_floating_point() else sig.dtype)
    devices = [sig.device] if sig.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            batch_major = cell.project(x)
            time_major = cell.project(x.transpose(0, 1)).transpose(0, 1)
    except Exception:  # a project that insists on [B, T, I]
        return False
    return batch_major.shape == time_major.shape and torch.allclose(batch_major, time_major, rtol=1e-5, atol=1e-6)


def _flat_step(cell: Cell, names: List[str], sig: Signature, prepared: Prepared) -> Callable[..., Any]:
    """``step`` as a function of flat tensors: module tensors, ``p_t``, state leaves (and ``keep_t``)
    -> the output (unless a state leaf is the output) and the new state leaves."""
    wrapper = _StepCall(cell)
    count, leaves = len(names), len(sig.state_shapes)

    def flat(*args: Tensor) -> Tuple[Tensor, ...]:
        values = dict(zip(names, args[:count]))
        state = list(args[count + 1: count + 1 + leaves])
        start = pytree.tree_unflatten(state, prepared.spec)
        out, new = torch.func.functional_call(wrapper, values, (args[count], start))
        new_leaves = pytree.tree_leaves(new)
        if sig.masked:
            keep = args[-1]
            new_leaves = [torch.where(keep, fresh, old) for fresh, old in zip(new_leaves, state)]
        return tuple(new_leaves) if prepared.alias is not None else (out, *new_leaves)

    return flat


def _outputs(gm: Any) -> List[Any]:
    return list(next(n for n in gm.graph.nodes if n.op == "output").args[0])


def _check_forward(gm: Any) -> None:
    for node in gm.graph.nodes:
        if node.op == "call_function" and any(word in str(node.target) for word in RANDOM_OPS):
            raise adapter.Unavailable(
                f"step draws random numbers ({node.target}); the loop keeps torch's random stream"
            )


_aten = torch.ops.aten
_TRANSPARENT = {_aten.view.default, _aten.reshape.default, _aten.alias.default, _aten._unsafe_view.default}
_TRANSPOSES = {_aten.t.default, _aten.permute.default}


def _is_transpose(node: Any) -> bool:
    if node.op != "call_function" or node.target not in _TRANSPOSES:
        return False
    return node.target == _aten.t.default or list(node.args[1]) == [1, 0]


_CASTS = {torch.ops.prims.convert_element_type.default, _aten._to_copy.default}


def _unwrap(node: Any, views: bool = True) -> Tuple[Any, int]:
    """Skip aliases (and with ``views``, reshapes and casts); count the 2-d transposes passed."""
    flips = 0
    while node.op == "call_function":
        if node.target == _aten.alias.default or (views and (node.target in _TRANSPARENT or node.target in _CASTS)):
            node = node.args[0]
        elif _is_transpose(node):
            flips += 1
            node = node.args[0]
        else:
            break
    return node, flips


@dataclass
class _Plan:
    """The backward graph's parameter gradients sorted into accumulated and deferred ones."""

    accumulated: List[int] = field(default_factory=list)
    deferred: List[Tuple[int, Any, Optional[Any], bool, torch.dtype]] = field(default_factory=list)


def _plan_gradients(grads: List[Any], slots: List[int], batch: int, cheap_rows: set) -> _Plan:
    """Which parameter gradients can be deferred: ``mm(X^T, R)`` over the batch's rows (any
    ``X``, ``R``), or a batch sum of rows the backward returns or keeps anyway."""
    plan = _Plan()
    for slot in slots:
        node, flips = _unwrap(grads[slot])
        target = node.target if node.op == "call_function" else None
        if target == _aten.mm.default:
            left, left_flips = _unwrap(node.args[0], views=False)
            right, right_flips = _unwrap(node.args[1], views=False)
            rows_ok = all(
                n.meta.get("val") is not None and n.meta["val"].dim() == 2 and n.meta["val"].shape[0] == batch
                for n in (left, right)
            )
            if left_flips % 2 == 1 and right_flips % 2 == 0 and rows_ok:
                plan.deferred.append((slot, left, right, flips % 2 == 1, node.meta["val"].dtype))
                continue
        if target == _aten.sum.dim_IntList and list(node.args[1]) == [0]:
            rows = node.args[0]
            if rows in cheap_rows and rows.meta["val"].dim() == 2:
                plan.deferred.append((slot, rows, None, False, node.meta["val"].dtype))
                continue
        plan.accumulated.append(slot)
    return plan


_COMPARISONS = {
    getattr(_aten, name).Scalar for name in ("le", "lt", "ge", "gt", "eq", "ne")
}


def _recompute_masks(forward_gm: Any, backward_gm: Any, user: int) -> None:
    """Save the float a mask compares instead of the mask, and compare again in the backward.

    The partitioner keeps boolean masks (``relu``'s ``out <= 0``: a quarter of the bytes), but
    Inductor's CPU code stores a boolean vector element by element: measured, an IndRNN step's
    forward kernel took 70 us with its mask and the whole step 7 us of work without."""
    output = next(n for n in forward_gm.graph.nodes if n.op == "output")
    outputs = list(output.args[0])
    placeholders = [n for n in backward_gm.graph.nodes if n.op == "placeholder"]
    first_op = next(n for n in backward_gm.graph.nodes if n.op != "placeholder")
    changed = False
    for index in range(user, len(outputs)):
        mask = outputs[index]
        if not (getattr(mask, "op", None) == "call_function" and mask.target in _COMPARISONS):
            continue
        source, scalar = mask.args[0], mask.args[1]
        if not hasattr(source, "meta") or isinstance(scalar, type(mask)):
            continue
        outputs[index] = source
        stash = placeholders[index - user]
        with backward_gm.graph.inserting_before(first_op):
            again = backward_gm.graph.call_function(mask.target, (stash, scalar))
        stash.replace_all_uses_with(again, delete_user_cb=lambda n, again=again: n is not again)
        again.meta["val"], stash.meta["val"] = mask.meta["val"], source.meta["val"]
        changed = True
    if changed:
        output.args = (tuple(outputs),)
        for gm in (forward_gm, backward_gm):
            gm.graph.eliminate_dead_code()
            gm.recompile()


def _never() -> None:
    return None


def build(
    cell: Cell, sig: Signature, prepared: Prepared, interrupted: Callable[[], None] = _never
) -> StepKernels:
    """Trace and compile the kernels of ``cell`` for ``sig`` (seconds); :class:`Unavailable` says why not.
    Runs in the background on a copy of the cell: it draws nothing from the global random stream.
    ``interrupted()`` is called between the phases; it raises to stop the build (the process exits)."""
    started = time.perf_counter()
    named = [(f"cell.{name}", tensor) for name, tensor in module_tensors(cell)]
    flat = _flat_step(cell, [name for name, _ in named], sig, prepared)
    p_t, leaves = _example_step(sig)
    inputs = [t.detach().clone().requires_grad_(t.requires_grad) for _, t in named]
    inputs += [p_t.requires_grad_(), *(leaf.requires_grad_() for leaf in leaves)]
    if sig.masked:
        inputs.append(torch.arange(sig.batch, device=sig.device).unsqueeze(1) % 2 == 0)
    try:
        with _autocast(sig):
            forward_gm, backward_gm = adapter.forward_and_backward_graphs(flat, inputs)
    except adapter.Unavailable:
        raise
    except Exception as exc:  # tracing runs the author's code: data-dependent control flow, unsupported ops
        first = (str(exc).strip().splitlines() or [""])[0]
        raise adapter.Unavailable(f"step could not be traced ({type(exc).__name__}: {first[:300]})") from exc
    _check_forward(forward_gm)
    count, nleaves = len(named), len(leaves)
    user = nleaves if prepared.alias is not None else nleaves + 1
    saved = len(_outputs(forward_gm)) - user
    stash_nodes = [n for n in backward_gm.graph.nodes if n.op == "placeholder"]
    if len(stash_nodes) != saved + user:
        raise adapter.Unavailable("an output of step does not depend on anything differentiable")
    _recompute_masks(forward_gm, backward_gm, user)
    grads = _outputs(backward_gm)
    returned = grads[count: count + 1 + nleaves]  # p_t's gradient, then the state's
    slots = [k for k in range(count) if grads[k] is not None]
    plan = _plan_gradients(grads, slots, sig.batch, set(returned) | set(stash_nodes[:saved]))
    extra: List[Any] = []

    def rows(node: Any) -> Rows:
        if node in stash_nodes[:saved]:
            return Rows("saved", stash_nodes.index(node))
        if node in returned:
            return Rows("output", returned.index(node))
        if node not in extra:
            extra.append(node)
        return Rows("output", 1 + nleaves + extra.index(node))

    deferred = tuple(
        Deferred(slot, rows(x), None if r is None else rows(r), transpose, compute, tuple(named[slot][1].shape),
                 named[slot][1].dtype)
        for slot, x, r, transpose, compute in plan.deferred
    )
    output_node = next(n for n in backward_gm.graph.nodes if n.op == "output")
    kept = [None if (k < count and k not in plan.accumulated) else g for k, g in enumerate(grads)]
    output_node.args = (tuple(kept) + tuple(extra),)
    backward_gm.graph.eliminate_dead_code()
    backward_gm.recompile()
    accumulated = plan.accumulated
    alias = prepared.alias

    if grads[count] is None:
        raise adapter.Unavailable("step does not use p_t")

    def backward_step(*args: Tensor) -> Tuple[Tensor, ...]:
        """One step back: accumulated gradients, the saved tensors, the gradients of the state after
        the step and of the output, and where ``p_t``'s gradient goes (a slice of the sequence's
        buffer: written in place, no copy afterwards) -> new accumulations, the state's gradients
        before the step, rows of deferred gradients."""
        sums = args[: len(accumulated)]
        stash = args[len(accumulated): len(accumulated) + saved]
        state_grads = list(args[len(accumulated) + saved: -2])
        out_grad, p_grad = args[-2], args[-1]
        if alias is not None:
            state_grads[alias] = state_grads[alias] + out_grad
            tangents = state_grads
        else:
            tangents = [out_grad, *state_grads]
        result = backward_gm(*stash, *tangents)
        p_grad.copy_(result[count])
        sums = ((a + result[k]).contiguous() for a, k in zip(sums, accumulated))
        # dense state gradients: the next step's kernel is compiled for dense inputs, and a gradient can be
        # a column slice (``cat([x, h]) @ W.t()`` gives h's gradient as columns of one product)
        state_grads = (g.contiguous() for g in result[count + 1: count + 1 + nleaves])
        return (*sums, *state_grads, *result[len(grads):])

    state_values = [n.meta["val"] for n in _outputs(forward_gm)[user - nleaves: user]]
    dense = all(v.is_contiguous() for v in state_values)
    examples = [torch.zeros_like(named[k][1]) for k in accumulated]
    examples += [adapter.zeros_like_meta(n) for n in _outputs(forward_gm)[user:]]
    examples += [torch.zeros(s, dtype=d, device=sig.device) for s, d in zip(sig.state_shapes, sig.state_dtypes)]
    out_grad = adapter.zeros_like_meta(_outputs(forward_gm)[0]) if alias is None else examples[alias - nleaves].clone()
    p_grad_dtype = grads[count].meta["val"].dtype
    examples += [out_grad, torch.zeros(sig.batch, sig.width, dtype=p_grad_dtype, device=sig.device)]
    backward_graph = adapter.trace(backward_step, examples)
    interrupted()
    forward_kernel, compiler = adapter.compile_graph(forward_gm)  # (compiling rewrites the graph's metadata)
    interrupted()
    backward_kernel, _ = adapter.compile_graph(backward_graph, compilers=(compiler,))
    return StepKernels(
        forward=forward_kernel, backward=backward_kernel, module_tensors=count, accumulated=tuple(accumulated),
        deferred=deferred, state_leaves=nleaves, saved=saved, alias=alias,
        autocast_device=sig.device.type, compiler=compiler, time_major=prepared.time_major, dense_state=dense,
        seconds=time.perf_counter() - started, p_grad_dtype=p_grad_dtype,
    )


def finish_deferred(
    kernels: StepKernels, saved: Tuple[Tensor, ...], outputs: Dict[int, Tensor], steps: int
) -> Dict[int, Tensor]:
    """The deferred gradients from all steps' rows: ``saved`` is every step's saved tensors in
    order; ``outputs[i]`` is backward output ``i`` of every step stacked as ``[T, B, n]``."""
    stacked: Dict[Tuple[Rows, torch.dtype], Tensor] = {}

    def rows(where: Rows, dtype: torch.dtype) -> Tensor:
        if (where, dtype) not in stacked:
            if where.kind == "saved":
                block = torch.stack([saved[t * kernels.saved + where.index] for t in range(steps)])
            else:
                block = outputs[where.index]
            block = block.reshape(-1, block.shape[-1])
            stacked[where, dtype] = block if block.dtype == dtype else block.to(dtype)
        return stacked[where, dtype]

    grads = {}
    for item in kernels.deferred:
        x = rows(item.x, item.compute)
        if item.r is None:
            grad = x.sum(0)
        else:
            r = rows(item.r, item.compute)
            grad = torch.mm(r.t(), x) if item.transpose else torch.mm(x.t(), r)
        grad = grad.view(item.shape) if grad.shape != item.shape else grad
        grads[item.slot] = grad if grad.dtype == item.dtype else grad.to(item.dtype)
    return grads
