# %% [markdown]
# # 15 · Training a small MNIST classifier end to end
#
# Everything so far in one loop, in the style of `pytorch/examples/mnist`: a Dataset from
# `data/MNIST/raw`, DataLoaders, a small CNN, an optimizer, a train function and a test
# function, and TensorBoard curves of `train/loss`, `test/loss` and `test/accuracy`.
#
# - It runs on the CPU when there is no GPU, and on CUDA it uses **automatic mixed precision**:
#   `torch.autocast` runs convolutions and matmuls in bfloat16 (or float16 on GPUs without
#   bf16) while the weights stay float32; with float16 a `GradScaler` scales the loss so
#   small gradients do not underflow (bfloat16 has float32's range and needs no scaler).
# - Before trusting a training loop, check that it can **overfit one fixed batch**: if the loss
#   on a single batch will not go down, nothing else will.
# - Test loss and accuracy are **sums over samples divided by N**, so the evaluation batch
#   size cannot change them (a mean of per-batch means would be wrong for a short last batch).

# %% tags=["parameters"]
EPOCHS = 1  # passes over the training set
BATCH_SIZE = 64  # training batch size
TEST_BATCH_SIZE = 1000  # evaluation batch size
LR = 0.001  # Adam learning rate
SEED = 1  # random seed
AMP = "auto"  # mixed precision on CUDA: auto (bf16 where supported, else fp16), bf16, fp16, off
WORKERS = 0  # DataLoader worker processes
LOG_INTERVAL = 100  # print every N batches
DRY_RUN = False  # train on a few batches only, test on 256 images

# %%
import copy
from pathlib import Path

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Subset, TensorDataset
from torchvision import datasets, transforms
from tqdm.auto import tqdm

from lab.lessons.harness import LabUsageError, check, open_lesson, show
from lab.lessons.imaging import image_grid

MNIST_MEAN = 0.1307  # over the 60 000 training images
MNIST_STD = 0.3081
DRY_RUN_BATCHES = 3  # training batches per epoch with DRY_RUN
OVERFIT_BATCH = 16  # the fixed batch the can-it-learn check trains on
OVERFIT_STEPS = 25
OVERFIT_LR = 1e-2

lesson = open_lesson(datasets=("mnist",))
device = lesson.device
torch.manual_seed(SEED)

# %% [markdown]
# ## The data
#
# torchvision's `MNIST` reads the idx files in `<data>/MNIST/raw`. Each image becomes a
# 1×28×28 tensor, normalized with the training set's mean and std. We check a sample against
# the idx files read by hand: after a 16-byte header the images are 28·28 bytes each, row by
# row; after an 8-byte header the labels are one byte each.


# %%
def load_mnist(data_dir: Path, train: bool = True) -> datasets.MNIST:
    transform = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((MNIST_MEAN,), (MNIST_STD,))]
    )
    try:
        return datasets.MNIST(root=str(data_dir), train=train, transform=transform, download=False)
    except RuntimeError:  # torchvision wants the decompressed idx files next to the .gz
        raise LabUsageError(
            f"dataset 'mnist' in {Path(data_dir) / 'MNIST' / 'raw'} is incomplete (torchvision "
            "reads the decompressed idx files); fetch it again with "
            "`invoke download-data --dataset mnist`"
        ) from None


train_set, test_set = load_mnist(lesson.data_dir, True), load_mnist(lesson.data_dir, False)
if DRY_RUN:
    test_set = Subset(test_set, range(min(256, len(test_set))))
image, label = train_set[0]
print(f"{len(train_set)} training and {len(test_set)} test images")
print(f"train_set[0]: image {tuple(image.shape)} {image.dtype}, label {label}")
idx = Path(lesson.data_dir) / "MNIST" / "raw"
pixels = (idx / "train-images-idx3-ubyte").read_bytes()[16 : 16 + 28 * 28]
raw = torch.tensor(list(pixels), dtype=torch.float64).view(28, 28) / 255
first_label = (idx / "train-labels-idx1-ubyte").read_bytes()[8]
check(
    tuple(image.shape) == (1, 28, 28)
    and torch.allclose(image[0].double() * MNIST_STD + MNIST_MEAN, raw, rtol=0, atol=1e-6)
    and label == first_label,
    "a sample is the idx file's first 28×28 digit, scaled to [0, 1] then (x - mean) / std, "
    "with its label",
)

