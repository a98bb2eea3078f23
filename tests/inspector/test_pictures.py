"""What the inspector shows: SVG frames that follow the engine's steps, the PNG/SVG/HTML that
go into a lesson's run, the text walk without Graphviz, module groups that collapse and
open, the step control's buttons, and hooks seen on their edge."""

from __future__ import annotations

import html
import re
import shutil
import xml.etree.ElementTree as ET

import pytest
import torch
from support.ci_skip import skip_unless_ci
from support.engine_log import EngineLog, branching_graph, same
from support.tbutil import read_image_sizes, single_run_dir
from torch import nn

from lab.inspector import InspectorError, draw, inspect, record, show_diagrams
from lab.inspector import drawing as drawing_module
from lab.inspector.view import NO_GRAPHVIZ, StepView

F64 = torch.float64


def needs_graphviz():
    if shutil.which("dot") is None:
        skip_unless_ci("Graphviz's `dot` is not installed (apt-get install graphviz)")


@pytest.fixture
def no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert shutil.which("dot") is None


def classes_in(svg: str) -> dict[str, str]:
    """Element id → its class attribute, for every box (n…, g…) and arrow (e…, a…)."""
    return dict(re.findall(r'<g id="([a-z]\d+)" class="([^"]*)"', svg))


def titles_in(svg: str) -> dict[str, str]:
    return dict(re.findall(r'<g id="(\w+)" class="[^"]*"><title>([^<]*)</title>', svg))


def test_svg_frames_follow_the_engine_step_by_step():
    needs_graphviz()
    x, w, h, loss = branching_graph()
    oracle = EngineLog(loss.grad_fn)
    view = inspect(loss, {"x": x, "w": w}, show=False)
    oracle.close()
    layout = view.diagram().laid_out()
    box_of = {node.fn: f"n{node.index}" for node in view.nodes}
    for step in range(len(oracle.order) + 1):
        classes = classes_in(layout.frame(step))
        current = {key for key, value in classes.items() if " current" in value}
        assert current == ({box_of[oracle.order[step - 1]]} if step else set())
        ran = {box_of[fn] for fn in oracle.order[:step]}
        for edge in view.edges:
            label_shown = "later" not in classes[f"e{edge.index}"].split()
            assert label_shown == (f"n{edge.source}" in ran)
    final = layout.frame(len(oracle.order))
    titles = titles_in(final)
    for edge in view.edges:  # hover: the values that went along the edge
        sent = oracle.produced[view.nodes[edge.source].fn][edge.slot]
        assert f"{sent.flatten()[0].item():.4g}" in titles[f"e{edge.index}"]
    assert titles_in(layout.frame(0))["e0"] == "not computed yet"


def test_the_run_gets_a_png_an_svg_and_an_offline_html_page(runs_dir, capsys):
    needs_graphviz()
    from lab.lessons.harness import open_lesson

    lesson = open_lesson("03_computational_graph", device="cpu")
    x, w, h, loss = branching_graph()
    view = inspect(loss, {"x": x, "w": w}, tag="inspector/branching")
    lesson.done()
    run = single_run_dir(runs_dir, "03_computational_graph")
    (_, width, height), *_ = read_image_sizes(run)["inspector/branching"]
    assert width > 100 and height > 200
    svg = (run / "inspector" / "inspector_branching.svg").read_text(encoding="utf-8")
    ET.fromstring(svg.encode())  # well-formed: opens on its own
    assert len(re.findall(r'class="node ', svg)) == len(view.nodes)
    page = (run / "inspector" / "inspector_branching.html").read_text(encoding="utf-8")
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing loaded from anywhere
    assert "step ▶" in page and page.count('class="node ') == len(view.nodes)
    assert "[picture] inspector/branching" in capsys.readouterr().out


