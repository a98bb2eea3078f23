"""Typical wrong answers to 08's exercises, and what the check must say about each."""

WRONG = {
    "08.1": [
        (
            """
def pairwise_sq_dists(a, b):
    return ((a - b) ** 2).sum(-1)
""",
            "the shapes do not broadcast (sizes 3 and 5 meet on one axis): give each input its "
            "own axis with None",
        ),
        (
            """
def pairwise_sq_dists(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(0)
""",
            "the distance matrix has shape (5, 4), expected (3, 5) for a of shape (3, 4) and b "
            "of shape (5, 4)",
        ),
        (
            """
def pairwise_sq_dists(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1).sqrt()
""",
            "those are the distances: square them",
        ),
    ],
    "08.2": [
        (
            """
def batched_matvec(A, x):
    return A @ x
""",
            "the matrix product's shapes do not fit (12x3 and 4x3): a vector needs a trailing "
            "axis, x.unsqueeze(-1)",
        ),
        (
            """
def batched_matvec(A, x):
    return (A * x[:, :, None]).sum(1)
""",
            "that is Aᵀ·x: sum over A's last axis",
        ),
        (
            """
def batched_matvec(A, x):
    return A @ x.unsqueeze(-1)
""",
            "A·x has shape (4, 3, 1), expected (4, 3)",
        ),
    ],
}
