"""Lesson 08: views, broadcasting, NumPy sharing, and CPU vs GPU timing in TensorBoard."""

from __future__ import annotations

import pytest
import torch
from support.tbutil import read_scalars, single_run_dir

from lab.lessons import lesson08_tensor_operations_and_gpu as lesson

RUN = "08_tensor_operations_and_gpu"
SHAPES = [
    ((3, 1), (1, 4)),
    ((2, 3, 4), (4,)),
    ((5, 1, 2), (3, 1)),
    ((1,), (2, 2)),
    ((), (3,)),
    ((1, 3), (0, 3)),
]  # a size-1 dim stretches to 0 too


@pytest.mark.parametrize("shape_a, shape_b", SHAPES)
def test_broadcasting_by_hand_matches_torch(shape_a, shape_b):
    assert lesson.broadcast_shape(shape_a, shape_b) == tuple(
        torch.broadcast_shapes(shape_a, shape_b)
    )
    a, b = torch.randn(shape_a, dtype=torch.float64), torch.randn(shape_b, dtype=torch.float64)
    assert torch.equal(lesson.add_by_explicit_expansion(a, b), a + b)


@pytest.mark.parametrize("shape_a, shape_b", [((3,), (4,)), ((2, 3), (3, 2))])
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
    assert not lesson.shares_memory(t.clone(), t)
    assert not lesson.shares_memory(t.T.reshape(-1), t)
    assert lesson.view_of_transpose_fails(t)


def test_numpy_sharing_claims_hold():
    assert lesson.numpy_sharing() == {
        "tensor_sees_numpy_write": True,
        "numpy_sees_tensor_write": True,
        "numpy_view_writes_through": True,
        "torch_tensor_copied": True,
    }


def test_without_cuda_the_gpu_part_is_skipped_and_cpu_timing_logged(runs_dir, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    lesson.main(["--device", "auto", "--size", "64", "--repeats", "2"])
    out = capsys.readouterr().out
    assert "GPU part skipped: torch.cuda.is_available() is False" in out
    scalars = read_scalars(single_run_dir(runs_dir, RUN))
    assert [step for step, _ in scalars["timing/cpu_ms"]] == [64]
    assert scalars["timing/cpu_ms"][0][1] > 0
    assert "timing/gpu_ms" not in scalars and "timing/speedup" not in scalars


def test_gpu_skip_reason_names_the_cause(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert "--device cpu" in lesson.gpu_skip_reason(torch.device("cpu"))
    assert lesson.gpu_skip_reason(torch.device("cuda")) is None


@pytest.mark.parametrize("bad", ["0", "-3", "big"])
def test_bad_size_is_a_one_line_usage_error(runs_dir, capsys, bad):
    with pytest.raises(SystemExit) as exc:
        lesson.main(["--device", "cpu", "--size", bad])
    assert exc.value.code == 2
    assert "argument --size" in capsys.readouterr().err


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_on_a_gpu_both_timings_and_the_speedup_are_logged(runs_dir):
    lesson.main(["--device", "cuda", "--size", "256"])
    scalars = read_scalars(single_run_dir(runs_dir, RUN))
    for tag in ("timing/cpu_ms", "timing/gpu_ms", "timing/speedup"):
        assert scalars[tag][0][0] == 256 and scalars[tag][0][1] > 0
