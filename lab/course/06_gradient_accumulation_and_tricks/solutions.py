import torch


def accumulate_gradients(model, loss_fn, x, y, sizes):
    total = len(x)
    for xb, yb in zip(x.split(sizes), y.split(sizes), strict=True):
        # a micro-batch's mean loss weighs n_i / N in the big batch's mean
        (loss_fn(model(xb), yb) * len(xb) / total).backward()


def clip_total_norm(parameters, max_norm):
    grads = [p.grad for p in parameters if p.grad is not None]
    total = torch.sqrt(sum((g**2).sum() for g in grads))
    if total > max_norm:
        for g in grads:
            g.mul_(max_norm / total)
    return total
