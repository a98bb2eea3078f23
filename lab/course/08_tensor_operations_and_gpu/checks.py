"""08 · tensor operations: broadcasting against torch.cdist, batched products against einsum;
no Python loop (as many operations for a big input as for a small one), no cdist."""

from __future__ import annotations

import torch

from lab.exercises.feedback import Problem, call, loop_free, same, unseen, watch

F64 = torch.float64


def _points(n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.arange(n * 4, dtype=F64).reshape(n, 4) / 4
    b = torch.arange(m * 4, dtype=F64).reshape(m, 4).flip(0) / 8 - 1
    return unseen(a), unseen(b)


def check_pairwise(pairwise_sq_dists) -> str:
    a, b = _points(3, 5)  # n = 3 points, m = 5
    right = torch.cdist(a, b) ** 2  # the oracle: torch's own distance
    with watch(torch.cdist) as seen:
        got = call(pairwise_sq_dists, a.clone(), b.clone(), who="pairwise_sq_dists")
    if seen.count(torch.cdist):
        raise Problem(
            "08.1 asks for the distances by broadcasting: your code called torch.cdist, which "
            "does it for you; subtract a[:, None, :] - b[None, :, :] instead"
        )
    same(
        right,
        got,
        "the distance matrix",
        given="a of shape (3, 4) and b of shape (5, 4)",
        mistakes=((torch.cdist(a, b), "those are the distances: square them"),),
    )
    loop_free(
        pairwise_sq_dists,
        _points(3, 5),
        _points(12, 20),
        who="pairwise_sq_dists",
        rule="08.1 asks for broadcasting, no Python loop",
        sizes="3×5 points vs 12×20 points",
    )
    return "all n×m squared distances equal torch.cdist(a, b) ** 2, by broadcasting, no loop"


def _batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(size)
    return (
        unseen(torch.randn(size, 3, 3, dtype=F64, generator=generator)),
        unseen(torch.randn(size, 3, dtype=F64, generator=generator)),
    )


def check_batched_matvec(batched_matvec) -> str:
    A, x = _batch(4)  # B = 4 differs from n = 3: shape slips show
    right = torch.einsum("bij,bj->bi", A, x)
    same(
        right,
        call(batched_matvec, A.clone(), x.clone(), who="batched_matvec"),
        "A·x",
        given="A of shape (4, 3, 3) and x of shape (4, 3)",
        mistakes=(
            (
                torch.einsum("bji,bj->bi", A, x),
                "that is Aᵀ·x: sum over A's last axis (the one that meets x), not the middle one",
            ),
        ),
    )
    loop_free(
        batched_matvec,
        _batch(4),
        _batch(16),
        who="batched_matvec",
        rule="08.2 asks for the products without a loop",
        sizes="a batch of 4 vs a batch of 16",
    )
    return "every A[k] @ x[k] equals einsum('bij,bj->bi'), without a loop"


CHECKS = {"pairwise_sq_dists": check_pairwise, "batched_matvec": check_batched_matvec}
