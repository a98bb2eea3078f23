"""The backward graph as the engine holds it, and one ``backward()`` recorded through the
engine's own node hooks.

:class:`Inspection` walks ``grad_fn.next_functions`` once (each node once): op, output
shapes/dtypes (``node._input_metadata``), the tensors each node saved (``_raw_saved_*``:
unpacking one runs the engine's own version check, so a tensor changed in place since it was
saved is found *before* ``backward()`` trips over it), leaves and their names, parameters
that do not reach the loss, hooks. :meth:`Inspection.watching` registers a pre-hook and a
hook on every node; while ``backward()`` runs they record the order the engine executes the
nodes in, what each received and what it produced for each of its edges.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from . import drawing

MODULE_KEY = "lab.inspector.module"  # node.metadata: the module path record() saw create it
_VERSIONS = re.compile(r"is at version (\d+); expected version (\d+)")
_FREED = ("freed", "second time")


class InspectorError(ValueError):
    """Bad input to the inspector: one line saying what was wrong and what to do."""


@dataclass
class Saved:
    """A tensor a node saved for backward."""

    name: str  # the node's attribute: self, other, result …
    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int
    version: int | None  # the tensor's version counter now
    saved_version: int | None  # … when the node saved it
    freed: bool = False  # backward() released it (no retain_graph)

    @property
    def changed(self) -> bool:
        """Changed in place since it was saved: backward() through this node will fail."""
        return not self.freed and self.version != self.saved_version


@dataclass
class Leaf:
    name: str | None
    shape: tuple[int, ...]
    dtype: torch.dtype
    requires_grad: bool
    grad_before: torch.Tensor | None
    grad_after: torch.Tensor | None = None


@dataclass
class Node:
    index: int
    fn: object  # the engine's torch.autograd.graph.Node
    op: str
    depth: int  # first reached after this many edges from the loss
    outputs: list[tuple[tuple[int, ...], torch.dtype]]  # one per input slot of the node
    saved: list[Saved]
    module: str | None = None
    leaf: Leaf | None = None
    name: str | None = None  # the leaf's or named tensor's name
    hooks: list[str] = field(default_factory=list)
    leaf_tensor: torch.Tensor | None = None  # AccumulateGrad's variable

    @property
    def saved_bytes(self) -> int:
        return sum(item.nbytes for item in self.saved)

    @property
    def title(self) -> str:
        return f"{self.op} ({self.name})" if self.name else self.op


@dataclass
class Edge:
    """next_functions[slot] of ``source``: its produced[slot] arrives at ``target``."""

    index: int
    source: int
    slot: int
    target: int
    target_slot: int


@dataclass
class Step:
    node: int
    received: list[torch.Tensor | None]  # after the tensor hooks that sit on its inputs
    produced: list[torch.Tensor | None] | None = None  # None: backward failed in this node

    @cached_property
    def norms(self) -> dict[int, float]:
        """The norm of each gradient it received or produced, by id (one pass each)."""
        grads = self.received + (self.produced or [])
        return {id(g): grad_norm(g) for g in grads if g is not None}

    @cached_property
    def bad_received(self) -> bool:
        return any(_bad(g, self.norms[id(g)]) for g in self.received if g is not None)

    @cached_property
    def bad_produced(self) -> bool:
        produced = self.produced or []
        return any(_bad(g, self.norms[id(g)]) for g in produced if g is not None)


@dataclass
class NonFinite:
    step: int  # 1-based position in the execution order
    node: int
    produced: bool  # False: it arrived non-finite (the seed gradient or a hook)


def _copies(grads) -> list[torch.Tensor | None]:
    with one_thread():  # a copy is memory-bound: a second, busy thread only slows it down
        return [None if g is None else g.detach().clone() for g in grads]


def grad_norm(grad: torch.Tensor) -> float:
    with one_thread():
        return torch.linalg.vector_norm(grad, dtype=torch.float64).item()


def _bad(grad: torch.Tensor, norm: float) -> bool:
    """NaN/inf in ``grad``: a finite norm rules it out in one pass (float64 squares of
    float32 values cannot overflow); otherwise look."""
    if math.isfinite(norm) or not grad.is_floating_point():
        return False
    with one_thread():
        return not bool(torch.isfinite(grad).all())


@contextmanager
def one_thread():
    """Small reductions run on one thread: on a busy 2-core machine a second thread only
    spins (100× slower here), and the summaries are too small to gain from it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def op_name(fn) -> str:
    return fn.name().rpartition("::")[2]


