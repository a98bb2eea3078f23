"""Lesson 08: views, dims, reductions, broadcasting, NumPy sharing, devices, CPU vs GPU timing."""

from __future__ import annotations

import pytest
import torch
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.tbutil import read_scalars, single_run_dir

from lab.lessons.harness import LabUsageError

RUN = "08_tensor_operations_and_gpu"
lesson = definitions("08")

# Small slips the lesson's own checks must catch.
MUTATIONS = [
    # the wrong order of dimensions: HWC → CWH instead of CHW
    ("chw = hwc.permute(2, 0, 1)", "chw = hwc.permute(2, 1, 0)"),
    # normalizing by the column sums instead of each row's own sum
    ("table / table.sum(dim=1, keepdim=True)", "table / table.sum(dim=0, keepdim=True)"),
    # a size-1 dimension that fails to stretch in the hand-written rule
    ("result.append(size_b if size_a == 1 else size_a)", "result.append(size_a)"),
    # as_tensor instead of tensor: shares the NumPy array's memory instead of copying
    ("copied = torch.tensor(array)", "copied = torch.as_tensor(array)"),
    # unravelling the flat argmax by the number of rows: a square table would hide it
    (
        "divmod(flat_index, table.shape[1])",
        "divmod(flat_index, table.shape[0])",
    ),
    # a strided slice where an index list was meant: the same rows, but a view
    (
        "second_row, picked, masked = grid[1], grid[[0, 2]]",
        "second_row, picked, masked = grid[1], grid[::2]",
    ),
]

SHAPES = [
    ((3, 1), (1, 4)),
    ((2, 3, 4), (4,)),
    ((5, 1, 2), (3, 1)),
    ((1,), (2, 2)),
    ((), (3,)),
    ((1, 3), (0, 3)),  # a size-1 dim stretches to 0 too
]


@pytest.mark.parametrize(("shape_a", "shape_b"), SHAPES)
def test_broadcasting_by_hand_matches_torch(shape_a, shape_b):
    assert lesson.broadcast_shape(shape_a, shape_b) == tuple(
        torch.broadcast_shapes(shape_a, shape_b)
    )
    a, b = torch.randn(shape_a, dtype=torch.float64), torch.randn(shape_b, dtype=torch.float64)
    assert torch.equal(lesson.add_by_explicit_expansion(a, b), a + b)


@pytest.mark.parametrize(("shape_a", "shape_b"), [((3,), (4,)), ((2, 3), (3, 2))])
def test_incompatible_shapes_are_refused_like_torch(shape_a, shape_b):
    with pytest.raises(RuntimeError):
        torch.broadcast_shapes(shape_a, shape_b)
    with pytest.raises(ValueError, match="do not broadcast"):
        lesson.broadcast_shape(shape_a, shape_b)


