"""Pictures of a graph that a backward pass steps through: boxes, arrows, module groups.

Pure Python (no torch): a :class:`Diagram` is boxes and arrows, each with the step at which
it ran, and hover text; Graphviz's ``dot`` lays it out once as SVG, and a *frame* (the state
after step k) only swaps CSS classes and ``<title>`` texts in that SVG, so stepping never
lays out again. Without ``dot``, :func:`text_walk` tells the same story as text. Groups
(dotted module paths, ``layer1.0.conv1``) can be collapsed into one box each.
"""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

COLLAPSE_OVER = 80  # boxes on screen before module groups start closed
DOT_TIMEOUT_S = 600
PNG_INCHES = 30  # a bigger picture is scaled down to this (2880 pixels at 96 dpi)


class GraphvizMissing(RuntimeError):
    """Graphviz's ``dot`` program is not on PATH."""


@dataclass
class Box:
    """One box of the picture: a backward node, a leaf, or a collapsed module group."""

    id: str
    lines: list[str]
    kind: str = "op"  # op | leaf | root | hook | group: shape and colour
    group: str | None = None  # the dotted module path that created it
    steps: list[int] = field(default_factory=list)  # the steps at which it (a member) ran
    hover: list[tuple[int | None, str]] = field(default_factory=list)  # (shown from step, text)
    bad_at: int | None = None  # the step at which it produced NaN/inf
    first_bad: bool = False  # … and it was the first to
    warn: bool = False  # a saved tensor changed in place, or backward failed here
    path: str | None = None  # a collapsed group's own path


@dataclass
class Arrow:
    """A gradient's way from ``source`` (nearer the loss) to ``target``."""

    id: str
    source: str
    target: str
    label: str = ""
    steps: list[int] = field(default_factory=list)  # the step(s) that sent it
    hover: list[tuple[int | None, str]] = field(default_factory=list)
    bad: bool = False


@dataclass
class Diagram:
    boxes: list[Box]
    arrows: list[Arrow]
    title: str = ""
    groups: dict[str, str] = field(default_factory=dict)  # path → caption (class, hooks)
    captions: list[str] = field(default_factory=lambda: [""])  # per step 0 … n

    @property
    def steps(self) -> int:
        return len(self.captions) - 1

    def laid_out(self, opened: set[str] | None = None) -> Layout:
        """Laid out by Graphviz, with ``opened`` groups open (default: as many as fit)."""
        return Layout.of(visible(self, default_open(self) if opened is None else opened))

    def svg(self, step: int | None = None, opened: set[str] | None = None) -> str:
        """An SVG file's text: the picture after ``step`` steps (default: the end)."""
        return self.laid_out(opened).standalone_svg(self.steps if step is None else step)

    def png(self, step: int | None = None, opened: set[str] | None = None) -> bytes:
        """A PNG of the picture after ``step`` steps (default: the end), its colours baked in
        (at most ``PNG_INCHES`` wide or high: cairo takes seconds for a huge bitmap)."""
        shown = visible(self, default_open(self) if opened is None else opened)
        source = dot_source(shown, self.steps if step is None else step)
        return render(source, "png", f"-Gsize={PNG_INCHES},{PNG_INCHES}")

    def text(self, step: int | None = None) -> str:
        return text_walk(self, step)

    def html(self, step: int = 0, opened: set[str] | None = None) -> str:
        """A self-contained HTML page with the step control (nothing loaded from anywhere)."""
        return html_page(self.laid_out(opened), step)