# %%
digits = [train_set[i] for i in range(min(16, len(train_set)))]
show(image_grid([x * MNIST_STD + MNIST_MEAN for x, _ in digits], [y for _, y in digits]), "digits")

# %% [markdown]
# ## DataLoaders
#
# `pin_memory` on CUDA lets batches copy to the GPU asynchronously.

# %%
cuda = device.type == "cuda"
train_loader = DataLoader(
    train_set, batch_size=BATCH_SIZE, shuffle=True, num_workers=WORKERS, pin_memory=cuda
)
test_loader = DataLoader(test_set, batch_size=TEST_BATCH_SIZE, num_workers=WORKERS, pin_memory=cuda)
images, labels = (t.to(device) for t in next(iter(train_loader)))
print(f"{len(train_loader)} training batches of {BATCH_SIZE}; first batch {tuple(images.shape)}")

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


model = Net().to(device)
print(model)
print(f"{sum(p.numel() for p in model.parameters())} parameters")
model.eval()
with torch.no_grad():
    logits = model(images)
    print(f"logits for the first batch: {tuple(logits.shape)}")
    check(
        torch.equal(logits, model(images)),
        "in eval() mode dropout is off: the same input gives the same output",
    )

# %% [markdown]
# ## Mixed precision, on CUDA only


