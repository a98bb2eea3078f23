"""Typical wrong answers to 06's exercises, and what the check must say about each."""

WRONG = {
    "06.1": [
        (
            """
def accumulate_gradients(model, loss_fn, x, y, sizes):
    for xb, yb in zip(x.split(sizes), y.split(sizes)):
        (loss_fn(model(xb), yb) / len(sizes)).backward()
""",
            "did you divide by the number of micro-batches instead of weighting each "
            "micro-batch's loss by its size, n_i / N?",
        ),
        (
            """
def accumulate_gradients(model, loss_fn, x, y, sizes):
    for xb, yb in zip(x.split(sizes), y.split(sizes)):
        loss_fn(model(xb), yb).backward()
""",
            "each micro-batch's mean loss needs its share n_i / N of the big mean",
        ),
        (
            """
def accumulate_gradients(model, loss_fn, x, y, sizes):
    for xb, yb in zip(x.split(sizes), y.split(sizes)):
        model.zero_grad()
        (loss_fn(model(xb), yb) * len(xb) / len(x)).backward()
""",
            "only the last micro-batch's gradient is left: do not zero the gradients",
        ),
    ],
    "06.2": [
        (
            """
def clip_total_norm(parameters, max_norm):
    norms = []
    for p in parameters:
        norm = p.grad.norm()
        norms.append(norm)
        if norm > max_norm:
            p.grad.mul_(max_norm / norm)
    return torch.stack(norms).norm()
""",
            "parameter 0's gradient after clipping differs at index 0 (expected 1.5, got 3) for "
            "gradients [3, 4] and [[0, 12]] (total norm 13), max_norm = 6.5: each parameter was "
            "clipped by its own norm",
        ),
        (
            """
def clip_total_norm(parameters, max_norm):
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in parameters))
    for p in parameters:
        p.grad.mul_(max_norm / total)
    return total
""",
            "max_norm = 20: scaled although the total norm is below max_norm",
        ),
        (
            """
def clip_total_norm(parameters, max_norm):
    total = torch.sqrt(sum((p.grad ** 2).sum() for p in parameters))
    if total > max_norm:
        for p in parameters:
            p.grad.mul_(max_norm / total)
""",
            "clip_total_norm returned None: return the total norm before clipping",
        ),
    ],
}
