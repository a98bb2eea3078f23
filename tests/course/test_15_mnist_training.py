"""Lesson 15: a small MNIST classifier trained end to end; evaluation maths; AMP choice."""

from __future__ import annotations

import math

import pytest
import torch
from support.lessons import assert_mutation_caught, definitions, run_lesson
from support.synthetic import install_mnist
from support.tbutil import read_scalars, single_run_dir
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lab.lessons.harness import LabUsageError

lesson = definitions("15")
CPU = torch.device("cpu")

MUTATIONS = [
    ('reduction="sum"', 'reduction="mean"'),
    ("    scaler.step(optimizer)\n", ""),
    ("    model.eval()\n    total_loss", "    total_loss"),  # dropout left on while testing
    # gradients pile up from step to step: the fixed batch still overfits
    ("    optimizer.zero_grad(set_to_none=True)\n", ""),
    ("    return loss.item()", "    return F.cross_entropy(model(images), labels).item()"),  # after
    ("count += len(labels)", "count += loader.batch_size"),  # a short last batch counted full
    # the predictions in another order than the test set's: the grid shows the wrong images
    (
        "in DataLoader(dataset, batch_size=batch_size):",
        "in DataLoader(dataset, batch_size=batch_size, shuffle=True):",
    ),
    ("Normalize((MNIST_MEAN,), (MNIST_STD,))", "Normalize((MNIST_STD,), (MNIST_MEAN,))"),
]
MUTATION_IDS = [
    "mean-of-means",
    "no-step",
    "no-eval",
    "no-zero-grad",
    "loss-after-step",
    "count-batches",
    "shuffled-predictions",
    "mean-std-swapped",
]


