# %% [markdown]
# # 08 · Tensor operations, NumPy interop, and CPU vs GPU
#
# The everyday tensor toolkit: creating tensors, reshaping (and when a reshape is a free
# *view* of the same memory), adding and removing dimensions, reductions, indexing, matrix
# products, broadcasting, and sharing memory with NumPy. Then devices: what happens when a
# CPU and a CUDA tensor meet, and the same matrix product timed on the CPU and — when one is
# present — on the GPU.
#
# The timed matrices are small by default so the lesson runs in seconds on a laptop; to see
# a GPU pull ahead, raise `SIZE` below (or `lab lesson 08 --size 4096`).

# %% tags=["parameters"]
SIZE = 256  # side of the square float32 matrices that are timed
REPEATS = 10  # timed matmuls per device; the median is reported

# %%
import statistics
import textwrap
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from lab.lessons.harness import LabUsageError, check, open_lesson, show

if SIZE < 1 or REPEATS < 1:  # refused before a run is opened: no half-made run to clean up
    raise LabUsageError(
        f"SIZE (--size) and REPEATS (--repeats) must be at least 1, got {SIZE} and {REPEATS}"
    )
lesson = open_lesson()
device = lesson.device

# %% [markdown]
# ## Creating tensors
#
# `arange`, `zeros`, `full`, `eye`, `linspace` — and `reshape` to lay 12 numbers out as a
# 3 × 4 grid. `device=` puts a tensor where it will be used (here: the lesson's device).

# %%
grid = torch.arange(12, device=device).reshape(3, 4)
eye = torch.eye(3, device=device)
points = torch.linspace(0, 1, 5, device=device)
print("arange(12).reshape(3, 4):\n", grid.cpu())
print("eye(3):\n", eye.cpu())
print("linspace(0, 1, 5):", points.tolist())
check(
    grid.tolist() == [[4 * i + j for j in range(4)] for i in range(3)],
    "reshape(3, 4) fills row by row: element [i, j] is 4i + j",
)
check(
    torch.equal(torch.zeros(2, 3, device=device), torch.full((2, 3), 0.0, device=device)),
    "zeros(2, 3) equals full((2, 3), 0.0)",
)
check(
    eye.tolist() == [[1.0 if i == j else 0.0 for j in range(3)] for i in range(3)],
    "eye(3) has ones on its diagonal and zeros elsewhere",
)
check(
    points.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0], "linspace(0, 1, 5): 5 points, its end included"
)

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


grid = torch.arange(12, device=device).reshape(3, 4)  # fresh, so this cell can be re-run
flat = grid.view(12)
flat[0] = 100
print("after flat[0] = 100, grid[0] =", grid[0].tolist())
print("grid.stride() =", grid.stride(), "  grid.T.stride() =", grid.T.stride())
check(shares_memory(flat, grid), "view(12) shares the original's memory")
check(grid[0, 0].item() == 100, "writing through the view changes the original")
check(not grid.T.is_contiguous(), "t.T is not contiguous")
check(view_of_transpose_fails(grid), ".view(-1) on t.T raises")
reshaped = grid.T.reshape(-1)
check(not shares_memory(reshaped, grid), "reshape(-1) of t.T is a copy")
check(
    torch.equal(reshaped, grid.T.contiguous().view(-1)),
    "… with the same values as .contiguous().view(-1)",
)

# %% [markdown]
# ## Adding and removing dimensions: `unsqueeze`, `squeeze`, `permute`
#
# `unsqueeze(d)` inserts a size-1 dimension at position `d` (a vector becomes a row or a
# column); `squeeze()` drops every size-1 dimension, `squeeze(d)` only dimension `d` — and
# silently does nothing if that one is not size 1. `permute` reorders dimensions (e.g.
# height × width × channels → channels × height × width, as image libraries disagree): a view
# with reordered strides, like `.T`.

# %%
v = torch.arange(3.0, device=device)
row, column = v.unsqueeze(0), v.unsqueeze(1)
print(
    "v:", tuple(v.shape), " unsqueeze(0):", tuple(row.shape), " unsqueeze(1):", tuple(column.shape)
)
padded = torch.zeros(1, 3, 1, 4, device=device)
print(
    f"{tuple(padded.shape)} → squeeze(): {tuple(padded.squeeze().shape)}, squeeze(0): "
    f"{tuple(padded.squeeze(0).shape)}, squeeze(1): {tuple(padded.squeeze(1).shape)}"
)
hwc = torch.arange(24, device=device).reshape(2, 3, 4)  # height 2, width 3, 4 channels
chw = hwc.permute(2, 0, 1)
print(
    "HWC", tuple(hwc.shape), "→ permute(2, 0, 1) → CHW", tuple(chw.shape), "strides", chw.stride()
)
check(
    row.shape == (1, 3) and column.shape == (3, 1),
    "unsqueeze(0) makes a row (1, 3), unsqueeze(1) a column (3, 1)",
)
check(padded.squeeze().shape == (3, 4), "squeeze() drops every size-1 dimension")
check(padded.squeeze(0).shape == (3, 1, 4), "squeeze(0) drops only dimension 0")
check(padded.squeeze(1).shape == padded.shape, "squeeze(1) on a size-3 dimension changes nothing")
check(
    all(chw[c, h, w] == hwc[h, w, c] for h in range(2) for w in range(3) for c in range(4)),
    "permute(2, 0, 1): chw[c, h, w] == hwc[h, w, c] for every element",
)
check(shares_memory(chw, hwc), "permute returns a view (same memory)")
check(not chw.is_contiguous(), "… which is not contiguous")

