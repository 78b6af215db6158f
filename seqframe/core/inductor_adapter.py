"""Every internal member of torch that the generated step kernels use, and only here.

torch has no public API for what :mod:`seqframe.core.generated` needs: the
forward and backward graphs of one call of a cell's ``step`` (AOTAutograd's
joint graph, split by the min-cut partitioner) and Inductor's compiler for one
graph at a time. Each member is reached through one function of this module,
gated on the torch versions it was checked against, and
tests/test_generated.py imports every name in :data:`INTERNALS` so that an
upgrade that moves one fails there, by name. At run time a moved or refused
member raises :class:`Unavailable`, and the generated path falls back: to
Inductor's public ``torch._inductor.compile`` entry point (slower per call), and
then to the plain step loop, with the reason logged.
"""

from __future__ import annotations

import importlib
import os
import re
from typing import Any, Callable, List, Sequence, Tuple

import torch
from torch import Tensor

VALIDATED_TORCH = ((2, 13),)  # (major, minor) versions this module was written and tested against
UNVALIDATED_ENV = "SEQFRAME_GENERATED_ANY_TORCH"  # =1: try other torch versions anyway

INTERNALS = {  # what: (module, attribute)
    "joint graph tracing": ("functorch.compile", "aot_function"),
    "min-cut partitioner": ("functorch.compile", "min_cut_rematerialization_partition"),
    "boxed calling convention": ("functorch.compile", "make_boxed_func"),
    "Inductor's decompositions": ("torch._inductor.decomposition", "select_decomp_table"),
    "graph tracing": ("torch.fx.experimental.proxy_tensor", "make_fx"),
    "one-graph compiler": ("torch._inductor.compile_fx", "compile_fx_inner"),
    "fake tensors": ("torch._subclasses.fake_tensor", "FakeTensorMode"),
    "shape environment": ("torch.fx.experimental.symbolic_shapes", "ShapeEnv"),
    "tracing context": ("torch._guards", "TracingContext"),
    "tracing context manager": ("torch._guards", "tracing"),
    "public one-graph compiler": ("torch._inductor", "compile"),
    "Inductor's settings": ("torch._inductor", "config"),
}

# Inductor settings for the step kernels: no per-call checks of every input's size and stride (the
# generated path calls each kernel with tensors it made itself, T times per sequence: the checks
# cost as much as the arithmetic at small sizes)
CPP_WRAPPER = False  # measured: the C++ wrapper is slower per call here (pybind conversion) and 20 s to build
KERNEL_SETTINGS = {"size_asserts": False, "alignment_asserts": False, "scalar_asserts": False}

Kernel = Callable[[List[Tensor]], Sequence[Tensor]]
"""A compiled graph, called boxed: one list of input tensors (it may be emptied) -> its outputs."""


class Unavailable(RuntimeError):
    """The generated path cannot be used here; the message is the reason (logged once)."""


