"""Every exercise: its key (LESSON.N), what the learner writes, and its hint ladder.

Data only (no torch), so ``lab hint`` and ``lab exercise --list`` stay light. The checks are
in ``lab.exercises.checks.exNN``; the reference solutions in ``lab.exercises.solutions``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    key: str  # "07.1"
    target: str  # the name the learner defines: "MySigmoid"
    title: str
    hints: tuple[str, ...]


_ITEMS = [
    Item(
        "01.1",
        "manual_gradients",
        "dL/dw and dL/db of the mean squared error, by the chain rule",
        (
            "Start from the residual r = w*x + b - y; L = mean(r**2).",
            "dL/dr = 2*r / N, where N = x.numel().",
            "dL/dw = sum(dL/dr * x) and dL/db = sum(dL/dr).",
        ),
    ),
    Item(
        "01.2",
        "descent_step",
        "one gradient-descent step with your own gradient",
        (
            "Use manual_gradients(w, b, x, y) from 01.1 (or write the gradient again).",
            "Step against the gradient: downhill is minus the gradient.",
            "return w - lr * grad_w, b - lr * grad_b",
        ),
    ),
    Item(
        "02.1",
        "autograd_gradients",
        "the same gradients, computed by autograd",
        (
            "Make leaf copies: w = w.detach().clone().requires_grad_(True), same for b.",
            "Compute the loss from those copies and call .backward() once.",
            "Return w.grad and b.grad (of the leaves, not of tensors derived from them).",
        ),
    ),
    Item(
        "02.2",
        "fit_autograd",
        "a gradient-descent loop with autograd, no_grad and zeroed gradients",
        (
            "Each step: loss = mse(...); loss.backward(); then update.",
            "Update in place under `with torch.no_grad():` so the update is not recorded.",
            "Gradients add up across backward() calls: set w.grad.zero_() (and b's) each step.",
        ),
    ),
    Item(
        "03.1",
        "graph_ops",
        "the names of every node in a tensor's backward graph",
        (
            "Start at t.grad_fn; each node's .next_functions is a tuple of (node, index).",
            "Some entries are (None, 0): inputs that need no gradient. Skip them.",
            "Walk recursively (or with a stack), collecting type(node).__name__ in a set.",
        ),
    ),
    Item(
        "03.2",
        "stop_gradient_mse",
        "a loss whose target gets no gradient (detach)",
        (
            "Only `pred` should receive a gradient; the target is treated as a constant.",
            "target.detach() returns the same values cut from the graph.",
            "return ((pred - target.detach()) ** 2).mean()",
        ),
    ),
    Item(
        "04.1",
        "make_clip_hook",
        "a tensor hook that clips the gradient to [-limit, limit]",
        (
            "A tensor hook is called with the gradient and may return a replacement.",
            "Do not change its argument in place: return a new tensor.",
            "return lambda grad: grad.clamp(-limit, limit)",
        ),
    ),
    Item(
        "04.2",
        "linear_output_means",
        "forward hooks that record each Linear layer's output mean, removed afterwards",
        (
            "model.named_modules() gives (name, module); keep the nn.Linear ones.",
            "A forward hook is called as hook(module, inputs, output): record output.mean().",
            "register_forward_hook returns a handle: call handle.remove() when done (try/finally).",
        ),
    ),
    Item(
        "05.1",
        "jacobian_row",
        "row i of the Jacobian with one vector-Jacobian product",
        (
            "Row i of J is eᵢᵀ·J, a vector-Jacobian product with the one-hot vector eᵢ.",
            "x = x.detach().requires_grad_(True); y = f(x); v = torch.zeros_like(y); v[i] = 1",
            "return torch.autograd.grad(y, x, grad_outputs=v)[0]",
        ),
    ),
    Item(
        "05.2",
        "second_derivative",
        "d²f/dx² elementwise with create_graph=True",
        (
            "Take the first derivative with torch.autograd.grad(f(x).sum(), x, ...).",
            "Pass create_graph=True so the first derivative can itself be differentiated.",
            "Then differentiate dfdx.sum() with respect to x again.",
        ),
    ),
    Item(
        "06.1",
        "accumulate_gradients",
        "gradient accumulation over uneven micro-batches that equals the big batch",
        (
            "The big-batch loss is the mean over all N samples.",
            "A micro-batch of n samples has a mean loss; its share of the big mean is n / N.",
            "loss_fn(model(xb), yb) * len(xb) / len(x), then .backward(); no zero_grad between.",
        ),
    ),
    Item(
        "06.2",
        "clip_total_norm",
        "clipping by the total gradient norm, by hand",
        (
            "The total norm is sqrt(sum over all parameters of (p.grad ** 2).sum()).",
            "Scale only when the total norm exceeds max_norm, by max_norm / total_norm.",
            "Every parameter gets the same factor; return the norm measured before clipping.",
        ),
    ),
    Item(
        "07.1",
        "MySigmoid",
        "a sigmoid autograd.Function with its own backward",
        (
            "forward: s = 1 / (1 + torch.exp(-x)); save s (not x) with ctx.save_for_backward.",
            "The local derivative is s * (1 - s).",
            "backward returns grad_output * s * (1 - s): the chain rule.",
        ),
    ),
    Item(
        "07.2",
        "MulAdd",
        "an autograd.Function with two inputs: x * y + x",
        (
            "backward must return one gradient per forward input: (dL/dx, dL/dy).",
            "d(xy + x)/dx = y + 1 and d(xy + x)/dy = x.",
            "return grad_output * (y + 1), grad_output * x",
        ),
    ),
    Item(
        "08.1",
        "pairwise_sq_dists",
        "all pairwise squared distances by broadcasting",
        (
            "a is (n, d) and b is (m, d); the answer is (n, m).",
            "a[:, None, :] - b[None, :, :] has shape (n, m, d).",
            "Square it and sum over the last axis (d).",
        ),
    ),
    Item(
        "08.2",
        "batched_matvec",
        "a batch of matrix-vector products",
        (
            "A is (B, n, n) and x is (B, n); the answer is (B, n).",
            "Give x a trailing axis: x.unsqueeze(-1) is (B, n, 1); A @ that is (B, n, 1).",
            "(A @ x.unsqueeze(-1)).squeeze(-1), or torch.einsum('bij,bj->bi', A, x).",
        ),
    ),
    Item(
        "09.1",
        "FolderDataset",
        "a Dataset over class folders of images",
        (
            "classes = sorted folder names; collect (path, class index) for every image file.",
            "__len__ is the number of images, not of folders.",
            "__getitem__ opens the image, applies self.transform if any, returns (image, index).",
        ),
    ),
    Item(
        "13.1",
        "normalize_from_data",
        "a Normalize built from the measured per-channel mean and std",
        (
            "images is (N, C, H, W): one statistic per channel C.",
            "Reduce over every axis but the channel one: dim=(0, 2, 3).",
            "return transforms.Normalize(mean.tolist(), std.tolist())",
        ),
    ),
    Item(
        "15.1",
        "train_step",
        "one training step: zero_grad, forward, backward, step",
        (
            "Order: optimizer.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); "
            "optimizer.step().",
            "Without zero_grad, gradients of earlier steps add into this one.",
            "Return loss.item(), a float, not the tensor (it holds the graph).",
        ),
    ),
]

ITEMS = {entry.key: entry for entry in _ITEMS}
