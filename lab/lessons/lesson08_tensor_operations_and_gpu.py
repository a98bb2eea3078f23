# %% [markdown]
# # 08 · Tensor operations, NumPy interop, and CPU vs GPU
#
# The everyday tensor toolkit: creating tensors, reshaping (and when a reshape is a free
# *view* of the same memory), indexing, matrix products, broadcasting, and sharing memory
# with NumPy. Then we time the same matrix product on the CPU and — when one is present —
# on the GPU, log both to TensorBoard, and check the two results agree.
#
# Run it with a bigger matrix to see the GPU pull ahead: `lab lesson 08 --size 4096`.

# %%
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from lab.lessons.harness import LessonRun, lesson_parser, run_main

# %% [markdown]
# ## Views share memory; `reshape` copies only when it must
#
# A tensor is a block of memory (its storage) plus a shape and *strides*. `view` only
# changes shape and strides, so it works only when the new shape can be laid over the same
# memory with some strides — always possible for a contiguous tensor. `t.T` swaps the
# strides, so it is not contiguous, and its flattened order cannot be described that way:
# `view(-1)` refuses, `reshape(-1)` silently copies, `.contiguous()` makes the copy explicit.


# %%
def shares_memory(a: torch.Tensor, b: torch.Tensor) -> bool:
    """True when both look into the same storage (the same block of memory)."""
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def view_of_transpose_fails(t: torch.Tensor) -> bool:
    try:
        t.T.view(-1)
    except RuntimeError:
        return True
    return False


# %% [markdown]
# ## Broadcasting, by its rules
#
# Line the shapes up from the right; each pair of sizes must be equal, or one of them 1
# (a missing dimension counts as 1). The result takes the size that is not 1 (so a size-1
# dimension can even stretch to 0). A size-1 dimension is then *expanded* — repeated without
# copying — to match. Written out by hand:


# %%
def broadcast_shape(shape_a: tuple[int, ...], shape_b: tuple[int, ...]) -> tuple[int, ...]:
    ndim = max(len(shape_a), len(shape_b))
    a = (1,) * (ndim - len(shape_a)) + tuple(shape_a)
    b = (1,) * (ndim - len(shape_b)) + tuple(shape_b)
    result = []
    for size_a, size_b in zip(a, b, strict=True):
        if size_a != size_b and 1 not in (size_a, size_b):
            raise ValueError(f"shapes {tuple(shape_a)} and {tuple(shape_b)} do not broadcast")
        result.append(size_b if size_a == 1 else size_a)
    return tuple(result)