def draw(
    nodes: Mapping[object, str | Iterable[str]],
    edges: Iterable[tuple],
    *,
    title: str = "",
    groups: Mapping[object, str] | None = None,
) -> Diagram:
    """Any graph, e.g. your own engine's: ``nodes`` maps an id to its text (a string or
    lines), ``edges`` are ``(from, to)`` or ``(from, to, label)``; ``groups`` maps a node id
    to a dotted group path. The picture draws arrows from → to."""
    ids = {key: f"n{index}" for index, key in enumerate(nodes)}
    boxes = [
        Box(
            ids[key],
            [text] if isinstance(text, str) else list(text),
            group=(groups or {}).get(key),
        )
        for key, text in nodes.items()
    ]
    arrows = []
    for index, edge in enumerate(edges):
        source, target, *label = edge
        for end in (source, target):
            if end not in ids:
                raise ValueError(f"edge {edge!r} names {end!r}, which is not in nodes")
        arrows.append(Arrow(f"e{index}", ids[source], ids[target], str(label[0]) if label else ""))
    groups_seen = {box.group for box in boxes if box.group}
    return Diagram(boxes, arrows, title, {path: "" for path in _with_prefixes(groups_seen)})


def _with_prefixes(paths: Iterable[str]) -> set[str]:
    found = set()
    for path in paths:
        parts = path.split(".")
        found.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return found


# --- module groups: which boxes are on screen ---------------------------------------------


def _unit(group: str | None, opened: set[str]) -> str | None:
    """The closed group a box of ``group`` disappears into, or None when all are open."""
    if not group:
        return None
    parts = group.split(".")
    for i in range(1, len(parts) + 1):
        prefix = ".".join(parts[:i])
        if prefix not in opened:
            return prefix
    return None


def default_open(diagram: Diagram, limit: int = COLLAPSE_OVER) -> set[str]:
    """Open the groups level by level (all of ``layer1``, ``layer2`` … then all blocks
    inside them …) while the picture keeps at most ``limit`` boxes."""
    opened: set[str] = set()
    depth = 0
    while True:
        level = {path for path in diagram.groups if path.count(".") == depth}
        if not level or len(visible(diagram, opened | level).boxes) > limit:
            return opened
        opened |= level
        depth += 1


def visible(diagram: Diagram, opened: set[str]) -> Diagram:
    """The diagram with every closed group drawn as one box; arrows inside it disappear,
    arrows between the same two boxes merge."""
    if not diagram.groups:
        return diagram
    boxes: list[Box] = []
    closed: dict[str, Box] = {}
    members: dict[str, list[Box]] = {}
    where: dict[str, str] = {}
    for box in diagram.boxes:
        path = _unit(box.group, opened)
        if path is None:
            boxes.append(box)
            where[box.id] = box.id
            continue
        if path not in closed:
            parent = path.rpartition(".")[0] or None
            closed[path] = Box(f"g{len(closed)}", [path], "group", parent, path=path)
            boxes.append(closed[path])
            members[path] = []
        members[path].append(box)
        where[box.id] = closed[path].id
    for path, box in closed.items():
        _fill_group(box, path, members[path], diagram.groups)
    arrows: dict[tuple[str, str], list[Arrow]] = {}
    for arrow in diagram.arrows:
        ends = where[arrow.source], where[arrow.target]
        if ends[0] != ends[1]:
            arrows.setdefault(ends, []).append(arrow)
    merged = [_merge(f"a{index}", ends, same) for index, (ends, same) in enumerate(arrows.items())]
    return replace(diagram, boxes=boxes, arrows=merged)


def _fill_group(box: Box, path: str, inside: list[Box], captions: Mapping[str, str]) -> None:
    box.lines = [f"▸ {path}" + (f"  {captions[path]}" if captions.get(path) else "")]
    box.lines.append(f"{len(inside)} node{'s' if len(inside) > 1 else ''}, closed: open it to see")
    box.steps = sorted(step for member in inside for step in member.steps)
    box.hover = [(None, "\n".join(" · ".join(m.lines[:2]) for m in inside[:40]))]
    bad = [m for m in inside if m.bad_at is not None]
    if bad:
        box.bad_at = min(m.bad_at for m in bad)
        box.first_bad = any(m.first_bad for m in bad)
    box.warn = any(m.warn for m in inside)