class FixedLogits(nn.Module):
    """A 'model' whose logits for sample i are given: the evaluation maths can be checked."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, index: torch.Tensor) -> torch.Tensor:
        return self.logits[index.long()]  # predictions() hands its inputs over as float64


def test_evaluate_sums_over_samples_whatever_the_batch_size():
    logits = torch.zeros(10, 3)
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    predicted = torch.tensor([0, 1, 2, 0, 1, 2, 0, 2, 0, 1])  # 7 of 10 right
    logits[torch.arange(10), predicted] = math.log(2.0)  # softmax: 2/4 on predicted, 1/4 else
    expected_loss = (7 * math.log(2) + 3 * math.log(4)) / 10  # right: -log 1/2, wrong: -log 1/4
    model = FixedLogits(logits)
    dataset = TensorDataset(torch.arange(10), labels)
    for batch_size in (10, 3, 4, 1):  # 3 and 4 leave a short last batch
        loss, accuracy = lesson.evaluate(model, DataLoader(dataset, batch_size=batch_size), CPU)
        assert accuracy == 0.7
        assert loss == pytest.approx(expected_loss, rel=1e-6)
    predicted_back, truth = lesson.predictions(model, dataset, batch_size=4)
    assert torch.equal(predicted_back, predicted) and torch.equal(truth, labels)


def test_sgd_by_hand_takes_the_closed_form_softmax_step():
    # a zero linear layer: softmax is uniform, so dL/dW = (1/3 - onehot)^T x / N exactly
    model = nn.Linear(2, 3, bias=False).double()
    nn.init.zeros_(model.weight)
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([0, 2])
    losses, weights = lesson.sgd_by_hand(model, x, y, lr=0.5, steps=1)
    gradient = (torch.full((2, 3), 1 / 3, dtype=torch.float64) - nn.functional.one_hot(y, 3)).T
    assert losses == [pytest.approx(math.log(3))]
    assert torch.allclose(weights[0][0], -0.5 * gradient @ x / 2, rtol=1e-14, atol=1e-15)
    assert torch.equal(model.weight, torch.zeros(3, 2, dtype=torch.float64)), "on a copy"


def test_stored_labels_follow_a_subsets_indices(data_dir):
    install_mnist(data_dir)
    test = lesson.load_mnist(data_dir, train=False)
    assert lesson.stored_labels(test).tolist() == [i % 10 for i in range(20)]
    subset = torch.utils.data.Subset(test, [13, 2, 7])
    assert lesson.stored_labels(subset).tolist() == [3, 2, 7]


def test_net_maps_28x28_digits_to_10_logits():
    assert lesson.Net()(torch.zeros(5, 1, 28, 28)).shape == (5, 10)


def test_dropout_is_the_only_train_eval_difference():
    torch.manual_seed(0)
    model, x = lesson.Net(), torch.randn(4, 1, 28, 28)
    model.train()
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))
    quiet = lesson.Net(dropout=0.0).train()  # what the fixed-batch check trains
    assert torch.equal(quiet(x), quiet(x))


@pytest.mark.parametrize("choice", ["auto", "bf16", "fp16", "off"])
def test_amp_is_never_used_on_the_cpu(choice):
    assert lesson.amp_dtype(choice, CPU) is None


def test_amp_choice_on_cuda():
    cuda = torch.device("cuda")  # amp_dtype only looks at the device type for explicit choices
    assert lesson.amp_dtype("bf16", cuda) is torch.bfloat16
    assert lesson.amp_dtype("fp16", cuda) is torch.float16
    assert lesson.amp_dtype("off", cuda) is None
    if torch.cuda.is_available():
        assert lesson.amp_dtype("auto", cuda) in (torch.bfloat16, torch.float16)


def test_an_unknown_amp_setting_is_one_line(data_dir, runs_dir):
    install_mnist(data_dir)
    with pytest.raises(LabUsageError, match="AMP must be auto, bf16, fp16 or off"):
        run_lesson("15", "--dry-run", "--amp", "fp8")


def test_fixed_batch_loss_goes_down(data_dir):
    install_mnist(data_dir)
    images, labels = next(iter(DataLoader(lesson.load_mnist(data_dir), batch_size=32)))
    torch.manual_seed(0)
    losses = lesson.fixed_batch_losses(
        images, labels, steps=lesson.OVERFIT_STEPS, lr=lesson.OVERFIT_LR
    )
    assert len(losses) == lesson.OVERFIT_STEPS + 1
    assert losses[0] == pytest.approx(math.log(10), abs=0.2)  # untrained: about uniform
    assert losses[-1] < 0.5 * losses[0]


def test_train_epoch_stops_after_max_batches_and_learns():
    torch.manual_seed(0)
    images, labels = torch.randn(40, 1, 28, 28), torch.arange(40) % 10
    loader = DataLoader(TensorDataset(images, labels), batch_size=8)
    model = lesson.Net(dropout=0.0)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    logged = []
    losses = lesson.train_epoch(
        model, optimizer, scaler, loader, CPU, None, max_batches=3, log=lambda *a: logged.append(a)
    )
    assert len(losses) == 3 and [batch for batch, _ in logged] == [0, 1, 2]
    for _ in range(10):
        lesson.train_epoch(model, optimizer, scaler, loader, CPU, None)
    assert lesson.evaluate(model, loader, CPU)[0] < 0.5 * losses[0]


def test_dataset_is_torchvisions_mnist_normalized(data_dir):
    install_mnist(data_dir)
    train, test = lesson.load_mnist(data_dir, True), lesson.load_mnist(data_dir, False)
    assert (len(train), len(test)) == (60, 20)
    image, label = train[13]
    assert image.shape == (1, 28, 28) and label == 13 % 10
    raw = train.data[13].float() / 255
    assert torch.allclose(image[0], (raw - lesson.MNIST_MEAN) / lesson.MNIST_STD)


@pytest.mark.parametrize(
    ("argv", "train_points", "test_points"),
    [
        (["--dry-run", "--batch-size", "16"], lesson.DRY_RUN_BATCHES, 1),  # 4 batches, capped
        (["--batch-size", "32", "--epochs", "2"], 4, 2),  # 60 images: 2 batches per epoch
    ],
)
def test_cells_train_and_log(data_dir, runs_dir, argv, train_points, test_points):
    install_mnist(data_dir)
    ns = run_lesson("15", *argv)
    # sample, eval determinism, two SGD steps, overfit, batch size, evaluate at once, the
    # predictions' order, the misclassified ones alone
    assert len(ns.lesson.checks) == 8
    assert ns.lesson.figures == ["digits", "curves", "misclassified"]
    scalars = read_scalars(single_run_dir(runs_dir, "15_mnist_training"))
    assert [step for step, _ in scalars["train/loss"]] == list(range(train_points))
    assert [step for step, _ in scalars["test/accuracy"]] == list(range(1, test_points + 1))
    for _, accuracy in scalars["test/accuracy"]:
        assert round(accuracy * 20, 4).is_integer()  # a count out of 20 test images
    assert [value for _, value in scalars["train/loss"]] == pytest.approx(ns.history["train/loss"])
    overfit = [value for _, value in scalars["overfit_one_batch/loss"]]
    assert len(overfit) == lesson.OVERFIT_STEPS + 1 and overfit[-1] < 0.5 * overfit[0]
    # the grid shows misclassified images only: recompute their predictions independently
    model = ns.model.cpu().eval()
    for index in ns.shown:
        image, label = ns.test_set[index]
        assert model(image[None]).argmax().item() != label


def test_compressed_only_mnist_is_one_line_saying_fetch_again(data_dir):
    raw = install_mnist(data_dir)
    (raw / "t10k-images-idx3-ubyte").unlink()  # torchvision reads the decompressed files
    with pytest.raises(LabUsageError) as info:
        lesson.load_mnist(data_dir, train=False)
    assert "invoke download-data --dataset mnist" in info.value.message


@pytest.mark.parametrize(("old", "new"), MUTATIONS, ids=MUTATION_IDS)
def test_a_broken_lesson_fails_its_own_checks(data_dir, runs_dir, old, new):
    install_mnist(data_dir)
    assert_mutation_caught("15", old, new, "--dry-run")


# Typical wrong answers to 15's exercises, and what the check must say about each.
WRONG = {
    "15.1": [
        (
            """