def test_without_graphviz_the_text_walk_stands_in(no_graphviz, capsys):
    x, w, h, loss = branching_graph()
    view = inspect(loss, {"x": x, "w": w})
    printed = capsys.readouterr().out
    assert NO_GRAPHVIZ in printed
    for node in view.nodes:
        assert node.op in printed or (node.name and node.name in printed)
    assert f"step {len(view.steps)}/{len(view.steps)}" in printed
    with pytest.raises(drawing_module.GraphvizMissing, match="apt-get install graphviz"):
        view.png()


def test_the_text_walk_marks_the_step_and_hides_what_is_not_sent_yet():
    x, w, h, loss = branching_graph()
    view = inspect(loss, {"x": x, "w": w}, show=False)
    first = view.text(1).splitlines()
    assert [line for line in first if line.startswith(">>")] == [
        f">> {' · '.join(view.diagram().boxes[0].lines)}"
    ]
    assert "|g|=" in view.text() and "|g|=" not in view.text(0)


def test_module_calls_are_grouped_and_open_with_one_click():
    needs_graphviz()
    from torchvision.models import resnet18

    model = resnet18()
    made_by: dict[object, str] = {}  # the oracle: grad_fns of each module call's output

    def remember(name):
        def hook(module, args, out):
            made_by.setdefault(out.grad_fn, name)  # the first (innermost) call that made it

        return hook

    handles = [m.register_forward_hook(remember(n)) for n, m in model.named_modules() if n]
    with record(model):
        loss = model(torch.randn(2, 3, 32, 32)).sum()
    for handle in handles:
        handle.remove()
    view = inspect(loss, model, backward=False, show=False)
    nodes = {node.fn: node for node in view.nodes}
    for fn, name in made_by.items():
        if fn in nodes and name.endswith(("conv1", "conv2", "fc", "bn1")):
            assert nodes[fn].module is not None and nodes[fn].module.startswith(name)
    # BasicBlock calls self.relu twice: two calls, two groups, no cycle when both are closed
    assert {"layer1.0.relu", "layer1.0.relu#2"} <= set(view.diagram().groups)
    diagram = view.diagram()
    opened = drawing_module.default_open(diagram)
    shown = drawing_module.visible(diagram, opened)
    assert len(shown.boxes) <= drawing_module.COLLAPSE_OVER < len(view.nodes)
    closed = [box for box in shown.boxes if box.kind == "group"]
    counted = sum(int(box.lines[1].split()[0]) for box in closed)
    assert counted + len(shown.boxes) - len(closed) == len(view.nodes)  # each node once
    widget = StepView(diagram)
    biggest = max(closed, key=lambda box: int(box.lines[1].split()[0]))
    toggle = next(t for t in widget.groups.children if t.description == f"▸ {biggest.path}")
    toggle.value = True  # one click
    members = int(biggest.lines[1].split()[0])
    assert biggest.path in widget.opened
    assert len(widget.shown.boxes) >= len(shown.boxes) - 1 + min(members, 2)
    assert f"cluster_{biggest.path}" in widget.layout.svg  # drawn open, as a frame
    toggle = next(t for t in widget.groups.children if t.description == f"▾ {biggest.path}")
    toggle.value = False  # and closed again
    assert len(widget.shown.boxes) == len(shown.boxes)


def test_the_step_control_moves_through_the_recorded_steps():
    needs_graphviz()
    x, w, h, loss = branching_graph()
    view = inspect(loss, {"x": x, "w": w}, show=False)
    widget = StepView(view.diagram())
    assert widget.slider.value == 0 and "before backward()" in widget.caption.value
    for clicks in range(1, 4):
        widget.forward.click()
        node = view.nodes[view.order[clicks - 1]]
        assert widget.slider.value == clicks
        assert f"step {clicks}/{len(view.steps)}: {node.title}" in widget.caption.value
        classes = classes_in(widget.picture.value)
        assert [k for k, v in classes.items() if " current" in v] == [f"n{node.index}"]
    widget.back.click()
    assert widget.slider.value == 2
    for _ in range(len(view.steps) + 2):
        widget.forward.click()
    assert widget.slider.value == len(view.steps)  # stops at the end