def _merge(new_id: str, ends: tuple[str, str], same: list[Arrow]) -> Arrow:
    if len(same) == 1:
        return replace(same[0], id=new_id, source=ends[0], target=ends[1])
    return Arrow(
        new_id,
        *ends,
        label=f"{len(same)} gradients",
        steps=sorted(step for arrow in same for step in arrow.steps),
        hover=[entry for arrow in same for entry in arrow.hover],
        bad=any(arrow.bad for arrow in same),
    )


# --- Graphviz ------------------------------------------------------------------------------


def graphviz_available() -> bool:
    return shutil.which("dot") is not None


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"' + escaped + '"'


def _label(lines: list[str]) -> str:
    # \l: left-justified lines; the first (the op) centred on top
    escaped = [line.replace("\\", "\\\\").replace('"', '\\"') for line in lines]
    return '"' + escaped[0] + "\\n" + "".join(line + "\\l" for line in escaped[1:]) + '"'


SHAPES = {
    "op": 'shape=box style="rounded,filled"',
    "root": 'shape=box style="rounded,filled,bold"',
    "leaf": 'shape=box style="filled"',
    "hook": 'shape=box style="rounded,filled,dashed"',
    "group": 'shape=box3d style="filled"',
}
# One colour table for the SVG's CSS and the PNG's dot attributes: (fill, stroke, text)
COLOURS = {
    "pending": ("#ffffff", "#9e9e9e", "#424242"),
    "leaf": ("#e3f2fd", "#1565c0", "#0d47a1"),
    "group": ("#f5f5f5", "#616161", "#212121"),
    "partial": ("#e8f5e9", "#7cb342", "#1b5e20"),
    "done": ("#c8e6c9", "#388e3c", "#1b5e20"),
    "current": ("#ffd54f", "#e65100", "#000000"),
    "warn": (None, "#c62828", None),
    "bad": ("#ffcdd2", "#c62828", "#b71c1c"),
}


def dot_source(diagram: Diagram, step: int | None = None) -> str:
    """The diagram in Graphviz's language. ``step``: colours baked in for that step, and its
    caption under the title (a PNG); None: neutral, the frames colour it by CSS classes."""
    title = diagram.title
    if step is not None and diagram.captions[min(step, diagram.steps)]:
        caption = textwrap.wrap(diagram.captions[min(step, diagram.steps)], 110)
        title = "\n".join([title, *caption] if title else caption)
    out = [
        "digraph inspector {",
        '  graph [rankdir=TB nodesep=0.25 ranksep=0.35 fontname="Helvetica" fontsize=10'
        + (f" label={_quote(title)} labelloc=t" if title else "")
        + "]",
        '  node [fontname="Helvetica" fontsize=9 margin="0.08,0.03" height=0.3]',
        '  edge [fontname="Helvetica" fontsize=8 arrowsize=0.6]',
    ]
    inside: dict[str | None, list[Box]] = {}
    for box in diagram.boxes:
        inside.setdefault(box.group, []).append(box)
    children: dict[str | None, list[str]] = {}  # the open groups, nested: a frame each
    for path in sorted(_with_prefixes(p for p in inside if p is not None)):
        children.setdefault(path.rpartition(".")[0] or None, []).append(path)

    def emit_group(path: str | None, indent: str) -> None:
        for box in inside.get(path, []):
            attrs = f"id={_quote(box.id)} class={_quote(box.kind)} label={_label(box.lines)}"
            attrs += " " + SHAPES.get(box.kind, SHAPES["op"])
            attrs += " " + (_baked_box(box, step) if step is not None else _base_colours(box))
            out.append(f"{indent}{box.id} [{attrs}]")
        for child in children.get(path, []):
            caption = child + (f"  {diagram.groups[child]}" if diagram.groups.get(child) else "")
            out.append(f"{indent}subgraph {_quote('cluster_' + child)} {{")
            out.append(f'{indent}  label={_quote(caption)} style="rounded,dashed" color="#90a4ae"')
            out.append(f'{indent}  fontsize=9 fontcolor="#455a64"')
            emit_group(child, indent + "  ")
            out.append(f"{indent}}}")

    emit_group(None, "  ")
    for arrow in diagram.arrows:
        attrs = f"id={_quote(arrow.id)} label={_quote(arrow.label)}"
        if step is not None:
            attrs += " " + _baked_arrow(arrow, step)
        out.append(f"  {arrow.source} -> {arrow.target} [{attrs}]")
    out.append("}")
    return "\n".join(out)


