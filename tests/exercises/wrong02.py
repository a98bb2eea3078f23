"""Typical wrong answers to 02's exercises, and what the check must say about each."""

WRONG = {
    "02.1": [
        (
            """
def autograd_gradients(w, b, x, y):
    loss = ((w * x + b - y) ** 2).mean()
    loss.backward()
    return w.grad, b.grad
""",
            "backward()/grad() was called on a result that is not connected to anything "
            "requiring grad: create the inputs with requires_grad=True",
        ),
        (
            """
def autograd_gradients(w, b, x, y):
    w = w.detach().clone().requires_grad_(True)
    b = b.detach().clone().requires_grad_(True)
    loss = ((w * x + b - y) ** 2).mean()
    loss.backward(retain_graph=True)
    print("loss", loss.item())
    loss.backward()
    return w.grad, b.grad
""",
            "twice the gradient: backward() ran twice, and .grad adds up",
        ),
        (
            """
def autograd_gradients(w, b, x, y):
    w.requires_grad_(True)
    b.requires_grad_(True)
    ((w * x + b - y) ** 2).mean().backward()
    return w.grad, b.grad
""",
            "switched on requires_grad on the caller's w/b",
        ),
        (
            """
def autograd_gradients(w, b, x, y):
    w = w.clone().requires_grad_(True) * 1.0
    b = b.clone().requires_grad_(True) * 1.0
    ((w * x + b - y) ** 2).mean().backward()
    return w.grad, b.grad
""",
            "dL/dw is None: .grad is only filled in for a leaf tensor",
        ),
    ],
    "02.2": [
        (
            """
def fit_autograd(x, y, lr, steps):
    w = torch.zeros((), dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    for _ in range(steps):
        ((w * x + b - y) ** 2).mean().backward()
        with torch.no_grad():
            w -= lr * w.grad
            b -= lr * b.grad
    return w.detach(), b.detach()
""",
            "w differs (expected 0.4384, got 0.8892) for 3 step(s) from w = b = 0, lr = 0.1: "
            "gradients added up across steps: zero w.grad and b.grad every step",
        ),
        (
            """
def fit_autograd(x, y, lr, steps):
    w = torch.zeros((), dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    for _ in range(steps):
        ((w * x + b - y) ** 2).mean().backward()
        w -= lr * w.grad
        b -= lr * b.grad
        w.grad.zero_()
        b.grad.zero_()
    return w, b
""",
            "do the update inside `with torch.no_grad():`",
        ),
        (
            """
def fit_autograd(x, y, lr, steps):
    w = torch.zeros((), dtype=x.dtype, requires_grad=True)
    b = torch.zeros((), dtype=x.dtype, requires_grad=True)
    for _ in range(steps):
        ((w * x + b - y) ** 2).mean().backward()
        w = w - lr * w.grad
        b = b - lr * b.grad
    return w.detach(), b.detach()
""",
            "a `.grad` was None",
        ),
    ],
}
