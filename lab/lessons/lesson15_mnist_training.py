# %% [markdown]
# # 15 · Training a small MNIST classifier end to end
#
# Everything so far in one loop, in the style of `pytorch/examples/mnist`: a Dataset from
# `data/MNIST/raw`, DataLoaders, a small CNN, an optimizer, and TensorBoard curves of
# `train/loss`, `test/loss` and `test/accuracy`.
#
# - It runs on the CPU when there is no GPU, and on CUDA it uses **automatic mixed precision**:
#   `torch.autocast` runs convolutions and matmuls in bfloat16 (or float16 on GPUs without
#   bf16) while the weights stay float32; with float16 a `GradScaler` scales the loss so
#   small gradients do not underflow (bfloat16 has float32's range and needs no scaler).
# - Before trusting a training loop, check that it can **overfit one fixed batch**: if the loss
#   on a single batch will not go down, nothing else will.
# - Test loss and accuracy are **sums over samples divided by N**, so the evaluation batch
#   size cannot change them (a mean of per-batch means would be wrong for a short last batch).
#
# Options (defaults in `--help`): `--epochs`, `--batch-size`, `--test-batch-size`, `--lr`,
# `--seed`, `--amp`, `--workers`, `--data-dir`; `--dry-run` trains on a few batches only.

# %%
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms

from lab.data import require_dataset
from lab.lessons.harness import LabUsageError, LessonRun, lesson_parser, run_main

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # over the 60 000 training images
DRY_RUN_BATCHES = 3
OVERFIT_BATCH, OVERFIT_STEPS, OVERFIT_LR = 16, 25, 1e-2

# %% [markdown]
# ## The data


# %%
def load_mnist(data_dir: Path | None = None, train: bool = True) -> datasets.MNIST:
    raw = require_dataset("mnist", data_dir)  # <data>/MNIST/raw
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]
    )
    try:
        return datasets.MNIST(
            root=str(raw.parent.parent), train=train, transform=transform, download=False
        )
    except RuntimeError:  # torchvision wants the decompressed idx files next to the .gz
        raise LabUsageError(
            f"dataset 'mnist' in {raw} is incomplete (torchvision reads the decompressed "
            "idx files); fetch it again with `invoke download-data --dataset mnist`"
        ) from None


# %% [markdown]
# ## The model: two convolutions, two linear layers
#
# 1×28×28 → conv 3×3 → 8×26×26 → max-pool → 8×13×13 → conv 3×3 → 16×11×11 → max-pool →
# 16×5×5 = 400 features → 64 → 10 logits. Dropout only acts in `train()` mode.


# %%
class Net(nn.Module):
    def __init__(self, dropout: float = 0.25) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3)
        self.conv2 = nn.Conv2d(8, 16, 3)
        self.fc1 = nn.Linear(16 * 5 * 5, 64)
        self.dropout = nn.Dropout(dropout)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = self.dropout(F.relu(self.fc1(torch.flatten(x, 1))))
        return self.fc2(x)  # logits; cross_entropy applies log_softmax itself


# %% [markdown]
# ## Mixed precision, on CUDA only


# %%
def amp_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `--amp`, or None for plain float32 (always on the CPU)."""
    if choice == "off" or device.type != "cuda":
        return None
    if choice == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


# %% [markdown]
# ## One optimization step, and an evaluation that does not depend on the batch size


# %%
def train_step(model, optimizer, scaler, images, labels, dtype) -> float:
    optimizer.zero_grad(set_to_none=True)
    with autocast(images.device, dtype):
        loss = F.cross_entropy(model(images), labels)
    scaler.scale(loss).backward()  # the scaler is a no-op unless it is enabled (float16)
    scaler.step(optimizer)
    scaler.update()
    return loss.item()


@torch.no_grad()
def evaluate(model, loader, device, dtype=None) -> tuple[float, float]:
    """(mean loss, accuracy) over every sample the loader yields."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for images, labels in loader:
        images, labels = images.to(device), labels.to(device)
        with autocast(device, dtype):
            logits = model(images)
        total_loss += F.cross_entropy(logits.float(), labels, reduction="sum").item()
        correct += (logits.argmax(dim=1) == labels).sum().item()
        count += len(labels)
    return total_loss / count, correct / count


def fixed_batch_losses(images, labels, steps: int, lr: float, dtype=None) -> list[float]:
    """Train a fresh dropout-free model on one batch: the loss before each step, then after."""
    model = Net(dropout=0.0).to(images.device)  # no dropout: the loss measures the fit alone
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler(images.device.type, enabled=dtype == torch.float16)
    losses = [train_step(model, optimizer, scaler, images, labels, dtype) for _ in range(steps)]
    with torch.no_grad(), autocast(images.device, dtype):
        losses.append(F.cross_entropy(model(images).float(), labels).item())
    return losses


# %% [markdown]
# ## The whole lesson