def test_matmul_by_broadcasting_equals_matmul():
    a, b = torch.randn(4, 6, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    assert torch.allclose(lesson.matmul_by_broadcasting(a, b), a @ b)


def test_views_share_memory_and_copies_do_not():
    t = torch.arange(12).reshape(3, 4)
    assert lesson.shares_memory(t.view(4, 3), t)
    assert lesson.shares_memory(t[1], t)
    assert lesson.shares_memory(t.permute(1, 0), t)
    assert not lesson.shares_memory(t.clone(), t)
    assert not lesson.shares_memory(t.T.reshape(-1), t)
    assert lesson.view_of_transpose_fails(t)
    assert not lesson.view_of_transpose_fails(torch.arange(4).reshape(1, 4))  # T is contiguous


def test_numpy_sharing_claims_hold():
    assert lesson.numpy_sharing() == {
        "tensor_sees_numpy_write": True,
        "numpy_sees_tensor_write": True,
        "numpy_view_writes_through": True,
        "torch_tensor_copied": True,
    }


def test_time_matmul_is_a_positive_median_in_milliseconds():
    a = torch.randn(8, 8)
    assert lesson.time_matmul(a, a, repeats=3, warmup=0) > 0


def test_relative_error_is_zero_for_equal_and_scale_free():
    ref = torch.tensor([3.0, 4.0])
    assert lesson.relative_error(ref, ref) == 0.0
    assert lesson.relative_error(ref + torch.tensor([0.5, 0.0]), ref) == pytest.approx(0.1)


def test_gpu_skip_reason_names_the_cause(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "is_available() is False" in lesson.gpu_skip_reason(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "--device cpu" in lesson.gpu_skip_reason(torch.device("cpu"))
    assert lesson.gpu_skip_reason(torch.device("cuda")) is None


def test_error_of_names_the_exception_type():
    assert lesson.error_of(lambda: None) is None
    got = lesson.error_of(lambda: torch.ones(3) + torch.ones(4))
    assert got.startswith("RuntimeError: The size of tensor a (3)")


@pytest.mark.parametrize("flag", ["--size", "--repeats"])
def test_a_size_below_one_is_a_one_line_usage_error(runs_dir, flag):
    with pytest.raises(LabUsageError) as refused:
        run_lesson("08", flag, "0")
    message = refused.value.message
    assert "\n" not in message and "must be at least 1" in message and " 0" in message
    assert not (runs_dir / RUN).exists()  # refused before a run was opened


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU-only path")
def test_without_a_gpu_the_cells_log_cpu_timing_and_say_so(runs_dir, capsys):
    ns = run_lesson("08", "--size", "64", "--repeats", "2")
    out = capsys.readouterr().out
    assert "GPU part skipped: torch.cuda.is_available() is False" in out
    assert "the mixing error cannot be" in out  # explained, not faked
    assert "Expected all tensors" not in out
    assert ns.lesson.figures == ["timing"] and len(ns.lesson.checks) == 43
    assert ns.timings.keys() == {"CPU"}
    scalars = read_scalars(single_run_dir(runs_dir, RUN))
    assert [step for step, _ in scalars["timing/cpu_ms"]] == [64]  # the setting took effect
    assert scalars["timing/cpu_ms"][0][1] > 0
    assert "timing/gpu_ms" not in scalars and "timing/speedup" not in scalars


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_the_mixing_error_is_real_and_both_timings_are_logged(runs_dir):
    from lab.course import find
    from lab.lessons import runner

    ns = runner.run(find("08"), ["--device", "cuda", "--no-gpu-metrics", "--size", "256"])
    assert "same device" in ns.mixed and ns.scalar is None
    assert ns.timings.keys() == {"CPU", "GPU"}
    scalars = read_scalars(single_run_dir(runs_dir, RUN))
    for tag in ("timing/cpu_ms", "timing/gpu_ms", "timing/speedup"):
        assert scalars[tag][0][0] == 256 and scalars[tag][0][1] > 0


@pytest.mark.parametrize(
    ("old", "new"),
    MUTATIONS,
    ids=[
        "permute-order",
        "column-sums",
        "no-stretch",
        "as-tensor",
        "unravel-by-rows",
        "slice-for-index-list",
    ],
)
def test_a_broken_lesson_fails_its_own_checks(runs_dir, old, new):
    assert_mutation_caught("08", old, new, "--size", "32", "--repeats", "1")


# Typical wrong answers to 08's exercises, and what the check must say about each.
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
WRONG["08.1"] += [
    (
        """
def pairwise_sq_dists(a, b):
    return torch.cdist(a, b) ** 2
""",
        "08.1 asks for the distances by broadcasting: your code called torch.cdist",
    ),
    (
        """
def pairwise_sq_dists(a, b):
    return torch.stack([((row - b) ** 2).sum(-1) for row in a])
""",
        "08.1 asks for broadcasting, no Python loop: your code made",
    ),
]
WRONG["08.2"] += [
    (
        """
def batched_matvec(A, x):
    return torch.stack([A[k] @ x[k] for k in range(len(A))])
""",
        "08.2 asks for the products without a loop: your code made",
    ),
    (
        """
def batched_matvec(A, x):
    return (A * x).sum(-1)
""",
        "the shapes do not broadcast (sizes 3 and 4 meet on one axis)",
    ),
]

# Correct answers other than the reference solution: each must pass.
RIGHT = {
    "08.1": [
        """
def pairwise_sq_dists(a, b):
    # ‖a‖² − 2a·b + ‖b‖²: one matrix product, the rest broadcast
    return (a * a).sum(1)[:, None] - 2 * a @ b.T + (b * b).sum(1)[None, :]
""",
        """
def pairwise_sq_dists(a, b):
    d = a.unsqueeze(1) - b.unsqueeze(0)
    return torch.einsum("ijk,ijk->ij", d, d)
""",
        """
def pairwise_sq_dists(a, b):
    return torch.vmap(lambda point: ((point - b) ** 2).sum(-1))(a)
""",
    ],
    "08.2": [
        """
def batched_matvec(A, x):
    return torch.einsum("bij,bj->bi", A, x)
""",
        """
def batched_matvec(A, x):
    return (A * x[:, None, :]).sum(-1)
""",
        """
def batched_matvec(A, x):
    return torch.vmap(torch.mv)(A, x)
""",
        """
def batched_matvec(A, x):
    return torch.bmm(A, x.unsqueeze(2))[:, :, 0]
""",
    ],
}