# %% [markdown]
# ## Reductions over a dimension
#
# `sum(dim=d)` adds along dimension `d` and removes it: on a 3 × 4 matrix, `dim=0` adds down
# the columns (→ 4 numbers), `dim=1` along the rows (→ 3). `keepdim=True` keeps it as size 1,
# which is what broadcasting needs to divide each row by its own sum. `max(dim=d)` returns
# the values *and* their positions; `argmax(dim=d)` only the positions. Each is checked
# against plain Python loops over the same numbers.

# %%
table = torch.tensor(
    [[3.0, 1.0, 4.0, 1.0], [5.0, 9.0, 2.0, 6.0], [2.0, 7.0, 1.0, 8.0]],
    dtype=torch.float64,
    device=device,
)
rows = table.tolist()
values, indices = table.max(dim=1)
print("table:\n", table.cpu())
print("sum(dim=0) =", table.sum(dim=0).tolist(), "  sum(dim=1) =", table.sum(dim=1).tolist())
print("mean(dim=1) =", table.mean(dim=1).tolist())
print("max(dim=1) → values", values.tolist(), "indices", indices.tolist())
print(f"argmax(dim=0) = {table.argmax(dim=0).tolist()}   argmax() = {table.argmax().item()}")
check(
    table.sum(dim=0).tolist() == [sum(col) for col in zip(*rows, strict=True)],
    "sum(dim=0) adds down each column",
)
check(table.sum(dim=1).tolist() == [sum(r) for r in rows], "sum(dim=1) adds along each row")
normalized = table / table.sum(dim=1, keepdim=True)  # (3, 4) / (3, 1)
check(
    torch.allclose(normalized.sum(dim=1), torch.ones(3, dtype=torch.float64, device=device)),
    "dividing by sum(dim=1, keepdim=True) makes every row sum to 1",
)
check(
    table.mean(dim=1).tolist() == [sum(r) / len(r) for r in rows],
    "mean(dim=1) is each row's average",
)
check(values.tolist() == [max(r) for r in rows], "max(dim=1) gives each row's largest value")
check(indices.tolist() == [r.index(max(r)) for r in rows], "… and the column where it sits")
columns = list(zip(*rows, strict=True))
check(
    table.argmax(dim=0).tolist() == [c.index(max(c)) for c in columns],
    "argmax(dim=0) gives, for each column, the row of its largest value",
)
flat_index = table.argmax().item()
row_of, column_of = divmod(flat_index, table.shape[1])  # a row holds shape[1] = 4 elements
largest = max(max(r) for r in rows)
print(
    f"argmax() = {flat_index} = {row_of}·4 + {column_of}: table[{row_of}, {column_of}] = {largest}"
)
check(
    flat_index == [v for r in rows for v in r].index(largest)
    and rows[row_of][column_of] == largest,
    "argmax() without dim counts in the flattened tensor: row·4 + column of the largest value",
)

# %% [markdown]
# ## Indexing: slices are views, index lists and masks are copies

# %%
grid = torch.arange(12, device=device).reshape(3, 4)
second_row, picked, masked = grid[1], grid[[0, 2]], grid[grid > 5]
print(f"grid[1] = {second_row.tolist()}   grid[[0, 2]] = {picked.tolist()}")
print(f"grid[grid > 5] = {masked.tolist()}")
check(shares_memory(second_row, grid), "basic slicing (grid[1]) gives a view")
check(not shares_memory(picked, grid), "an index list (grid[[0, 2]]) gives a copy")
check(picked.tolist() == [[0, 1, 2, 3], [8, 9, 10, 11]], "… of rows 0 and 2")
check(not shares_memory(masked, grid), "a boolean mask (grid[grid > 5]) gives a copy")
check(
    torch.equal(masked, torch.arange(6, 12, device=device)),
    "a boolean mask picks the matching elements, in order",
)

