"""Typical wrong answers to 01's exercises, and what the check must say about each."""

WRONG = {
    "01.1": [
        (
            """
def manual_gradients(w, b, x, y):
    r = w * x + b - y
    return (2 * r * x).sum(), (2 * r).sum()
""",
            "did you forget to divide by N = 8 (the loss is a mean)?",
        ),
        (
            """
def manual_gradients(w, b, x, y):
    r = w * x + b - y
    return (r * x).mean(), r.mean()
""",
            "did you drop the 2 of d(r²)/dr = 2r?",
        ),
        (
            """
def manual_gradients(w, b, x, y):
    r = y - (w * x + b)
    return (2 * r * x).mean(), (2 * r).mean()
""",
            "the sign is flipped",
        ),
        (
            """
def manual_gradients(w, b, x, y):
    r = w * x + b - y
    return (2 * r).mean(), (2 * r * x).mean()
""",
            "are they swapped?",
        ),
    ],
    "01.2": [
        (
            """
def descent_step(w, b, x, y, lr):
    r = w * x + b - y
    return w + lr * (2 * r * x).mean(), b + lr * (2 * r).mean()
""",
            "that step goes uphill: subtract lr times the gradient",
        ),
        (
            """
def descent_step(w, b, x, y, lr):
    r = w * x + b - y
    return w - (2 * r * x).mean(), b - (2 * r).mean()
""",
            "the step is missing the learning rate",
        ),
        (
            """
def descent_step(w, b, x, y, lr):
    r = w * x + b - y
    return w - lr * (2 * r * x).mean()
""",
            "descent_step should return a pair, got Tensor",
        ),
    ],
}