def hook_names(hooks) -> list[str]:
    return [getattr(hook, "__qualname__", repr(hook)) for hook in (hooks or {}).values()]


def saved_tensors(fn) -> list[Saved]:
    """What ``fn`` saved for backward. Unpacking runs the engine's checks: a tensor changed
    in place raises with both versions in the message, a released one says so."""
    found = []
    attributes = dir(fn)
    for attr in sorted(a for a in attributes if a.startswith("_raw_saved_")):
        base = attr.removeprefix("_raw_saved_")
        # the checked accessor: _saved_self for _raw_saved_self; saved_tensors for a Function's
        checked = f"_saved_{base}" if f"_saved_{base}" in attributes else base
        raw = getattr(fn, attr)
        if not isinstance(raw, tuple | list):
            found += _describe(base, raw, lambda checked=checked: getattr(fn, checked))
            continue
        for i, item in enumerate(raw):
            whole = lambda checked=checked, i=i: getattr(fn, checked)[i]  # noqa: E731
            found += _describe(f"{base}[{i}]", item, item.unpack, whole)
    return found


def _describe(name: str, raw, *unpackers) -> list[Saved]:
    for unpack in unpackers:
        try:
            tensor = unpack()
        except RuntimeError as exc:
            message = str(exc)
            versions = _VERSIONS.search(message)
            if versions:  # changed in place: its current state, and the version it had
                tensor = raw.data
                return [_saved(name, tensor, int(versions.group(2)))]
            if any(word in message for word in _FREED):
                return [Saved(name, (), torch.float32, 0, None, None, freed=True)]
            if unpack is unpackers[-1]:
                raise
            continue  # a saved output unpacks only through its node's accessor
        return [] if tensor is None else [_saved(name, tensor, tensor._version)]
    return []


def _saved(name: str, tensor: torch.Tensor, saved_version: int) -> Saved:
    nbytes = tensor.numel() * tensor.element_size()
    return Saved(name, tuple(tensor.shape), tensor.dtype, nbytes, tensor._version, saved_version)


def named_params(params) -> tuple[dict[str, torch.Tensor], nn.Module | None]:
    """``params``: a module (its named_parameters), a dict name → tensor, or None."""
    if params is None:
        return {}, None
    if isinstance(params, nn.Module):
        return dict(params.named_parameters()), params
    if isinstance(params, Mapping):
        bad = [name for name, value in params.items() if not isinstance(value, torch.Tensor)]
        if bad:
            raise InspectorError(
                f"params[{bad[0]!r}] is not a tensor: pass a module or a dict name → tensor"
            )
        return dict(params), None
    raise InspectorError(
        f"params is a {type(params).__name__}: pass a module (its named_parameters are used) "
        "or a dict name → tensor, e.g. dict(model.named_parameters())"
    )


def walk(root) -> tuple[list[tuple[object, int]], list[tuple[int, int, int, int]]]:
    """Every node reachable from ``root`` once, depth first, inputs in order: (node, depth);
    and the edges (source, slot, target, target_slot) between their positions."""
    order: dict[object, int] = {}
    found: list[tuple[object, int]] = []
    stack = [(root, 0)]
    while stack:
        fn, depth = stack.pop()
        if fn in order:
            continue
        order[fn] = len(found)
        found.append((fn, depth))
        stack.extend(
            (child, depth + 1) for child, _ in reversed(fn.next_functions) if child is not None
        )
    edges = [
        (order[fn], slot, order[child], child_slot)
        for fn, _ in found
        for slot, (child, child_slot) in enumerate(fn.next_functions)
        if child is not None
    ]
    return found, edges