# %%
def check_model(run: LessonRun, images: torch.Tensor, dtype) -> None:
    model = Net().to(run.device)
    model.eval()
    with torch.no_grad():
        run.check(
            torch.equal(model(images), model(images)),
            "in eval() mode dropout is off: the same input gives the same output",
        )
    if dtype is not None:
        with torch.no_grad(), autocast(run.device, dtype):
            logits = model(images)
        run.check(
            logits.dtype == dtype and model.fc2.weight.dtype == torch.float32,
            f"under autocast the layers compute in {dtype}, the weights stay float32",
        )
    else:
        print("AMP not used: it is for CUDA here (or --amp off); training in float32")


def train(run: LessonRun, model, train_loader, test_loader, dtype) -> tuple[float, float]:
    args, device = run.args, run.device
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        for batch, (images, labels) in enumerate(train_loader):
            if args.dry_run and batch == DRY_RUN_BATCHES:
                break
            images, labels = images.to(device), labels.to(device)
            loss = train_step(model, optimizer, scaler, images, labels, dtype)
            run.writer.add_scalar("train/loss", loss, step)
            if batch % args.log_interval == 0:
                print(f"epoch {epoch} batch {batch}/{len(train_loader)} loss {loss:.4f}")
            step += 1
        test_loss, accuracy = evaluate(model, test_loader, device, dtype)
        run.writer.add_scalar("test/loss", test_loss, epoch)
        run.writer.add_scalar("test/accuracy", accuracy, epoch)
        print(f"epoch {epoch}: test loss {test_loss:.4f}, accuracy {accuracy:.2%}")
    return test_loss, accuracy


def run_lesson(run: LessonRun) -> None:
    args, device = run.args, run.device
    torch.manual_seed(args.seed)
    dtype = amp_dtype(args.amp, device)
    train_set, test_set = load_mnist(args.data_dir, True), load_mnist(args.data_dir, False)
    if args.dry_run:
        test_set = Subset(test_set, range(min(256, len(test_set))))
    cuda = device.type == "cuda"
    train_loader = DataLoader(
        train_set,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=args.workers,
        pin_memory=cuda,
    )
    test_loader = DataLoader(
        test_set, batch_size=args.test_batch_size, num_workers=args.workers, pin_memory=cuda
    )
    images, labels = (t.to(device) for t in next(iter(train_loader)))
    check_model(run, images, dtype)

    # a larger step than --lr: this is a quick can-it-learn test, not the real training
    fixed = images[:OVERFIT_BATCH], labels[:OVERFIT_BATCH]
    losses = fixed_batch_losses(*fixed, steps=OVERFIT_STEPS, lr=OVERFIT_LR, dtype=dtype)
    for step, loss in enumerate(losses):
        run.writer.add_scalar("overfit_one_batch/loss", loss, step)
    print(f"one fixed batch of {len(fixed[1])}: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    run.check(
        losses[-1] < 0.5 * losses[0],
        "training on one fixed batch at least halves its loss (the loop can learn)",
    )

    model = Net().to(device)
    train(run, model, train_loader, test_loader, dtype)
    check_evaluation(run, model, test_set)


def check_evaluation(run: LessonRun, model, test_set, limit: int = 1000) -> None:
    """Evaluate in one batch and in batches of 7 (short last batch): same loss and accuracy.

    On a float32 CPU copy, so both runs do the same arithmetic whatever device trained it.
    """
    model = copy.deepcopy(model).cpu()
    subset = Subset(test_set, range(min(limit, len(test_set))))
    whole, small = (
        evaluate(model, DataLoader(subset, batch_size=size), torch.device("cpu"))
        for size in (len(subset), 7)
    )
    print(f"{len(subset)} test images: one batch {whole}, batches of 7 {small}")
    run.check(
        whole[1] == small[1] and abs(whole[0] - small[0]) <= 1e-5 * max(1.0, whole[0]),
        "test loss and accuracy do not depend on the evaluation batch size",
    )


def build_parser():
    parser = lesson_parser("Training a small MNIST classifier end to end", data=True)
    add = parser.add_argument
    add("--epochs", type=int, default=1, help="passes over the training set (default: 1)")
    add("--batch-size", type=int, default=64, help="training batch size (default: 64)")
    add("--test-batch-size", type=int, default=1000, help="evaluation batch size (default: 1000)")
    add("--lr", type=float, default=1e-3, help="Adam learning rate (default: 0.001)")
    add("--seed", type=int, default=1, help="random seed (default: 1)")
    add(
        "--amp",
        choices=("auto", "bf16", "fp16", "off"),
        default="auto",
        help="mixed precision on CUDA: auto = bf16 where supported, else fp16 (default: auto); "
        "ignored on the CPU",
    )
    add("--workers", type=int, default=0, help="DataLoader worker processes (default: 0)")
    add("--log-interval", type=int, default=100, help="print every N batches (default: 100)")
    return parser


def main(argv: list[str] | None = None) -> LessonRun:
    return run_main("15_mnist_training", run_lesson, argv, build_parser())


# %%
if __name__ == "__main__":
    main()
