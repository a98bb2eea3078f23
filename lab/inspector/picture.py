"""What an :class:`~lab.inspector.core.Inspection` looks like: its boxes, arrows, captions and
hover texts, as a :class:`~lab.inspector.drawing.Diagram`."""

from __future__ import annotations

import math
import re

import torch

from .core import _bad, one_thread
from .drawing import Arrow, Box, Diagram, _with_prefixes


def human_bytes(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


def short(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def shape_text(shape) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def summary(grad: torch.Tensor | None, norm: float) -> str:
    """A gradient in a few characters: its norm and shape (a single number: itself)."""
    if grad is None:
        return "None"
    if grad.numel() == 1:
        return f"g={grad.item():.4g}"
    return f"|g|={norm:.3g} {shape_text(grad.shape)}"


def values(grad: torch.Tensor | None, norm: float, limit: int = 12) -> str:
    """A gradient's values for hover text: all of a small one, the head and range of a big one."""
    if grad is None:
        return "None"
    flat = grad.detach().flatten()
    shown = ", ".join(f"{v:.4g}" for v in flat[:limit].tolist())
    if flat.numel() <= limit:
        return f"{shape_text(grad.shape)} [{shown}]"
    low, high = torch.aminmax(flat)
    return (
        f"{shape_text(grad.shape)} [{shown}, …] min {low.item():.4g}, "
        f"max {high.item():.4g}, |g| {norm:.4g}"
    )


def hook_effect(sent: torch.Tensor, received: torch.Tensor) -> str:
    """How a hook changed a gradient: ``×c`` when it scaled it, else ``changed``."""
    flat_sent, flat_got = sent.double().flatten(), received.double().flatten()
    if flat_sent.shape == flat_got.shape and flat_sent.norm() > 0:
        factor = (flat_sent @ flat_got / (flat_sent @ flat_sent)).item()
        if torch.allclose(factor * flat_sent, flat_got, rtol=1e-6, atol=1e-12):
            return f"×{factor:.3g}".replace("-", "−")
    return "changed"


class Picture:
    """Builds the diagram of one inspection; each gradient is described once."""

    def __init__(self, inspection) -> None:
        self.inspection = inspection
        self.failed_at = inspection.failed_at  # each a walk over the steps: asked once
        self.first_bad = inspection.first_nonfinite
        self._words: dict[tuple[str, int], tuple[torch.Tensor, str]] = {}

    def summary(self, grad) -> str:
        return self._cached(summary, grad)

    def values(self, grad) -> str:
        return self._cached(values, grad)

    def _cached(self, describe, grad) -> str:
        if grad is None:
            return describe(grad, math.nan)
        key = (describe.__name__, id(grad))
        if key not in self._words:  # the tensor is kept with its text: its id stays its own
            self._words[key] = (grad, describe(grad, self.inspection.norm(grad)))
        return self._words[key][1]

    def diagram(self) -> Diagram:
        view = self.inspection
        with one_thread():
            boxes = [self.box(node) for node in view.nodes]
            arrows = [self.arrow(edge) for edge in view.edges]
            paths = _with_prefixes(node.module for node in view.nodes if node.module)
            title = f"backward graph of {view.nodes[0].op}"
            return Diagram(boxes, arrows, title, self.group_captions(paths), self.captions())

    def box(self, node) -> Box:
        view = self.inspection
        step, bad = view.step_of(node.index), self.first_bad
        ran = view.step(node.index)
        first_bad = bad is not None and bad.node == node.index
        kind = (
            "root" if node.index == 0 else "leaf" if node.leaf else "hook" if node.hooks else "op"
        )
        return Box(
            f"n{node.index}",
            self.lines(node),
            kind,
            node.module,
            [step] if step else [],
            self.hover(node, step),
            bad_at=step if (ran is not None and ran.bad_produced) or first_bad else None,
            first_bad=first_bad,
            warn=any(s.changed for s in node.saved) or self.failed_at is node,
        )

    def lines(self, node) -> list[str]:
        if node.leaf is not None:
            leaf = node.leaf
            grad = "None" if leaf.grad_before is None else shape_text(leaf.grad_before.shape)
            lines = [
                node.name or "leaf (unnamed)",
                f"leaf {shape_text(leaf.shape)} {short(leaf.dtype)}",
                f"requires_grad={leaf.requires_grad} · .grad before: {grad}",
            ]
        else:
            outputs = " · ".join(f"{shape_text(s)} {short(d)}" for s, d in node.outputs)
            lines = [node.op + (f" — {node.name}" if node.name else ""), f"out {outputs}"]
            if node.index == 0:
                lines.append("the loss: backward() starts here")
            if len(node.saved) <= 3:
                lines += [
                    f"saved {s.name} {shape_text(s.shape)} {human_bytes(s.nbytes)}"
                    for s in node.saved
                ]
            else:
                lines.append(f"saved {len(node.saved)} tensors, {human_bytes(node.saved_bytes)}")
        lines += [
            f"⚠ {s.name} changed in place since saved: v{s.saved_version} → v{s.version}"
            for s in node.saved
            if s.changed
        ]
        lines += [f"hook: {hook}" for hook in node.hooks]
        if self.failed_at is node:
            lines.append("✗ backward() failed here")
        return lines

    def hover(self, node, step: int | None) -> list[tuple[int | None, str]]:
        details = [f"{node.op}  (node {node.index}, depth {node.depth})"]
        if node.module:
            details.append(f"created in module {node.module}")
        details += [
            f"saved {s.name}: {shape_text(s.shape)} {short(s.dtype)}, {human_bytes(s.nbytes)}, "
            f"version {s.version}" + (f" (saved at {s.saved_version})" if s.changed else "")
            for s in node.saved
        ]
        hover: list[tuple[int | None, str]] = [(None, "\n".join(details))]
        ran = self.inspection.step(node.index)
        if ran is None:
            return hover
        hover.append((step, "received: " + "; ".join(self.values(g) for g in ran.received)))
        if ran.produced is not None and node.leaf is None:
            hover.append((step, "produced: " + "; ".join(self.values(g) for g in ran.produced)))
        if node.leaf is not None:
            hover.append((step, ".grad now: " + self.values(node.leaf.grad_after)))
        after = (self.inspection.saved_after or {}).get(node.index, [])
        if node.saved and after and all(s.freed for s in after):
            hover.append((step, "its saved tensors were released after it ran (no retain_graph)"))
        return hover

    def arrow(self, edge) -> Arrow:
        view = self.inspection
        step, grad = view.step_of(edge.source), view.sent(edge)
        sent = step is not None and view.step(edge.source).produced is not None
        label = self.summary(grad) if sent else ""
        change = view.hook_change(edge.target) if sent else None
        if change is not None and len(view.edges_into(edge.target)) == 1:
            label += f"\nhook {hook_effect(*change)} → {self.summary(change[1])}"
        source, target = view.nodes[edge.source].title, view.nodes[edge.target].title
        hover = [(step, f"{source} → {target}: {self.values(grad)}")] if sent else []
        bad = grad is not None and _bad(grad, view.norm(grad))
        return Arrow(
            f"e{edge.index}",
            f"n{edge.source}",
            f"n{edge.target}",
            label,
            [step] if sent else [],
            hover,
            bad=bad,
        )

    def captions(self) -> list[str]:
        view = self.inspection
        nodes, steps = view.nodes, view.steps
        start = [f"before backward(): {len(nodes)} nodes, {human_bytes(view.saved_bytes)} saved"]
        start += [
            f"⚠ {node.op} saved {saved.name}, changed in place since: backward() will fail there"
            for node, saved in view.flagged
        ]
        if view.no_grad:
            start.append(
                "gets no gradient: " + ", ".join(f"{n} ({why})" for n, why in view.no_grad.items())
            )
        if steps:
            start.append(f"{len(steps)} steps recorded: press step ▶")
        out = [" · ".join(start)]
        bad = self.first_bad
        for position, step in enumerate(steps, 1):
            node = nodes[step.node]
            received = ", ".join(self.summary(g) for g in step.received)
            text = f"step {position}/{len(steps)}: {node.title} received {received}"
            if step.produced is None:
                text += f" and failed: {view.error}"
            elif node.leaf is not None:
                text += f" → .grad {self.summary(node.leaf.grad_after)}"
            elif step.produced:
                text += " → sent " + ", ".join(self.summary(g) for g in step.produced)
            if bad is not None and position >= bad.step:
                where = "produced by" if bad.produced else "arrived at"
                text += f" · ⚠ first NaN/inf {where} {nodes[bad.node].title} (step {bad.step})"
            out.append(text)
        if view.error and (not steps or steps[-1].produced is not None):
            out[-1] += f" · backward() failed: {view.error}"
        return out

    def group_captions(self, paths: set[str]) -> dict[str, str]:
        view = self.inspection
        modules = dict(view.module.named_modules()) if view.module is not None else {}
        found = {}
        for path in paths:
            module = re.sub(r"#\d+", "", path)  # layer1.0.relu#2: the second call of it
            parts = [f"({type(modules[module]).__name__})"] if module in modules else []
            parts += view.module_hooks.get(module, [])
            found[path] = " · ".join(parts)
        return found
