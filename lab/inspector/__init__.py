"""Step through a backward pass: the graph autograd built, what each node saved, the order
the engine runs the nodes in, the gradient on every edge, where a NaN starts.

In any notebook cell (or a lesson)::

    from lab.inspector import inspect, record

    with record(model):                 # optional: groups the nodes by the module that made them
        loss = loss_fn(model(x), y)
    view = inspect(loss, params=model)  # or params={"w": w, "b": b}; tensors={"h": h} names more

``inspect`` walks ``loss.grad_fn``, runs ``loss.backward()`` with the engine's own node hooks
recording every step, and shows a step control (◀ back / step ▶): the current node
highlighted, the gradients computed so far on their edges (norm and shape; hover for values),
NaN/inf in red. In a lesson it also puts the final picture into the run (TensorBoard
*Images*; SVG and HTML files in ``<run>/inspector/``); without Graphviz it prints the text
walk. ``backward=False`` only looks (nothing runs); ``show=False`` only returns the
:class:`Inspection`, whose answers a lesson checks:

- saved bytes per node: ``{n.op: n.saved_bytes for n in view.nodes}``, ``view.saved_bytes``,
  ``n.saved`` (name, shape, dtype, nbytes, version; ``freed`` after backward in
  ``view.saved_after``);
- a tensor changed in place since it was saved, before backward() fails on it:
  ``view.flagged`` → [(node, saved)]; after a run, ``view.error`` and ``view.failed_at``;
- the first NaN: ``view.first_nonfinite`` → step, node (``view.nodes[bad.node].op``), and
  whether the node produced it or it arrived (a hook, the seed gradient);
- the order and the gradients: ``view.order``, ``view.steps`` (received, produced),
  ``view.sent(edge)``, ``view.arrivals("w")`` (a leaf used twice: two, summing to .grad),
  ``view.hook_change(node)`` (what a tensor hook did on the way), ``view.no_grad``
  (parameters that get no gradient, and why);
- pictures: ``view.svg()``, ``view.png()``, ``view.text()``, ``view.save_html(path)``.

Your own engine's graph beside torch's (a scalar ``Value`` with ``_prev`` and ``_op``)::

    from lab.inspector import draw, show_diagrams
    mine = draw({id(v): f"{v._op or 'leaf'} data={v.data:.3f} grad={v.grad:.3f}" for v in values},
                [(id(v), id(child)) for v in values for child in v._prev])
    show_diagrams(mine, inspect(loss, show=False).diagram())  # side by side, or .svg()/.text()
"""

from .core import Inspection, InspectorError, inspect, record
from .drawing import Diagram, draw
from .view import show_diagrams

__all__ = ["Diagram", "Inspection", "InspectorError", "draw", "inspect", "record", "show_diagrams"]