# %% [markdown]
# ## Matrix products
#
# `a @ b` (= `torch.matmul`) sums products over the shared dimension:
# `(a @ b)[i, j] = Σₖ a[i, k] · b[k, j]`. With broadcasting we can write exactly that sum —
# slow and memory-hungry, but a good check. `*` is elementwise, a different thing. A leading
# batch dimension is broadcast: `(2, 4, 3) @ (3, 5)` is two `(4, 3) @ (3, 5)` products.


# %%
def matmul_by_broadcasting(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a[:, :, None] * b[None, :, :]).sum(dim=1)


generator = torch.Generator().manual_seed(8)
a = torch.randn(4, 3, generator=generator, dtype=torch.float64).to(device)
b = torch.randn(3, 5, generator=generator, dtype=torch.float64).to(device)
batch = torch.randn(2, 4, 3, generator=generator, dtype=torch.float64).to(device)
print(
    "(4, 3) @ (3, 5) →", tuple((a @ b).shape), "   (2, 4, 3) @ (3, 5) →", tuple((batch @ b).shape)
)
check(
    torch.allclose(a @ b, matmul_by_broadcasting(a, b)),
    "a @ b equals Σₖ a[i,k]·b[k,j] written with broadcasting",
)
check(torch.allclose(a @ b, torch.einsum("ik,kj->ij", a, b)), "a @ b equals einsum('ik,kj->ij')")
check(
    torch.allclose(batch @ b, torch.stack([m @ b for m in batch])),
    "matmul broadcasts over the batch dimension",
)

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