def train_step(model, optimizer, loss_fn, x, y):
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss.item()
""",
            "the step used this gradient plus the one left from the previous step: call "
            "optimizer.zero_grad() before backward()",
        ),
        (
            """
def train_step(model, optimizer, loss_fn, x, y):
    optimizer.step()
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    return loss.item()
""",
            "optimizer.step() ran before loss.backward(), so it used the gradient left from the "
            "previous step: call it after backward()",
        ),
        (
            """
def train_step(model, optimizer, loss_fn, x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.zero_grad()
    optimizer.step()
    return loss.item()
""",
            "optimizer.zero_grad() ran between loss.backward() and optimizer.step(), so it "
            "cleared the gradient before the step could use it",
        ),
        (
            """
def train_step(model, optimizer, loss_fn, x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss
""",
            "train_step returned a tensor: return loss.item()",
        ),
        (
            """
def train_step(model, optimizer, loss_fn, x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    optimizer.step()
    return loss.item()
""",
            "optimizer.step() ran 2 times: one training step is one step()",
        ),
        (
            """
def train_step(model, optimizer, loss_fn, x, y):
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss_fn(model(x), y).item()
""",
            "(that is the loss after the step)",
        ),
    ],
}

# Correct answers other than the reference solution: each must pass.
RIGHT = {
    "15.1": [
        """
def train_step(model, optimizer, loss_fn, x, y):
    for p in model.parameters():
        p.grad = None
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return float(loss)
""",
        """
def train_step(model, optimizer, loss_fn, x, y):
    model.zero_grad(set_to_none=False)
    output = model(x)
    loss = loss_fn(output, y)
    loss.backward()
    optimizer.step()
    return loss.detach().item()
""",
    ],
}
