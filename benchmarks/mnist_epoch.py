"""Benchmark: one training epoch of lesson 15 on the CPU, against pytorch/examples' MNIST Net.

Both models train for one epoch on the same data in the same process, through lesson 15's own
pieces (its ``load_mnist`` Dataset and ``train_step``), so only the model and its optimizer
differ:

- lesson 15's ``Net``: conv 1→8 and 8→16 (3×3), two max-pools, fc 400→64→10; Adam, lr 1e-3.
- pytorch/examples' MNIST ``Net`` (written here from its description): conv 1→32 and 32→64
  (3×3), one max-pool, dropout 0.25, fc 9216→128, dropout 0.5, fc 128→10; Adadelta, lr 1.0,
  as its ``main()`` uses. It returns log-probabilities for ``nll_loss``; ``cross_entropy`` on
  them is the same loss (log_softmax of log-probabilities changes nothing).

Data: synthetic MNIST always (random 28×28 digits in the real idx format, ``--synthetic``
images, written to a temporary folder), and real MNIST too when ``<data>/MNIST/raw`` holds it.
Prints time per epoch and images/s for each, and the ratio examples/lesson (how many times
faster the lesson's epoch is). The anchor is pytorch/examples' Net on the same data and cores.

    python benchmarks/mnist_epoch.py                    # synthetic (6000) + real if present
    python benchmarks/mnist_epoch.py --synthetic 60000  # a full-size synthetic epoch
"""

from __future__ import annotations

import argparse
import gzip
import struct
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from lab.course import find  # noqa: E402
from lab.paths import data_dir as default_data_dir  # noqa: E402


class ExamplesNet(nn.Module):
    """pytorch/examples' MNIST model, from its description (32/64 convs, 9216→128→10)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv2(F.relu(self.conv1(x))))  # 28 → 26 → 24
        x = self.dropout1(F.max_pool2d(x, 2))  # 64 × 12 × 12 = 9216
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def write_synthetic_mnist(root: Path, train: int, test: int, seed: int = 0) -> Path:
    """Random digits in torchvision's MNIST layout (``root/MNIST/raw``, idx files)."""
    generator = torch.Generator().manual_seed(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", train), ("t10k", test)):
        pixels = torch.randint(0, 256, (count, 28, 28), dtype=torch.uint8, generator=generator)
        labels = torch.arange(count, dtype=torch.uint8) % 10
        images = struct.pack(">IIII", 0x803, count, 28, 28) + pixels.numpy().tobytes()
        targets = struct.pack(">II", 0x801, count) + labels.numpy().tobytes()
        for name, data in (
            (f"{prefix}-images-idx3-ubyte", images),
            (f"{prefix}-labels-idx1-ubyte", targets),
        ):
            (raw / name).write_bytes(data)
            (raw / f"{name}.gz").write_bytes(gzip.compress(data, mtime=0))
    return root


def one_epoch(lesson, model, optimizer, loader) -> tuple[float, float]:
    """Wall and CPU (all threads) seconds for one pass over ``loader``, stepping with lesson
    15's train_step (float32, CPU)."""
    cpu = torch.device("cpu")
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    model.train()
    started, cpu_started = time.perf_counter(), time.process_time()
    for images, labels in loader:
        lesson.train_step(model, optimizer, scaler, images.to(cpu), labels.to(cpu), None)
    return time.perf_counter() - started, time.process_time() - cpu_started


def measure(lesson, data_dir: Path, batch_size: int, seed: int):
    """(training images, {model: (seconds per epoch, test accuracy after it)})."""
    train_set = lesson.load_mnist(data_dir, True)
    test_loader = DataLoader(lesson.load_mnist(data_dir, False), batch_size=1000)
    recipes = {
        "lesson 15 Net": (lesson.Net, lambda p: torch.optim.Adam(p, lr=1e-3)),
        "examples Net": (ExamplesNet, lambda p: torch.optim.Adadelta(p, lr=1.0)),
    }
    results = {}
    for name, (make_model, make_optimizer) in recipes.items():
        torch.manual_seed(seed)
        warm = make_model()
        warm_loader = DataLoader(
            torch.utils.data.Subset(train_set, range(batch_size * 3)), batch_size
        )
        one_epoch(lesson, warm, make_optimizer(warm.parameters()), warm_loader)  # warm-up
        torch.manual_seed(seed)
        model = make_model()
        loader = DataLoader(
            train_set,
            batch_size=batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
        )
        seconds, cpu_seconds = one_epoch(lesson, model, make_optimizer(model.parameters()), loader)
        _, accuracy = lesson.evaluate(model, test_loader, torch.device("cpu"))
        results[name] = (seconds, cpu_seconds, accuracy)
    return len(train_set), results


def report(title: str, images: int, results: dict[str, tuple[float, float]]) -> float:
    print(f"\n{title}: one epoch of {images} images, CPU, {torch.get_num_threads()} threads")
    for name, (seconds, cpu_seconds, accuracy) in results.items():
        print(
            f"  {name:<15} {seconds:8.2f} s/epoch  {images / seconds:9.0f} images/s  "
            f"(CPU time {cpu_seconds:7.2f} s)  test accuracy {accuracy:.2%}"
        )
    ratio = results["examples Net"][0] / results["lesson 15 Net"][0]
    cpu_ratio = results["examples Net"][1] / results["lesson 15 Net"][1]
    print(
        f"  ratio examples/lesson wall time: {ratio:.2f}x (the lesson's epoch is that much faster)"
    )
    # wall time suffers when other processes share the cores; CPU time much less so
    print(f"  ratio examples/lesson CPU time:  {cpu_ratio:.2f}x")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--synthetic",
        type=int,
        default=6000,
        help="synthetic training images (default: 6000; real MNIST has 60000)",
    )
    parser.add_argument(
        "--batch-size", type=int, default=64, help="training batch size (default: 64)"
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where real MNIST may be (default: $LAB_DATA_DIR or ./data)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads (default: 0 = torch's choice)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (default: 1)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    lesson = find("15").load()  # the lesson's Net, load_mnist, train_step, evaluate

    with tempfile.TemporaryDirectory() as scratch:
        synthetic = write_synthetic_mnist(Path(scratch), args.synthetic, 1000, args.seed)
        images, results = measure(lesson, synthetic, args.batch_size, args.seed)
        report("synthetic MNIST (random pixels; accuracy is chance)", images, results)

    data_dir = args.data_dir or default_data_dir()
    if (data_dir / "MNIST" / "raw" / "train-images-idx3-ubyte").is_file():
        images, results = measure(lesson, data_dir, args.batch_size, args.seed)
        report(f"real MNIST in {data_dir}", images, results)
    else:
        print(
            f"\nreal MNIST: not in {data_dir / 'MNIST' / 'raw'} "
            "(`invoke download-data --dataset mnist`); synthetic only"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