class Inspection:
    """The backward graph of ``loss``; after :meth:`run_backward` (or a ``backward()`` under
    :meth:`watching`) also the steps the engine took."""

    def __init__(self, loss: torch.Tensor, params=None, tensors=None) -> None:
        if not isinstance(loss, torch.Tensor):
            raise InspectorError(f"inspect() needs a tensor, not a {type(loss).__name__}")
        if loss.grad_fn is None:
            raise InspectorError(
                "inspect() needs a tensor computed from tensors with requires_grad=True "
                "(this one has no grad_fn): compute it outside torch.no_grad(), from "
                "parameters or inputs that require grad"
            )
        self.loss = loss
        self.params, self.module = named_params(params)
        self.tensors = dict(tensors or {})
        names = {id(tensor): name for name, tensor in self.params.items()}
        found, edges = walk(loss.grad_fn)
        self.nodes = [self._node(i, fn, depth, names) for i, (fn, depth) in enumerate(found)]
        self.edges = [Edge(i, *edge) for i, edge in enumerate(edges)]
        self._into: dict[int, list[Edge]] = {}
        for edge in self.edges:
            self._into.setdefault(edge.target, []).append(edge)
        self._by_fn = {node.fn: node for node in self.nodes}
        self._name_tensors()
        reached = {id(node.leaf_tensor) for node in self.nodes if node.leaf is not None}
        self.no_grad = {
            name: "requires_grad=False" if not p.requires_grad else "does not reach the loss"
            for name, p in self.params.items()
            if id(p) not in reached
        }
        self.module_hooks = self._module_hooks()
        self.steps: list[Step] = []
        self._ran: dict[int, tuple[int, Step]] = {}  # node → (1-based position, its step)
        self._changes: dict[int, tuple | None] = {}  # node → what a hook did (hook_change)
        self._norms: dict[int, float] = {}  # id(recorded gradient) → its norm
        self.error: str | None = None
        self.saved_after: dict[int, list[Saved]] | None = None

    # -- the graph -----------------------------------------------------------------------

    def _node(self, index: int, fn, depth: int, names: dict[int, str]) -> Node:
        outputs = [(tuple(m.shape), m.dtype) for m in fn._input_metadata]
        node = Node(index, fn, op_name(fn), depth, outputs, saved_tensors(fn))
        node.module = fn.metadata.get(MODULE_KEY) or None
        node.leaf_tensor = getattr(fn, "variable", None)
        if node.leaf_tensor is not None:
            leaf = node.leaf_tensor
            node.name = names.get(id(leaf))
            grad = None if leaf.grad is None else leaf.grad.detach().clone()
            node.leaf = Leaf(node.name, tuple(leaf.shape), leaf.dtype, leaf.requires_grad, grad)
            node.hooks += [f"tensor hook {name}" for name in hook_names(leaf._backward_hooks)]
            node.hooks += [
                f"post-accumulate hook {name}"
                for name in hook_names(getattr(leaf, "_post_accumulate_grad_hooks", None))
            ]
        if node.op == "BackwardHookFunctionBackward":
            owner = f" of {node.module}" if node.module else ""
            node.hooks.append(f"a module's full backward hooks{owner} run here")
        return node

    def _name_tensors(self) -> None:
        for name, tensor in self.tensors.items():
            if not isinstance(tensor, torch.Tensor):
                raise InspectorError(f"tensors[{name!r}] is not a tensor")
            node = self._by_fn.get(tensor.grad_fn)
            if node is None:
                continue  # not part of this graph (or a leaf: name it in params)
            node.name = name if node.name is None else f"{node.name}, {name}"
            node.hooks += [
                f"tensor hook on {name}: {h}" for h in hook_names(tensor._backward_hooks)
            ]
            if tensor.retains_grad:
                node.hooks.append(f"{name}.retain_grad()")

    def _module_hooks(self) -> dict[str, list[str]]:
        if self.module is None:
            return {}
        kinds = (
            ("forward pre-hook", "_forward_pre_hooks"),
            ("forward hook", "_forward_hooks"),
            ("backward pre-hook", "_backward_pre_hooks"),
            ("backward hook", "_backward_hooks"),
        )
        found = {}
        for path, module in self.module.named_modules():
            hooks = [
                f"{kind} {name}"
                for kind, attr in kinds
                for name in hook_names(getattr(module, attr, None))
            ]
            if hooks:
                found[path or type(module).__name__] = hooks
        return found

    def node(self, key) -> Node:
        """A node by position, by the engine's node object (``t.grad_fn``) or by name."""
        if isinstance(key, int):
            return self.nodes[key]
        if isinstance(key, str):
            for node in self.nodes:
                if node.name == key or (node.name and key in node.name.split(", ")):
                    return node
            raise KeyError(
                f"no node named {key!r}; named: {[n.name for n in self.nodes if n.name]}"
            )
        return self._by_fn[key]

    @property
    def flagged(self) -> list[tuple[Node, Saved]]:
        """Saved tensors changed in place since they were saved: backward() fails at these."""
        return [(node, item) for node in self.nodes for item in node.saved if item.changed]

    @property
    def saved_bytes(self) -> int:
        return sum(node.saved_bytes for node in self.nodes)

    # -- one backward(), recorded ----------------------------------------------------------

    @contextmanager
    def watching(self) -> Iterator[Inspection]:
        """Record the backward() run inside the block through the engine's node hooks."""
        self.steps, self._ran, self._changes, self._norms = [], {}, {}, {}

        def before(index):
            def hook(grad_outputs):
                step = Step(index, _copies(grad_outputs))
                self.steps.append(step)
                self._ran[index] = (len(self.steps), step)

            return hook

        def after(index):
            def hook(grad_inputs, grad_outputs):
                self._ran[index][1].produced = _copies(grad_inputs)

            return hook

        handles = []
        for node in self.nodes:
            handles.append(node.fn.register_prehook(before(node.index)))
            handles.append(node.fn.register_hook(after(node.index)))
        try:
            yield self
        finally:
            for handle in handles:
                handle.remove()
            for node in self.nodes:
                if node.leaf is not None:
                    grad = node.leaf_tensor.grad
                    node.leaf.grad_after = None if grad is None else grad.detach().clone()
            self.saved_after = {node.index: saved_tensors(node.fn) for node in self.nodes}

    def run_backward(self, gradient=None, retain_graph: bool = False) -> Inspection:
        """``backward()`` from the loss, recorded. An error the engine raises is kept in
        :attr:`error` (and shown), and :attr:`failed_at` names the node it happened in."""
        try:
            with self.watching():
                torch.autograd.backward(self.loss, gradient, retain_graph=retain_graph)
        except RuntimeError as exc:
            self.error = str(exc)
        return self

    @property
    def order(self) -> list[int]:
        """The nodes in the order the engine ran them."""
        return [step.node for step in self.steps]

    @property
    def failed_at(self) -> Node | None:
        """The node backward() started but did not finish."""
        unfinished = [step for step in self.steps if step.produced is None]
        return self.nodes[unfinished[0].node] if unfinished else None

    def step_of(self, node: int) -> int | None:
        """1-based position of ``node`` in the execution order, None when it did not run."""
        return self._ran[node][0] if node in self._ran else None

    def norm(self, grad: torch.Tensor) -> float:
        """A recorded gradient's norm (computed once), or any tensor's."""
        if not self._norms:
            for step in self.steps:
                self._norms.update(step.norms)
        return self._norms[id(grad)] if id(grad) in self._norms else grad_norm(grad)

    def step(self, node: int) -> Step | None:
        """What ``node`` did in the recorded backward(), None when it did not run."""
        return self._ran[node][1] if node in self._ran else None

    def edges_into(self, node: int) -> list[Edge]:
        return self._into.get(node, [])

    def sent(self, edge: Edge) -> torch.Tensor | None:
        """The gradient ``edge``'s source produced for it (None: not sent, or nothing)."""
        ran = self._ran.get(edge.source)
        return None if ran is None or ran[1].produced is None else ran[1].produced[edge.slot]

    def received(self, key) -> list[torch.Tensor | None] | None:
        """What the node received (after any tensor hook on its input), None: it did not run."""
        ran = self._ran.get(self.node(key).index)
        return None if ran is None else ran[1].received

    def arrivals(self, key) -> list[torch.Tensor]:
        """Every gradient sent to ``key`` along an edge, in the order they were sent: a leaf
        used twice gets two, which the engine sums before it accumulates them into .grad."""
        node = self.node(key)
        into = sorted(
            self.edges_into(node.index),
            key=lambda edge: (self.step_of(edge.source) or math.inf, edge.index),
        )
        return [grad for grad in (self.sent(edge) for edge in into) if grad is not None]

    def hook_change(self, key) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(sum of what was sent to the node, what it received) when they differ: a tensor
        hook on its input changed the gradient on the way."""
        node = self.node(key)
        if node.index not in self._changes:
            with one_thread():
                self._changes[node.index] = self._hook_change(node)
        return self._changes[node.index]

    def _hook_change(self, node: Node) -> tuple[torch.Tensor, torch.Tensor] | None:
        received = self.received(node.index)
        if received is None or node.index == 0:
            return None
        for slot, got in enumerate(received):
            parts = [
                self.sent(edge) for edge in self.edges_into(node.index) if edge.target_slot == slot
            ]
            parts = [part for part in parts if part is not None]
            if not parts or got is None:
                continue
            total = torch.stack(parts).sum(0) if len(parts) > 1 else parts[0]
            if total.shape != got.shape:
                return total, got
            if not torch.equal(total, got) and not torch.allclose(
                total, got, rtol=1e-6, atol=1e-12, equal_nan=True
            ):
                return total, got
        return None

    @property
    def first_nonfinite(self) -> NonFinite | None:
        """Where the first NaN/inf of the backward pass came from."""
        for position, step in enumerate(self.steps, 1):
            if step.bad_received:
                return NonFinite(position, step.node, produced=False)
            if step.bad_produced:
                return NonFinite(position, step.node, produced=True)
        return None

    # -- pictures ----------------------------------------------------------------------------

    def diagram(self) -> drawing.Diagram:
        """The picture's boxes and arrows, captions and hover texts."""
        from .picture import Picture

        return Picture(self).diagram()

    def text(self, step: int | None = None) -> str:
        """The graph as text, with the state after ``step`` steps (default: the end)."""
        return self.diagram().text(step)

    def svg(self, step: int | None = None, opened: set[str] | None = None) -> str:
        return self.diagram().svg(step, opened)

    def png(self, step: int | None = None, opened: set[str] | None = None) -> bytes:
        return self.diagram().png(step, opened)

    def save_html(self, path, step: int = 0, opened: set[str] | None = None) -> Path:
        """One self-contained HTML file: the picture and its step control (works offline)."""
        from lab.files import atomic_write

        path = Path(path)
        atomic_write(path, self.diagram().html(step, opened).encode())
        return path

    def widget(self):
        from .view import StepView

        return StepView(self.diagram()).widget

    def show(self, tag: str = "inspector") -> None:
        from .view import show

        show(self, tag)

    def __repr__(self) -> str:
        ran = f", {len(self.steps)} steps recorded" if self.steps else ""
        return f"<Inspection of {self.nodes[0].op}: {len(self.nodes)} nodes{ran}>"


