def pairwise_sq_dists(a, b):
    diff = a[:, None, :] - b[None, :, :]  # (n, 1, d) - (1, m, d) -> (n, m, d)
    return (diff**2).sum(-1)


def batched_matvec(A, x):
    return (A @ x.unsqueeze(-1)).squeeze(-1)  # (B, n, n) @ (B, n, 1) -> (B, n, 1)