def box_state(box: Box, step: int) -> list[str]:
    """CSS classes of a box after ``step`` steps: pending/partial/done/current, bad, first-bad."""
    ran = [s for s in box.steps if s <= step]
    if step in box.steps:
        state = ["current"]
    elif box.steps and len(ran) == len(box.steps):
        state = ["done"]
    else:
        state = ["partial"] if ran else ["pending"]
    if box.bad_at is not None and box.bad_at <= step:
        state.append("first-bad" if box.first_bad else "bad")
    if box.warn:
        state.append("warn")
    return state


def arrow_state(arrow: Arrow, step: int) -> list[str]:
    """``later`` (not sent yet: its label hidden), ``sent``, ``just`` (sent at this step), bad."""
    if not arrow.steps or min(arrow.steps) > step:
        return ["later"]
    state = ["just" if step in arrow.steps else "sent"]
    if arrow.bad:
        state.append("bad")
    return state


def _colour(state: list[str], kind: str) -> tuple[str, str, str]:
    fill, stroke, text = COLOURS[kind if kind in ("leaf", "group") else "pending"]
    for name in state:
        f, s, t = COLOURS.get(name.replace("first-", ""), (None, None, None))
        if name != "pending":
            fill, stroke, text = f or fill, s or stroke, t or text
    return fill, stroke, text


def _base_colours(box: Box) -> str:
    fill, stroke, text = _colour([], box.kind)
    return f'fillcolor="{fill}" color="{stroke}" fontcolor="{text}"'


def _baked_box(box: Box, step: int) -> str:
    state = box_state(box, step)
    fill, stroke, text = _colour(state, box.kind)
    width = 3 if "current" in state or "first-bad" in state else 1
    return f'fillcolor="{fill}" color="{stroke}" fontcolor="{text}" penwidth={width}'


def _baked_arrow(arrow: Arrow, step: int) -> str:
    state = arrow_state(arrow, step)
    if "later" in state:
        return 'color="#cfd8dc" fontcolor="transparent"'
    colour = "#c62828" if "bad" in state else "#e65100" if "just" in state else "#37474f"
    return f'color="{colour}" fontcolor="{colour}" penwidth={2 if "just" in state else 1}'


def render(source: str, fmt: str, *options: str) -> bytes:
    """``dot -T<fmt>`` of ``source``; :class:`GraphvizMissing` without Graphviz."""
    if not graphviz_available():
        raise GraphvizMissing(
            "Graphviz's `dot` is not installed (Debian: apt-get install graphviz)"
        )
    done = subprocess.run(
        ["dot", f"-T{fmt}", *options],
        input=source.encode(),
        capture_output=True,
        timeout=DOT_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"dot -T{fmt} failed: {done.stderr.decode(errors='replace')[:500]}")
    return done.stdout


# --- frames: the laid-out SVG at step k ------------------------------------------------------

CSS = """
.lab-inspector svg text { font-family: Helvetica, Arial, sans-serif; }
.lab-inspector g.edge.later path { stroke: #cfd8dc; }
.lab-inspector g.edge.later polygon { stroke: #cfd8dc; fill: #cfd8dc; }
.lab-inspector g.edge.later text { visibility: hidden; }
.lab-inspector g.edge.sent path { stroke: #37474f; }
.lab-inspector g.edge.just path { stroke: #e65100; stroke-width: 2.5; }
.lab-inspector g.edge.just polygon { stroke: #e65100; fill: #e65100; }
.lab-inspector g.edge.just text { fill: #e65100; font-weight: bold; }
.lab-inspector g.edge.bad path { stroke: #c62828; }
.lab-inspector g.edge.bad polygon { stroke: #c62828; fill: #c62828; }
.lab-inspector g.edge.bad text { fill: #c62828; font-weight: bold; }
"""