column = torch.arange(3, dtype=torch.float64, device=device).reshape(3, 1)
row = torch.arange(4, dtype=torch.float64, device=device).reshape(1, 4) * 10
total = column + row
print("(3, 1) + (1, 4):\n", total.cpu())
by_loops = torch.tensor(
    [[i + 10 * j for j in range(4)] for i in range(3)], dtype=torch.float64, device=device
)
check(torch.equal(total, by_loops), "(3, 1) + (1, 4) → (3, 4) with out[i, j] = col[i] + row[j]")
generator = torch.Generator().manual_seed(8)
cube = torch.randn(2, 3, 4, generator=generator, dtype=torch.float64).to(device)
bias = torch.randn(4, generator=generator, dtype=torch.float64).to(device)
pairs = [((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((5, 1, 2), (3, 1)), ((1, 3), (0, 3))]
for p, q in pairs:
    print(
        f"{p} + {q} → by hand {broadcast_shape(p, q)}, torch {tuple(torch.broadcast_shapes(p, q))}"
    )
check(
    all(broadcast_shape(p, q) == tuple(torch.broadcast_shapes(p, q)) for p, q in pairs),
    "the shape rule by hand agrees with torch.broadcast_shapes on every pair",
)
check(
    torch.equal(cube + bias, add_by_explicit_expansion(cube, bias)),
    "(2, 3, 4) + (4,) equals adding the explicitly expanded tensors",
)
try:
    torch.ones(3, device=device) + torch.ones(4, device=device)
    refused = None
except RuntimeError as exc:
    refused = str(exc)
print("(3,) + (4,) →", refused)
check(refused is not None, "(3,) + (4,) does not broadcast: torch raises RuntimeError")

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


sharing = numpy_sharing()
for claim, holds in sharing.items():
    print(f"{claim:<27} {holds}")
check(sharing["tensor_sees_numpy_write"], "from_numpy: the tensor sees writes made through NumPy")
check(sharing["numpy_sees_tensor_write"], "from_numpy: the array sees writes made through torch")
check(sharing["numpy_view_writes_through"], ".numpy() shares memory too")
check(sharing["torch_tensor_copied"], "torch.tensor(array) copies")


# %% [markdown]
# ## Devices: a CPU tensor and a CUDA tensor do not mix
#
# An operation runs on one device, so all its tensor inputs must live there. Adding a CPU
# tensor to a CUDA tensor raises a `RuntimeError` that names both devices; the fix is to
# move one of them (`t.to(device)`, with `device` chosen once, as this lesson does). The
# one exception: a 0-dimensional CPU tensor (a plain number like `torch.tensor(2.0)`) may be
# combined with a CUDA tensor. On a GPU this cell shows the real error; without one it says
# so and shows instead what torch really answers when asked for a CUDA tensor.


# %%
def error_of(operation) -> str | None:
    """None when the operation runs, else the error it raises, as 'Type: message'."""
    try:
        operation()
    except (RuntimeError, AssertionError) as exc:  # AssertionError: torch built without CUDA
        return f"{type(exc).__name__}: {exc}"
    return None


if device.type == "cuda":
    mixed = error_of(lambda: torch.ones(3, device=device) + torch.ones(3))
    scalar = error_of(lambda: torch.ones(3, device=device) + torch.tensor(2.0))
    print("cuda + cpu        →", mixed)
    print("cuda + cpu 0-dim  →", scalar or "works")
    check(
        mixed is not None and "same device" in mixed,
        "a CUDA tensor + a CPU tensor raises: not on the same device",
    )
    check(scalar is None, "a 0-dimensional CPU tensor may be combined with a CUDA tensor")
elif torch.cuda.is_available():
    print("A GPU is present, but this run uses --device cpu: use --device cuda to see the error.")
else:
    print("No CUDA GPU is visible here, so no CUDA tensor can exist and the mixing error cannot be")
    print("shown. What torch really answers when asked for a CUDA tensor on this machine:")
    no_gpu = error_of(lambda: torch.zeros(1, device="cuda"))
    print("  torch.zeros(1, device='cuda') →", no_gpu)
    check(no_gpu is not None, "without a GPU, creating a CUDA tensor raises")

# %% [markdown]
# ## Timing a matrix product, fairly
#
# GPU kernels run *asynchronously*: the Python call returns before the work is done. So we
# call `torch.cuda.synchronize()` before reading the clock, and we warm up first (the first
# call pays for CUDA context and cuBLAS setup). Inputs already live on the device, so the
# times exclude host↔device copies. Times go to TensorBoard as `timing/cpu_ms` (and
# `timing/gpu_ms`, `timing/speedup`) with the matrix size as the step, so runs with
# different sizes line up on one axis.


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


generator = torch.Generator().manual_seed(8)
x = torch.randn(SIZE, SIZE, generator=generator)
y = torch.randn(SIZE, SIZE, generator=generator)
gflop = 2 * SIZE**3 / 1e9
timings = {"CPU": time_matmul(x, y, REPEATS)}
cpu_result = x @ y
print(
    f"CPU  {SIZE}×{SIZE} matmul: {timings['CPU']:.3f} ms,",
    f"{gflop / timings['CPU'] * 1e3:.1f} GFLOP/s",
)
lesson.writer.add_scalar("timing/cpu_ms", timings["CPU"], SIZE)
check(
    relative_error(cpu_result, x.double() @ y.double()) < 1e-5,
    "float32 CPU matmul agrees with float64 to float32 rounding",
)

reason = gpu_skip_reason(device)
if reason is None:
    gx, gy = x.to(device), y.to(device)
    timings["GPU"] = time_matmul(gx, gy, REPEATS)
    speedup = timings["CPU"] / timings["GPU"]
    name = torch.cuda.get_device_name(device)
    print(
        f"GPU  {SIZE}×{SIZE} matmul: {timings['GPU']:.3f} ms,",
        f"{gflop / timings['GPU'] * 1e3:.1f} GFLOP/s",
    )
    print(f"     on {name}")
    print(f"speedup {speedup:.1f}×")
    lesson.writer.add_scalar("timing/gpu_ms", timings["GPU"], SIZE)
    lesson.writer.add_scalar("timing/speedup", speedup, SIZE)
    error = relative_error(gx @ gy, cpu_result)
    print(f"relative difference GPU vs CPU: {error:.2e}")
    check(error < 1e-4, "the GPU result equals the CPU result within float32 tolerance")
else:
    print(f"GPU part skipped: {reason}. Only the CPU timing is measured and logged.")

# %% [markdown]
# ## The timings as bars
#
# Median milliseconds per matmul (lower is better). Without a GPU there is one bar, and the
# picture says why — no GPU number is made up.

# %%
fig, ax = plt.subplots(figsize=(5.5, 3.4))
measured = [timings.get(name, 0.0) for name in ("CPU", "GPU")]
bars = ax.bar(["CPU", "GPU"], measured, color=["tab:blue", "tab:green"])
ax.bar_label(bars, labels=[f"{timings[n]:.2f} ms" if n in timings else "" for n in ("CPU", "GPU")])
ax.set(ylabel="ms per matmul (median)", title=f"{SIZE}×{SIZE} float32 matmul, {REPEATS} repeats")
ax.margins(y=0.2)
if "GPU" not in timings:  # an empty slot that says why, never an invented number
    notice = "not measured:\n" + textwrap.fill(reason, 26)
    ax.text(1, max(measured) / 2, notice, ha="center", va="center", fontsize=8, color="tab:red")
fig.tight_layout()
show(fig, "timing")

# %% [markdown]
# ## What to take away
#
# - `view` never copies (and may refuse); `reshape` copies when it must; `permute`/`.T` are
#   views with reordered strides.
# - Reductions remove the reduced dimension unless `keepdim=True`; `max(dim)` gives values
#   and indices.
# - Broadcasting aligns shapes from the right and stretches size-1 dimensions.
# - Keep every tensor of an operation on one device; time GPU work only after
#   `torch.cuda.synchronize()`.

# %%
lesson.done()