def add_by_explicit_expansion(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b with the broadcasting done by hand: expand both, then add equal shapes."""
    shape = broadcast_shape(tuple(a.shape), tuple(b.shape))
    return a.expand(shape) + b.expand(shape)


# %% [markdown]
# ## Matrix products
#
# `a @ b` (= `torch.matmul`) sums products over the shared dimension:
# `(a @ b)[i, j] = Σₖ a[i, k] · b[k, j]`. With broadcasting we can write exactly that sum —
# slow and memory-hungry, but a good check. `*` is elementwise, a different thing.


# %%
def matmul_by_broadcasting(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a[:, :, None] * b[None, :, :]).sum(dim=1)


# %% [markdown]
# ## NumPy interop
#
# `torch.from_numpy(array)` and `tensor.numpy()` share memory with the array (CPU only —
# a CUDA tensor needs `.cpu()` first, which copies). `torch.tensor(array)` always copies.


# %%
def numpy_sharing() -> dict[str, bool]:
    array = np.arange(6, dtype=np.float64)
    shared = torch.from_numpy(array)
    copied = torch.tensor(array)
    array[0] = 42.0  # write through NumPy ...
    shared[1] = -1.0  # ... and through torch
    back = shared.numpy()
    back[2] = 7.0
    return {
        "tensor_sees_numpy_write": shared[0].item() == 42.0,
        "numpy_sees_tensor_write": array[1] == -1.0,
        "numpy_view_writes_through": shared[2].item() == 7.0 and array[2] == 7.0,
        "torch_tensor_copied": copied[0].item() == 0.0,
    }


# %% [markdown]
# ## Timing a matrix product, fairly
#
# GPU kernels run *asynchronously*: the Python call returns before the work is done. So we
# call `torch.cuda.synchronize()` before reading the clock, and we warm up first (the first
# call pays for CUDA context and cuBLAS setup). Inputs already live on the device, so the
# times exclude host↔device copies.


# %%
def time_matmul(a: torch.Tensor, b: torch.Tensor, repeats: int = 10, warmup: int = 2) -> float:
    """Median wall time of a @ b in milliseconds."""

    def sync():
        if a.device.type == "cuda":
            torch.cuda.synchronize(a.device)

    for _ in range(warmup):
        a @ b
    sync()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        sync()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def gpu_skip_reason(device: torch.device) -> str | None:
    """Why the GPU half cannot run, or None when it can."""
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False: no CUDA GPU visible to torch"
    if device.type != "cuda":
        return f"--device {device.type} was asked for"
    return None


def relative_error(result: torch.Tensor, reference: torch.Tensor) -> float:
    result, reference = result.double().cpu(), reference.double().cpu()
    return ((result - reference).norm() / reference.norm()).item()


# %% [markdown]
# ## The lesson's own options
#
# Every lesson takes `--device` and `--runs-dir`; this one adds `--size` and `--repeats`.


# %%
def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = lesson_parser("Tensor operations, NumPy interop, and CPU vs GPU matmul timing.")
    parser.add_argument(
        "--size",
        type=positive_int,
        default=512,
        help="side of the square float32 matrices that are timed (default: 512)",
    )
    parser.add_argument(
        "--repeats",
        type=positive_int,
        default=10,
        help="timed matmuls per device; the median is reported (default: 10)",
    )
    return parser


# %% [markdown]
# ## The whole lesson


# %%
def run_lesson(run: LessonRun) -> None:
    device = run.device
    grid = torch.arange(12, device=device).reshape(3, 4)
    print("arange(12).reshape(3, 4):\n", grid.cpu())
    run.check(
        torch.equal(torch.zeros(2, 3, device=device), torch.full((2, 3), 0.0, device=device))
        and torch.eye(3, device=device).diagonal().eq(1).all().item()
        and torch.linspace(0, 1, 5, device=device)[-1].item() == 1.0,
        "zeros == full(0); eye has ones on its diagonal; linspace includes its end",
    )

    flat = grid.view(12)
    flat[0] = 100
    run.check(
        shares_memory(flat, grid) and grid[0, 0].item() == 100,
        "view shares memory: writing through the view changes the original",
    )
    grid[0, 0] = 0
    run.check(
        not grid.T.is_contiguous() and view_of_transpose_fails(grid),
        "t.T is not contiguous, and .view(-1) on it raises",
    )
    reshaped = grid.T.reshape(-1)
    run.check(
        not shares_memory(reshaped, grid) and torch.equal(reshaped, grid.T.contiguous().view(-1)),
        "reshape copies when it must: same values as .contiguous().view(-1)",
    )

    row = grid[1]
    picked = grid[[0, 2]]
    masked = grid[grid > 5]
    run.check(
        shares_memory(row, grid)
        and not shares_memory(picked, grid)
        and torch.equal(masked, torch.arange(6, 12, device=device)),
        "basic slicing gives views; index lists and boolean masks give copies",
    )

    f64 = {"dtype": torch.float64, "device": device}
    generator = torch.Generator().manual_seed(8)
    a = torch.randn(4, 3, generator=generator, dtype=torch.float64).to(device)
    b = torch.randn(3, 5, generator=generator, dtype=torch.float64).to(device)
    run.check(
        torch.allclose(a @ b, matmul_by_broadcasting(a, b))
        and torch.allclose(torch.matmul(a, b), torch.einsum("ik,kj->ij", a, b)),
        "a @ b equals Σₖ a[i,k]·b[k,j] written with broadcasting, and einsum",
    )
    batch = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64).to(device)
    run.check(
        torch.allclose(batch @ b, torch.stack([m @ b for m in batch])),
        "(2, 4, 3) @ (3, 5): matmul broadcasts over the batch dimension",
    )

    column = torch.arange(3, **f64).reshape(3, 1)
    row_vec = torch.arange(4, **f64).reshape(1, 4) * 10
    total = column + row_vec
    by_loops = torch.tensor([[i + 10 * j for j in range(4)] for i in range(3)], **f64)
    run.check(
        total.shape == (3, 4) and torch.equal(total, by_loops),
        "(3, 1) + (1, 4) → (3, 4) with out[i, j] = col[i] + row[j]",
    )
    cube = torch.randn(2, 3, 4, generator=generator, dtype=torch.float64).to(device)
    bias = torch.randn(4, generator=generator, dtype=torch.float64).to(device)
    run.check(
        broadcast_shape((2, 3, 4), (4,)) == tuple((cube + bias).shape) == (2, 3, 4)
        and torch.equal(cube + bias, add_by_explicit_expansion(cube, bias)),
        "(2, 3, 4) + (4,) equals adding the explicitly expanded tensors",
    )
    try:
        torch.ones(3) + torch.ones(4)
        incompatible_raises = False
    except RuntimeError:
        incompatible_raises = True
    run.check(incompatible_raises, "(3,) + (4,) does not broadcast: torch raises RuntimeError")

    sharing = numpy_sharing()
    run.check(
        all(sharing.values()), "from_numpy and .numpy() share memory both ways; torch.tensor copies"
    )

    size, repeats = run.args.size, run.args.repeats
    x = torch.randn(size, size, generator=generator)
    y = torch.randn(size, size, generator=generator)
    cpu_result = x @ y
    cpu_ms = time_matmul(x, y, repeats)
    gflop = 2 * size**3 / 1e9
    print(f"CPU  {size}×{size} matmul: {cpu_ms:.2f} ms ({gflop / cpu_ms * 1e3:.1f} GFLOP/s)")
    # step = matrix size, so runs with different --size line up on one axis in TensorBoard
    run.writer.add_scalar("timing/cpu_ms", cpu_ms, size)
    run.check(
        relative_error(cpu_result, x.double() @ y.double()) < 1e-5,
        "float32 CPU matmul agrees with float64 to float32 rounding",
    )

    reason = gpu_skip_reason(device)
    if reason is not None:
        print(f"GPU part skipped: {reason}. Only the CPU timing is logged.")
        return
    gx, gy = x.to(device), y.to(device)
    gpu_ms = time_matmul(gx, gy, repeats)
    speedup = cpu_ms / gpu_ms
    print(
        f"GPU  {size}×{size} matmul: {gpu_ms:.3f} ms ({gflop / gpu_ms * 1e3:.1f} GFLOP/s) "
        f"on {torch.cuda.get_device_name(device)}; speedup {speedup:.1f}×"
    )
    run.writer.add_scalar("timing/gpu_ms", gpu_ms, size)
    run.writer.add_scalar("timing/speedup", speedup, size)
    error = relative_error(gx @ gy, cpu_result)
    print(f"relative difference GPU vs CPU: {error:.2e}")
    run.check(error < 1e-4, "the GPU result equals the CPU result within float32 tolerance")


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("08_tensor_operations_and_gpu", run_lesson, argv, build_parser())


# %%
if __name__ == "__main__":
    main()