@contextmanager
def record(module: nn.Module) -> Iterator[None]:
    """Tag every autograd node created inside the block with the module call that created it
    (``layer1.0.conv1``; a second call of the same module is ``layer1.0.relu#2``), so the
    picture can group them and collapse a call into one box. A module's full backward hooks
    add a node on each side of it: both are tagged with its call."""
    from torch.autograd.graph import node_creation_hook

    paths = {module: path for path, module in module.named_modules()}
    running: list[tuple[str, str]] = []  # (module path, call path) of the calls under way
    calls: dict[str, int] = {}
    hook_after: list[str | None] = [None]  # the call whose output-side hook node comes next

    def enter(module, args):
        path = paths[module]
        outer_path, outer_call = running[-1] if running else ("", "")
        local = path[len(outer_path) + 1 :] if path.startswith(outer_path + ".") else path
        call = f"{outer_call}.{local}" if outer_call and local else outer_call or local
        calls[call] = calls.get(call, 0) + 1
        running.append((path, call if calls[call] == 1 else f"{call}#{calls[call]}"))

    def leave(module, args, output):
        _, call = running.pop()
        has_backward_hooks = module._backward_hooks or module._backward_pre_hooks
        hook_after[0] = call if has_backward_hooks else None

    def created(node) -> None:
        owner, hook_after[0] = hook_after[0], None
        if owner and node.name() == "BackwardHookFunctionBackward":
            node.metadata[MODULE_KEY] = owner
        elif running and running[-1][1]:
            node.metadata[MODULE_KEY] = running[-1][1]

    handles = []
    for each in paths:
        handles.append(each.register_forward_pre_hook(enter))
        handles.append(each.register_forward_hook(leave, always_call=True))
    try:
        with node_creation_hook(created):
            yield
    finally:
        for handle in handles:
            handle.remove()


def inspect(
    loss: torch.Tensor,
    params=None,
    *,
    tensors: Mapping[str, torch.Tensor] | None = None,
    backward: bool = True,
    gradient=None,
    retain_graph: bool = False,
    show: bool = True,
    tag: str = "inspector",
) -> Inspection:
    """Inspect ``loss``'s backward graph and (``backward=True``) run ``backward()`` on it,
    recording every step; then show it (``show``): a step control in a notebook, and the
    picture in the open lesson's run (TensorBoard *Images*, ``tag``) with its SVG and HTML
    beside it. ``params``: a module or a dict name → tensor (names for the leaves);
    ``tensors``: names for intermediate tensors (their hooks are listed)."""
    inspection = Inspection(loss, params, tensors)
    if backward:
        inspection.run_backward(gradient, retain_graph)
    if show:
        inspection.show(tag)
    return inspection