def member(what: str) -> Any:
    """The internal member listed as ``what`` in :data:`INTERNALS`, or :class:`Unavailable`."""
    module, attribute = INTERNALS[what]
    try:
        return getattr(importlib.import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise Unavailable(f"torch {torch.__version__} has no {module}.{attribute} ({what}): {exc}") from exc


def torch_validated() -> bool:
    """Whether this torch version is one the generated path was checked against."""
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (major, minor) in VALIDATED_TORCH or os.environ.get(UNVALIDATED_ENV) == "1"


def check_torch_version() -> None:
    """Refuse an unvalidated torch version (internals may have changed meaning, not just place)."""
    if not torch_validated():
        checked = ", ".join(f"{a}.{b}" for a, b in VALIDATED_TORCH)
        raise Unavailable(
            f"torch {torch.__version__} is not validated for generated kernels (checked: {checked}); "
            f"set {UNVALIDATED_ENV}=1 to try it anyway"
        )


def forward_and_backward_graphs(fn: Callable[..., Tuple[Tensor, ...]], inputs: List[Tensor]) -> Tuple[Any, Any]:
    """The forward and backward graphs of one call of ``fn`` (flat tensors in and out), as AOTAutograd
    splits them: the forward returns ``fn``'s outputs followed by what the backward saves; the backward
    takes the saved tensors followed by one gradient per output, and returns one gradient per input
    (None where an input needs none). Decomposed to the ops Inductor compiles."""
    aot_function = member("joint graph tracing")
    partition = member("min-cut partitioner")
    boxed = member("boxed calling convention")
    decompositions = member("Inductor's decompositions")()
    graphs = {}

    def keep(kind: str) -> Callable[[Any, Any], Any]:
        def compiler(gm: Any, _example: Any) -> Any:
            graphs[kind] = gm
            outputs = next(n for n in gm.graph.nodes if n.op == "output").args[0]
            # never run the graph: it may draw from the global random stream (the caller refuses such a step)
            return boxed(lambda *_args: [None if n is None else zeros_like_meta(n) for n in outputs])

        return compiler

    traced = aot_function(
        fn, fw_compiler=keep("forward"), bw_compiler=keep("backward"), partition_fn=partition,
        decompositions=decompositions,
    )
    outputs = traced(*inputs)
    torch.autograd.backward(list(outputs), [torch.ones_like(o) for o in outputs])
    return graphs["forward"], graphs["backward"]


def zeros_like_meta(node: Any) -> Tensor:
    """Zeros shaped, strided and typed like the value a traced graph's ``node`` recorded."""
    value = node.meta["val"]
    empty = torch.empty_strided(tuple(value.shape), tuple(value.stride()), dtype=value.dtype, device=value.device)
    return empty.zero_()


def trace(fn: Callable[..., Any], inputs: List[Tensor]) -> Any:
    """``fn`` as an FX graph of aten ops (run on the real ``inputs``)."""
    return member("graph tracing")(fn)(*inputs)


def example_inputs(gm: Any) -> List[Tensor]:
    """Real tensors (zeros) shaped like the placeholders of a traced graph (their recorded metadata)."""
    return [zeros_like_meta(node) for node in gm.graph.nodes if node.op == "placeholder"]


def _compile_inner(gm: Any, inputs: List[Tensor]) -> Kernel:
    """Inductor on one graph, the way ``torch.compile`` calls it: inside a tracing context whose
    fake-tensor mode has a shape environment (without one, the on-disk FX graph cache is skipped)."""
    compile_fx_inner = member("one-graph compiler")
    fake_mode = member("fake tensors")(shape_env=member("shape environment")())
    settings = member("Inductor's settings").patch(**KERNEL_SETTINGS)
    with torch.no_grad(), settings, member("tracing context manager")(member("tracing context")(fake_mode)):
        compiled = compile_fx_inner(gm, [fake_mode.from_tensor(t) for t in inputs], cpp_wrapper=CPP_WRAPPER)
    call = compiled.current_callable
    return lambda args: call(args)


def _compile_public(gm: Any, inputs: List[Tensor]) -> Kernel:
    """Inductor through its public one-graph entry point (about 40 us more per call)."""
    compiled = member("public one-graph compiler")(gm, inputs)
    return lambda args: compiled(*args)


COMPILERS = {"inner": _compile_inner, "public": _compile_public}


_TORN_LIBRARY = re.compile(r"(/\S+\.so): (?:file too short|invalid ELF header)")


def _remove_torn_library(exc: BaseException) -> bool:
    """A compiled library cut short in Inductor's cache (its writer was killed) fails every later load
    of the same graph; remove it so that the retry builds it again. True if one was removed."""
    match = _TORN_LIBRARY.search(str(exc))
    if match is None:
        return False
    try:
        os.unlink(match.group(1))
    except OSError:
        return False
    return True


def compile_graph(gm: Any, compilers: Sequence[str] = ("inner", "public")) -> Tuple[Kernel, str]:
    """``gm`` compiled by the first of ``compilers`` that works: the kernel and which one it was."""
    reasons = []
    inputs = example_inputs(gm)
    for name in compilers:
        for _attempt in range(2):
            try:
                return COMPILERS[name](gm, inputs), name
            except Exception as exc:  # a moved internal (Unavailable) or a failed build: try the next way
                if _remove_torn_library(exc):
                    continue
                reasons.append(str(exc) if isinstance(exc, Unavailable) else f"{type(exc).__name__}: {exc}")
                break
    raise Unavailable("; ".join(reasons) or "no compiler")