# %%
def amp_dtype(choice: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for the AMP setting, or None for plain float32 (always on the CPU)."""
    if choice not in ("auto", "bf16", "fp16", "off"):
        raise LabUsageError(f"AMP must be auto, bf16, fp16 or off, not {choice!r}")
    if choice == "off" or device.type != "cuda":
        return None
    if choice == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[choice]


def autocast(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


dtype = amp_dtype(AMP, device)
if dtype is not None:
    with torch.no_grad(), autocast(device, dtype):
        logits = model(images)
    print(f"autocast {dtype}: logits {logits.dtype}, fc2.weight {model.fc2.weight.dtype}")
    check(
        logits.dtype == dtype and model.fc2.weight.dtype == torch.float32,
        f"under autocast the layers compute in {dtype}, the weights stay float32",
    )
else:
    print(f"AMP not used on {device} (AMP={AMP!r}): training in float32")

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
        # in float64 whatever the logits' dtype (bfloat16 under AMP): 10 000 terms add up
        total_loss += F.cross_entropy(logits.double(), labels, reduction="sum").item()
        correct += (logits.argmax(dim=1) == labels).sum().item()
        count += len(labels)
    return total_loss / count, correct / count


untrained = evaluate(Net().to(device), test_loader, device, dtype)
print(f"an untrained model: test loss {untrained[0]:.3f} (log 10 = 2.303), ", end="")
print(f"accuracy {untrained[1]:.1%}")

# %% [markdown]
# `train_step` is the loop's heart, so we check its steps, not only where training ends up.
# With plain SGD, in float64 and without AMP, two calls must move every weight exactly as
# `w ← w − lr·∇L(w)` does, written out by hand with the gradient from `torch.autograd.grad`
# at the current weights; each call returns the loss *before* its step. (A forgotten
# `zero_grad()` would add the first gradient into the second step.)


# %%
def sgd_by_hand(model, images, labels, lr: float, steps: int):
    """Plain SGD written out on a copy: (loss before each step, weights after each step)."""
    model = copy.deepcopy(model)
    losses, weights = [], []
    for _ in range(steps):
        loss = F.cross_entropy(model(images), labels)
        gradients = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for weight, gradient in zip(model.parameters(), gradients, strict=True):
                weight -= lr * gradient
        losses.append(loss.item())
        weights.append([w.detach().clone() for w in model.parameters()])
    return losses, weights


probe = Net(dropout=0.0).to(device, torch.float64)
few = images[:8].double(), labels[:8]
want_losses, want_weights = sgd_by_hand(probe, *few, lr=0.1, steps=2)
sgd = torch.optim.SGD(probe.parameters(), lr=0.1)
no_scaler = torch.amp.GradScaler(device.type, enabled=False)  # and dtype None: no AMP
got_losses, got_weights = [], []
for _ in range(2):
    got_losses.append(train_step(probe, sgd, no_scaler, *few, None))
    got_weights.append([w.detach().clone() for w in probe.parameters()])
gaps = [
    max((a - b).abs().max().item() for a, b in zip(*pair, strict=True))
    for pair in zip(got_weights, want_weights, strict=True)
]
print(f"losses by train_step {got_losses}, by hand {want_losses}; max weight gap per step {gaps}")
check(
    all(abs(a - b) <= 1e-12 for a, b in zip(got_losses, want_losses, strict=True))
    and all(gap <= 1e-12 for gap in gaps),
    "two train_step calls with SGD are two steps w ← w − lr·∇L(w) by hand, each returning "
    "the loss before its step",
)

# %% [markdown]
# ## Can the loop learn? Overfit one fixed batch
#
# A fresh dropout-free model, a larger step than `LR` (a quick can-it-learn test, not the real
# training), the same batch over and over.


# %%
def fixed_batch_losses(images, labels, steps: int, lr: float, dtype=None) -> list[float]:
    """Train a fresh dropout-free model on one batch: the loss before each step, then after."""
    model = Net(dropout=0.0).to(images.device)  # no dropout: the loss measures the fit alone
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scaler = torch.amp.GradScaler(images.device.type, enabled=dtype == torch.float16)
    losses = [train_step(model, optimizer, scaler, images, labels, dtype) for _ in range(steps)]
    with torch.no_grad(), autocast(images.device, dtype):
        losses.append(F.cross_entropy(model(images).float(), labels).item())
    return losses


fixed = images[:OVERFIT_BATCH], labels[:OVERFIT_BATCH]
losses = fixed_batch_losses(*fixed, steps=OVERFIT_STEPS, lr=OVERFIT_LR, dtype=dtype)
for step, loss in enumerate(losses):
    lesson.writer.add_scalar("overfit_one_batch/loss", loss, step)
print(f"one fixed batch of {len(fixed[1])}: loss " + " → ".join(f"{x:.3f}" for x in losses[::5]))
check(
    losses[-1] < 0.5 * losses[0],
    "training on one fixed batch at least halves its loss (the loop can learn)",
)

# %% [markdown]
# ## Training
#
# One `train_epoch` per epoch, then `evaluate` on the test set, as pytorch/examples does. The
# progress bar is `tqdm.auto`; the losses go to TensorBoard as they come, so its Scalars tab
# follows the training while this cell runs.


# %%
def train_epoch(
    model, optimizer, scaler, loader, device, dtype, max_batches=None, log=None, desc="train"
) -> list[float]:
    """One pass over ``loader`` (or its first ``max_batches``); the loss of every step."""
    model.train()
    losses = []
    total = min(len(loader), max_batches) if max_batches else len(loader)
    for batch, (images, labels) in enumerate(tqdm(loader, total=total, desc=desc)):
        if batch == total:
            break
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        losses.append(train_step(model, optimizer, scaler, images, labels, dtype))
        if log is not None:
            log(batch, losses[-1])
    return losses


torch.manual_seed(SEED)
model = Net().to(device)
optimizer = torch.optim.Adam(model.parameters(), lr=LR)
scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
history = {"train/loss": [], "test/loss": [], "test/accuracy": []}


def log_step(batch: int, loss: float) -> None:
    lesson.writer.add_scalar("train/loss", loss, len(history["train/loss"]))
    history["train/loss"].append(loss)
    if batch % LOG_INTERVAL == 0:
        print(f"  batch {batch}: loss {loss:.4f}")


for epoch in range(1, EPOCHS + 1):
    train_epoch(
        model,
        optimizer,
        scaler,
        train_loader,
        device,
        dtype,
        max_batches=DRY_RUN_BATCHES if DRY_RUN else None,
        log=log_step,
        desc=f"epoch {epoch}",
    )
    test_loss, accuracy = evaluate(model, test_loader, device, dtype)
    history["test/loss"].append(test_loss)
    history["test/accuracy"].append(accuracy)
    lesson.writer.add_scalar("test/loss", test_loss, epoch)
    lesson.writer.add_scalar("test/accuracy", accuracy, epoch)
    print(f"epoch {epoch}: test loss {test_loss:.4f}, accuracy {accuracy:.2%}")

# %% [markdown]
# ## The curves

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.2))
few = len(history["train/loss"]) <= 50  # markers, so a dry run's few points show
left.plot(history["train/loss"], lw=0.8, marker="o" if few else None, markersize=3)
left.set(title="training loss per step", xlabel="step", ylabel="cross-entropy")
epochs = range(1, len(history["test/loss"]) + 1)
right.plot(epochs, history["test/loss"], "o-", label="test loss")
right.set(title="test set per epoch", xlabel="epoch", ylabel="loss")
twin = right.twinx()
twin.plot(epochs, history["test/accuracy"], "s--", color="tab:green", label="accuracy")
twin.set(ylabel="accuracy", ylim=(0, 1))
right.legend(loc="upper left")
twin.legend(loc="upper right")
fig.tight_layout()
show(fig, "curves")

# %% [markdown]
# ## The evaluation does not depend on its batch size
#
# Evaluate in one batch and in batches of 7 (a short last batch): same loss and accuracy — and
# both equal the mean cross-entropy and the fraction classified right, computed on all the
# images at once without `evaluate`. On a float64 CPU copy, so every run does the same
# arithmetic whatever device trained the model.

# %%
model64 = copy.deepcopy(model).cpu().double()  # in the mode training left it: evaluate decides
subset = Subset(test_set, range(min(1000, len(test_set))))
xs = torch.stack([subset[k][0] for k in range(len(subset))]).double()
ys = torch.tensor([subset[k][1] for k in range(len(subset))])
whole, small = (
    evaluate(model64, DataLoader(TensorDataset(xs, ys), batch_size=size), torch.device("cpu"))
    for size in (len(subset), 7)
)
with torch.no_grad():
    logits = model64.eval()(xs)
at_once = F.cross_entropy(logits, ys).item(), (logits.argmax(dim=1) == ys).double().mean().item()
print(f"{len(subset)} test images: one batch {whole}, batches of 7 {small}, at once {at_once}")
check(
    whole[1] == small[1] and abs(whole[0] - small[0]) <= 1e-9 * max(1.0, whole[0]),
    "test loss and accuracy do not depend on the evaluation batch size",
)
check(
    whole[1] == at_once[1] and abs(whole[0] - at_once[0]) <= 1e-9 * max(1.0, at_once[0]),
    "evaluate's loss and accuracy are the mean cross-entropy and the fraction right",
)

# %% [markdown]
# ## What it gets wrong
#
# Every test image whose predicted class (the largest logit) is not its label, by index into
# the test set. Two things could silently go wrong: the predictions could come back in
# another order than the test set's (a shuffled loader), so the grid would show the wrong
# images; and a batched prediction could differ from the model's answer for one image. So the
# labels must be the test set's stored labels, in order, and every image shown is run
# through the model again, alone.


# %%
@torch.no_grad()
def predictions(model, dataset, batch_size: int = 1000) -> tuple[torch.Tensor, torch.Tensor]:
    """(predicted class, label) for every sample of ``dataset`` in its order, CPU, float64."""
    model = copy.deepcopy(model).cpu().double().eval()
    predicted, truth = [], []
    for images, labels in DataLoader(dataset, batch_size=batch_size):
        predicted.append(model(images.double()).argmax(dim=1))
        truth.append(labels)
    return torch.cat(predicted), torch.cat(truth)


def stored_labels(dataset) -> torch.Tensor:
    """The labels as MNIST stores them, read without a loader."""
    if isinstance(dataset, Subset):
        return stored_labels(dataset.dataset)[list(dataset.indices)]
    return dataset.targets


@torch.no_grad()
def predicted_alone(model, image: torch.Tensor) -> int:
    return model(image[None].double()).argmax().item()


predicted, truth = predictions(model, test_set)
wrong = (predicted != truth).nonzero().flatten()
shown = wrong[:16].tolist()
right = (predicted == truth).nonzero().flatten()[:16].tolist()
print(f"{len(wrong)} of {len(truth)} test images misclassified ", end="")
print(f"(after the last epoch, evaluate reported {history['test/accuracy'][-1]:.2%} accuracy)")
check(
    torch.equal(truth, stored_labels(test_set)),
    "the predictions come back in the test set's order: label k is test image k's",
)
check(
    all(predicted_alone(model64, test_set[k][0]) == predicted[k] != test_set[k][1] for k in shown)
    and all(predicted_alone(model64, test_set[k][0]) == test_set[k][1] for k in right),
    "each image shown as misclassified, run alone through the model, is predicted as its title "
    "says, not as its label; the first ones counted right are right",
)

# %%
if shown:
    pictures = [test_set[i][0] * MNIST_STD + MNIST_MEAN for i in shown]
    titles = [f"pred {predicted[i].item()} / true {truth[i].item()}" for i in shown]
    show(image_grid(pictures, titles, ncols=8, size=1.3), "misclassified")
else:
    print("no misclassified test images")

# %%
lesson.done()