def _css_boxes() -> str:
    rules = []
    for name in ("partial", "done", "current", "bad", "first-bad", "warn"):
        fill, stroke, text = COLOURS[name.replace("first-", "")]
        shape = f".lab-inspector g.node.{name} polygon, .lab-inspector g.node.{name} path"
        body = (f"fill: {fill}; " if fill else "") + f"stroke: {stroke};"
        if name in ("current", "first-bad"):
            body += " stroke-width: 3;"
        if name == "warn":
            body += " stroke-dasharray: 4 2; stroke-width: 2;"
        rules.append(f"{shape} {{ {body} }}")
        if text:
            rules.append(f".lab-inspector g.node.{name} text {{ fill: {text}; }}")
    return "\n".join(rules)


STYLE = CSS + _css_boxes()
_ELEMENT = re.compile(r'<g id="([neag]\d+)" class="([^"]*)">\s*<title>[^<]*</title>')


def hover_text(entries: list[tuple[int | None, str]], step: int) -> str:
    shown = [text for since, text in entries if since is None or since <= step]
    return "\n".join(shown) if shown else "not computed yet"


@dataclass
class Layout:
    """A diagram laid out once (``dot -Tsvg``): :meth:`frame` is the picture after a step."""

    diagram: Diagram
    svg: str

    @classmethod
    def of(cls, diagram: Diagram) -> Layout:
        svg = render(dot_source(diagram), "svg").decode()
        svg = svg[svg.index("<svg") :]  # the XML prologue and DOCTYPE would not nest in HTML
        return cls(diagram, svg)

    def frame(self, step: int) -> str:
        """The SVG after ``step`` steps: every box and arrow gets its state's CSS class and
        its hover text (the gradients known by then) as ``<title>``."""
        boxes = {box.id: box for box in self.diagram.boxes}
        arrows = {arrow.id: arrow for arrow in self.diagram.arrows}

        def restyle(match: re.Match) -> str:
            element, classes = match.group(1), match.group(2)
            if element in boxes:
                box = boxes[element]
                state, hover = box_state(box, step), hover_text(box.hover, step)
            else:
                arrow = arrows[element]
                state, hover = arrow_state(arrow, step), hover_text(arrow.hover, step)
            return (
                f'<g id="{element}" class="{classes} {" ".join(state)}">'
                f"<title>{html.escape(hover)}</title>"
            )

        return _ELEMENT.sub(restyle, self.svg)

    def standalone_svg(self, step: int) -> str:
        """An SVG file of the frame, its style inside it."""
        body = self.frame(step)
        head, _, rest = body.partition(">")
        return (
            (
                '<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
                f'{head} class="lab-inspector">\n<style>{STYLE}</style>{rest}'
            )
            .replace(".lab-inspector svg text", "svg.lab-inspector text")
            .replace(".lab-inspector ", "svg.lab-inspector ")
        )


# --- text ----------------------------------------------------------------------------------


def text_walk(diagram: Diagram, step: int | None = None) -> str:
    """The diagram as text, a box per line (its arrows under it): what Graphviz would draw.
    ``step``: marks the state after that step (default: the end)."""
    step = diagram.steps if step is None else step
    out = [diagram.title] if diagram.title else []
    out.append(diagram.captions[min(step, diagram.steps)])
    leaving: dict[str, list[Arrow]] = {}
    for arrow in diagram.arrows:
        leaving.setdefault(arrow.source, []).append(arrow)
    names = {box.id: box.lines[0] for box in diagram.boxes}
    for box in diagram.boxes:
        state = box_state(box, step)
        mark = ">>" if "current" in state else "  "
        flags = [s for s in state if s in ("bad", "first-bad", "warn")]
        where = f" [{box.group}]" if box.group else ""
        out.append(
            f"{mark} {' · '.join(box.lines)}{where}" + (f"  ({', '.join(flags)})" if flags else "")
        )
        for arrow in leaving.get(box.id, []):
            sent = "later" not in arrow_state(arrow, step)
            label = arrow.label if sent and arrow.label else "…" if not sent else ""
            out.append(f"     → {names[arrow.target]}: {label}".rstrip(": "))
    return "\n".join(out)


