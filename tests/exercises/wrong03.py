"""Typical wrong answers to 03's exercises, and what the check must say about each."""

WRONG = {
    "03.1": [
        (
            """
def graph_ops(t):
    names, node = set(), t.grad_fn
    while node is not None:
        names.add(type(node).__name__)
        node = node.next_functions[0][0] if node.next_functions else None
    return names
""",
            "missing MulBackward0, SinBackward0 for (a.exp() + b.sin() * c).sum(), a and b "
            "requiring grad, c not: follow every entry of next_functions, not only the first",
        ),
        (
            """
def graph_ops(t):
    names, todo = set(), [t.grad_fn]
    while todo:
        node = todo.pop()
        names.add(node.name())
        todo.extend(child for child, _ in node.next_functions)
    return names
""",
            "next_functions holds (None, 0) for inputs that need no gradient: skip those",
        ),
        (
            """
def graph_ops(t):
    return {t.grad_fn.name()}
""",
            "missing AccumulateGrad, AddBackward0, ExpBackward0, MulBackward0, SinBackward0 for "
            "(a.exp() + b.sin() * c).sum(), a and b requiring grad, c not: follow every entry",
        ),
    ],
    "03.2": [
        (
            """
def stop_gradient_mse(pred, target):
    return ((pred - target) ** 2).mean()
""",
            "the target got a gradient (dL/dtarget[0] = -0.3333): use target.detach()",
        ),
        (
            """
def stop_gradient_mse(pred, target):
    return ((pred.detach() - target.detach()) ** 2).mean()
""",
            "the loss is cut from pred as well: detach only the target",
        ),
        (
            """
def stop_gradient_mse(pred, target):
    return ((pred - target.detach()) ** 2).sum()
""",
            "the loss differs (expected 6.167, got 18.5) for pred = [1.0, -0.5, 2.0], target = "
            "[0.5, 1.0, -2.0]: that is the sum of the squares: take their mean",
        ),
    ],
}
