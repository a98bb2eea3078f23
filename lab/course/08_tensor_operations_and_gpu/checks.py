"""08 · tensor operations: broadcasting against torch.cdist, batched products against einsum."""

from __future__ import annotations

import torch

from lab.exercises.feedback import call, same

F64 = torch.float64


def check_pairwise(pairwise_sq_dists) -> str:
    a = torch.arange(12, dtype=F64).reshape(3, 4) / 4  # n = 3 points
    b = torch.arange(20, dtype=F64).reshape(5, 4).flip(0) / 8 - 1  # m = 5 points
    right = torch.cdist(a, b) ** 2  # the oracle: torch's own distance
    same(
        right,
        call(pairwise_sq_dists, a, b, who="pairwise_sq_dists"),
        "the distance matrix",
        given="a of shape (3, 4) and b of shape (5, 4)",
        mistakes=((torch.cdist(a, b), "those are the distances: square them"),),
    )
    return "all n×m squared distances equal torch.cdist(a, b) ** 2"


def check_batched_matvec(batched_matvec) -> str:
    torch.manual_seed(0)
    A = torch.randn(4, 3, 3, dtype=F64)  # B = 4 differs from n = 3: shape slips show
    x = torch.randn(4, 3, dtype=F64)
    same(
        torch.einsum("bij,bj->bi", A, x),
        call(batched_matvec, A, x, who="batched_matvec"),
        "A·x",
        given="A of shape (4, 3, 3) and x of shape (4, 3)",
        mistakes=(
            (
                torch.einsum("bji,bj->bi", A, x),
                "that is Aᵀ·x: sum over A's last axis (the one that meets x), not the middle one",
            ),
        ),
    )
    return "every A[k] @ x[k] equals einsum('bij,bj->bi')"


CHECKS = {"pairwise_sq_dists": check_pairwise, "batched_matvec": check_batched_matvec}
