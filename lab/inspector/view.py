"""The step control in a notebook (ipywidgets, all local: the lab runs offline), and where
the picture goes otherwise: the open lesson's run (TensorBoard *Images*, plus the SVG and a
self-contained HTML file beside it) or, without Graphviz, the text walk."""

from __future__ import annotations

import html
import re

from .drawing import (
    STYLE,
    Diagram,
    Layout,
    default_open,
    graphviz_available,
    html_page,
    text_walk,
    visible,
)

NO_GRAPHVIZ = "Graphviz's `dot` is not installed (Debian: apt-get install graphviz)"


class StepView:
    """Buttons and a slider over the recorded steps; one toggle per module group (one click
    opens or closes it, which lays the picture out again)."""

    def __init__(self, diagram: Diagram, opened: set[str] | None = None) -> None:
        import ipywidgets as w

        self.diagram = diagram
        self.opened = default_open(diagram) if opened is None else set(opened)
        self.slider = w.IntSlider(value=0, min=0, max=diagram.steps, description="step")
        self.back = w.Button(description="◀ back", tooltip="the step before")
        self.forward = w.Button(description="step ▶", tooltip="the engine's next step")
        self.caption = w.HTML()
        self.groups = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.picture = w.HTML()
        self.back.on_click(lambda _: self.go(self.slider.value - 1))
        self.forward.on_click(lambda _: self.go(self.slider.value + 1))
        self.slider.observe(lambda _: self.redraw(), names="value")
        self.widget = w.VBox(
            [
                w.HBox([self.back, self.forward, self.slider]),
                self.caption,
                self.groups,
                self.picture,
            ]
        )
        self.widget.add_class("lab-inspector-view")
        self.relayout()

    def go(self, step: int) -> None:
        self.slider.value = max(0, min(self.diagram.steps, step))

    def relayout(self) -> None:
        import ipywidgets as w

        self.shown = visible(self.diagram, self.opened)
        self.layout = Layout.of(self.shown) if graphviz_available() else None
        toggles = []
        for path in sorted(self._toggleable()):
            is_open = path in self.opened
            toggle = w.ToggleButton(
                value=is_open,
                description=("▾ " if is_open else "▸ ") + path,
                tooltip=("close " if is_open else "open ") + path,
                layout=w.Layout(width="auto"),
            )
            toggle.observe(lambda change, path=path: self.toggle(path, change["new"]), "value")
            toggles.append(toggle)
        self.groups.children = toggles
        self.redraw()

    def _toggleable(self) -> set[str]:
        return {box.path for box in self.shown.boxes if box.path} | self.opened

    def toggle(self, path: str, open_it: bool) -> None:
        if open_it:
            self.opened.add(path)
        else:
            self.opened = {p for p in self.opened if p != path and not p.startswith(path + ".")}
        self.relayout()

    def redraw(self) -> None:
        step = self.slider.value
        self.caption.value = f"<b>{html.escape(self.diagram.captions[step])}</b>"
        if self.layout is None:
            self.picture.value = (
                f"<p>{NO_GRAPHVIZ}; the graph as text:</p><pre>"
                + html.escape(text_walk(self.shown, step))
                + "</pre>"
            )
            return
        self.picture.value = (
            '<div class="lab-inspector" style="overflow:auto; max-height:760px">'
            f"<style>{STYLE}</style>{self.layout.frame(step)}</div>"
        )


def show(inspection, tag: str) -> None:
    """In a notebook the step control; in the open lesson's run the final picture (PNG in
    TensorBoard, SVG and HTML files in ``<run>/inspector/``); otherwise, or without
    Graphviz, the text walk."""
    from lab.lessons import harness

    notebook = harness.in_notebook()
    run = harness.current()
    logged = run is not None and not run.closed and graphviz_available()
    diagram = inspection.diagram()
    view = StepView(diagram) if notebook else None
    if not logged:
        if notebook:
            from IPython.display import display

            display(view.widget)
        else:
            print(NO_GRAPHVIZ + "; " if not graphviz_available() else "", end="")
            print("the backward graph as text:")
            print(text_walk(diagram))
        return
    opened = view.opened if view else default_open(diagram)
    layout = view.layout if view else Layout.of(visible(diagram, opened))
    harness.show_image(diagram.png(opened=opened), tag, shown=view and (lambda: view.widget))
    folder = run.log_dir / "inspector"
    name = re.sub(r"[^\w.-]+", "_", tag)
    from lab.files import atomic_write

    atomic_write(folder / f"{name}.svg", layout.standalone_svg(diagram.steps).encode())
    atomic_write(folder / f"{name}.html", html_page(layout).encode())
    if not notebook:
        print(f"  [inspector] {tag}: {name}.svg and {name}.html in {folder}")


def show_diagrams(*diagrams: Diagram, tag: str = "graphs") -> None:
    """Several pictures side by side (your engine's graph beside torch's): step controls in a
    notebook, each picture in the open lesson's run as ``tag/<i>``, text without Graphviz."""
    from lab.lessons import harness

    if harness.in_notebook():
        import ipywidgets as w
        from IPython.display import display

        views = [StepView(diagram) for diagram in diagrams]
        display(w.HBox([view.widget for view in views]))
    if not graphviz_available():
        if not harness.in_notebook():
            print(f"{NO_GRAPHVIZ}; the graphs as text:")
            print("\n\n".join(diagram.text() for diagram in diagrams))
        return
    for index, diagram in enumerate(diagrams):
        shown = (lambda: None) if harness.in_notebook() else None
        harness.show_image(diagram.png(), f"{tag}/{index}", shown=shown)
