"""Typical wrong answers to 05's exercises, and what the check must say about each."""

WRONG = {
    "05.1": [
        (
            """
def jacobian_row(f, x, i):
    x = x.detach().requires_grad_(True)
    y = f(x)
    return torch.autograd.grad(y, x, grad_outputs=torch.ones_like(y))[0]
""",
            "that is the sum of all rows (grad_outputs of ones, or y.sum()): use a one-hot "
            "vector with a 1 at index 0",
        ),
        (
            """
def jacobian_row(f, x, i):
    x.requires_grad_(True)
    y = f(x)
    return torch.autograd.grad(y[i], x)[0]
""",
            "switched on requires_grad on the caller's x",
        ),
        (
            """
def jacobian_row(f, x, i):
    x = x.detach().requires_grad_(True)
    jac = torch.stack([torch.autograd.grad(f(x)[k], x)[0] for k in range(3)])
    return jac[:, i]
""",
            "that is column 0: row 0 is eᵢᵀ·J",
        ),
    ],
    "05.2": [
        (
            """
def second_derivative(f, x):
    x = x.detach().requires_grad_(True)
    (dfdx,) = torch.autograd.grad(f(x).sum(), x)
    (d2,) = torch.autograd.grad(dfdx.sum(), x)
    return d2
""",
            "create_graph=True to the first grad()",
        ),
        (
            """
def second_derivative(f, x):
    x = x.detach().requires_grad_(True)
    (dfdx,) = torch.autograd.grad(f(x).sum(), x, create_graph=True)
    return dfdx
""",
            "d²f/dx² differs at index 0 (expected -8.003, got 6.821) for f(x) = x³ + sin(x) at "
            "x = [-1.5, 0.0, 0.5, 2.0]: that is the first derivative",
        ),
        (
            """
def second_derivative(f, x):
    x = x.detach().requires_grad_(True)
    f(x).sum().backward(create_graph=True)
    x.grad.sum().backward()
    return x.grad
""",
            "that is df/dx + d²f/dx²: x.grad accumulated both backward() calls",
        ),
    ],
}