def test_a_reversal_hook_is_seen_on_its_edge():
    torch.manual_seed(0)
    features, head = nn.Linear(3, 4).double(), nn.Linear(4, 1).double()
    x = torch.randn(5, 3, dtype=F64)
    out = features(x)
    branch = out.view_as(out)
    branch.register_hook(lambda g: -g)
    loss = head(branch).pow(2).mean()
    view = inspect(loss, features, tensors={"branch": branch}, show=False)
    out2 = features(x)
    (expected,) = torch.autograd.grad(head(out2).pow(2).mean(), out2)  # no hook
    sent, received = view.hook_change("branch")
    assert same(sent, expected) and same(received, -expected)
    node = view.node("branch")
    assert any("tensor hook on branch" in hook for hook in node.hooks)
    (edge,) = view.edges_into(node.index)
    label = next(a.label for a in view.diagram().arrows if a.id == f"e{edge.index}")
    assert "hook ×−1" in label


def test_retain_graph_keeps_the_saved_tensors_the_second_backward_needs():
    for retain in (False, True):
        x = torch.tensor([1.0, -2.0, 3.0], dtype=F64, requires_grad=True)
        loss = (x.exp() * x).sum()
        view = inspect(loss, {"x": x}, retain_graph=retain, show=False)
        freed = [s.freed for saved in view.saved_after.values() for s in saved]
        assert freed and all(freed) != retain and not any(freed) == retain
        try:
            loss.backward()
            second = None
        except RuntimeError as exc:
            second = str(exc)
        assert (second is None) == retain


def test_draw_shows_any_graph_of_nodes_and_edges():
    needs_graphviz()
    values = {"a": "a = 2.0", "b": "b = -3.0", "c": "c = a·b = -6.0"}
    diagram = draw(values, [("c", "a", "∂c/∂a = -3"), ("c", "b")], title="my engine")
    svg = html.unescape(diagram.svg())
    assert svg.count('class="node ') == 3 and svg.count('class="edge') == 2
    assert "∂c/∂a = -3" in svg and "my engine" in svg
    assert "c = a·b = -6.0" in diagram.text()
    with pytest.raises(ValueError, match="names 'd', which is not in nodes"):
        draw(values, [("c", "d")])


def test_bad_input_gets_one_line_that_says_what_to_do():
    w = torch.ones(2, requires_grad=True)
    with pytest.raises(InspectorError, match="no grad_fn"):
        inspect(torch.ones(2), show=False)
    with pytest.raises(InspectorError, match="needs a tensor, not a float"):
        inspect(1.0, show=False)
    with pytest.raises(InspectorError, match="pass a module .* or a dict"):
        inspect((w * 2).sum(), params=[w], show=False)
    with pytest.raises(InspectorError, match=r"params\['w'\] is not a tensor"):
        inspect((w * 2).sum(), params={"w": 1.0}, show=False)


def test_your_engine_beside_torch_goes_into_the_run_side_by_side(runs_dir, capsys):
    needs_graphviz()
    from lab.lessons.harness import open_lesson

    lesson = open_lesson("03_computational_graph", device="cpu")
    a = torch.tensor(2.0, dtype=F64, requires_grad=True)
    b = torch.tensor(-3.0, dtype=F64, requires_grad=True)
    mine = draw({"c": "c = a·b", "a": "a = 2", "b": "b = -3"}, [("c", "a"), ("c", "b")])
    torchs = inspect(a * b, {"a": a, "b": b}, show=False).diagram()
    show_diagrams(mine, torchs, tag="engines")
    lesson.done()
    images = read_image_sizes(single_run_dir(runs_dir, "03_computational_graph"))
    assert set(images) == {"engines/0", "engines/1"}
    assert "[picture] engines/1" in capsys.readouterr().out
