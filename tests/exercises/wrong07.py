"""Typical wrong answers to 07's exercises, and what the check must say about each."""

WRONG = {
    "07.1": [
        (
            """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = 1 / (1 + torch.exp(x))
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return grad_output * s * (1 - s)
""",
            "forward differs at index 0 (expected 0.04743, got 0.9526) for x = [-3.0, -1.0, "
            "-0.5, 0.0, 1.0, 2.5]: did you write exp(x) where sigmoid has exp(-x)?",
        ),
        (
            """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = torch.sigmoid(x)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return s * (1 - s)
""",
            "`backward` ignored grad_output",
        ),
        (
            """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        s = torch.sigmoid(x)
        ctx.save_for_backward(s)
        return s

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return grad_output * s
""",
            "gradcheck fails: analytic dL/dx[0] = 0.04743, numerical 0.04518",
        ),
        (
            """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x.neg_().exp_().add_(1).reciprocal_()

    @staticmethod
    def backward(ctx, grad_output):
        (s,) = ctx.saved_tensors
        return grad_output * s * (1 - s)
""",
            "forward changed its input x in place (x[0] was -3, now 0.04743)",
        ),
    ],
    "07.2": [
        (
            """
class MulAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y + x

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output * (y + 1)
""",
            "`backward` returned 1 gradient(s) but `forward` takes 2 input(s)",
        ),
        (
            """
class MulAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y + x

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output * x, grad_output * (y + 1)
""",
            "gradcheck fails: analytic dL/dx[0] = 0.5, numerical 3",
        ),
        (
            """
class MulAdd(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y):
        ctx.save_for_backward(x, y)
        return x * y

    @staticmethod
    def backward(ctx, grad_output):
        x, y = ctx.saved_tensors
        return grad_output * y, grad_output * x
""",
            "forward differs at index 0 (expected 1.5, got 1)",
        ),
    ],
}

WRONG["07.1"].append(
    (
        """
class MySigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output):
        raise NotImplementedError("07.1: write backward")
""",
        "forward works; `backward` still raises NotImplementedError",
    )
)