# --- a self-contained HTML page --------------------------------------------------------------

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body {{ font-family: Helvetica, Arial, sans-serif; margin: 1em; }}
#caption {{ margin: .5em 0; min-height: 1.4em; }} {style}</style></head>
<body><h3>{title}</h3>
<div><button id="back">◀ back</button> <button id="forward">step ▶</button>
<input id="step" type="range" min="0" max="{steps}" value="{start}">
<span id="at"></span></div>
<div id="caption"></div>
<div class="lab-inspector">{svg}</div>
<script>
const DATA = {data};
{script}
</script></body></html>
"""

SCRIPT = """
function state(steps, step, kind) {
  const ran = steps.filter(s => s <= step);
  if (kind === "arrow") {
    if (!steps.length || Math.min(...steps) > step) return ["later"];
    return [steps.includes(step) ? "just" : "sent"];
  }
  if (steps.includes(step)) return ["current"];
  if (steps.length && ran.length === steps.length) return ["done"];
  return [ran.length ? "partial" : "pending"];
}
function hover(entries, step) {
  const shown = entries.filter(e => e[0] === null || e[0] <= step).map(e => e[1]);
  return shown.length ? shown.join("\\n") : "not computed yet";
}
function show(step) {
  for (const [id, item] of Object.entries(DATA.items)) {
    const el = document.getElementById(id);
    if (!el) continue;
    const classes = state(item.steps, step, item.kind);
    if (item.kind === "arrow" && item.bad && classes[0] !== "later") classes.push("bad");
    if (item.kind !== "arrow" && item.bad_at !== null && item.bad_at <= step)
      classes.push(item.first_bad ? "first-bad" : "bad");
    if (item.warn) classes.push("warn");
    el.setAttribute("class", item.base + " " + classes.join(" "));
    el.querySelector("title").textContent = hover(item.hover, step);
  }
  document.getElementById("step").value = step;
  document.getElementById("at").textContent = "step " + step + "/" + (DATA.captions.length - 1);
  document.getElementById("caption").textContent = DATA.captions[step];
}
let current = Number(document.getElementById("step").value);
const go = s => { current = Math.max(0, Math.min(DATA.captions.length - 1, s)); show(current); };
document.getElementById("back").onclick = () => go(current - 1);
document.getElementById("forward").onclick = () => go(current + 1);
document.getElementById("step").oninput = e => go(Number(e.target.value));
go(current);
"""


def html_page(layout: Layout, step: int = 0) -> str:
    """One HTML file, nothing loaded from anywhere: the picture and its step control."""
    items = {}
    for box in layout.diagram.boxes:
        items[box.id] = {
            "kind": "box",
            "base": f"node {box.kind}",
            "steps": box.steps,
            "hover": box.hover,
            "bad_at": box.bad_at,
            "first_bad": box.first_bad,
            "warn": box.warn,
        }
    for arrow in layout.diagram.arrows:
        items[arrow.id] = {
            "kind": "arrow",
            "base": "edge",
            "steps": arrow.steps,
            "hover": arrow.hover,
            "bad": arrow.bad,
        }
    data = {"items": items, "captions": layout.diagram.captions}
    return PAGE.format(
        title=html.escape(layout.diagram.title or "backward pass"),
        style=STYLE,
        steps=layout.diagram.steps,
        start=step,
        svg=layout.frame(step),
        data=json.dumps(data).replace("</", "<\\/"),
        script=SCRIPT,
    )
