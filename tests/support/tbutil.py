"""Read TensorBoard event files back, so tests check what a learner would actually see."""

from __future__ import annotations

from pathlib import Path


def single_run_dir(runs_dir: Path, run_name: str) -> Path:
    """The one ``<runs_dir>/<run_name>/<timestamp>`` folder a single run left behind."""
    base = Path(runs_dir) / run_name
    assert base.is_dir(), f"no run folder {base}"
    stamps = [path for path in base.iterdir() if path.is_dir()]
    assert len(stamps) == 1, f"expected one timestamped run under {base}, found {stamps}"
    return stamps[0]


def _load(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = Path(run_dir)
    assert list(run_dir.glob("events.out.tfevents.*")), f"no event file in {run_dir}"
    # size_guidance 0 = keep every entry; the defaults sample long series down.
    accumulator = EventAccumulator(
        str(run_dir), size_guidance={"scalars": 0, "images": 0, "tensors": 0}
    )
    accumulator.Reload()
    return accumulator


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the run's event file(s): ``{tag: [(step, value), ...]}`` in step order."""
    accumulator = _load(run_dir)
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }


def read_texts(run_dir: Path) -> dict[str, list[str]]:
    """Every ``add_text`` entry in the run: ``{tag: [text, ...]}`` (tag without the
    ``/text_summary`` suffix TensorBoard stores it under)."""
    accumulator = _load(run_dir)
    return {
        tag.removesuffix("/text_summary"): [
            b"".join(event.tensor_proto.string_val).decode("utf-8")
            for event in accumulator.Tensors(tag)
        ]
        for tag in accumulator.Tags()["tensors"]
        if tag.endswith("/text_summary")
    }


def read_image_sizes(run_dir: Path) -> dict[str, list[tuple[int, int, int]]]:
    """Every ``add_image`` entry in the run: ``{tag: [(step, width, height), ...]}``."""
    accumulator = _load(run_dir)
    return {
        tag: [(event.step, event.width, event.height) for event in accumulator.Images(tag)]
        for tag in accumulator.Tags()["images"]
    }


def read_histograms(run_dir: Path) -> dict[str, list[tuple[int, float, float, int]]]:
    """Every ``add_histogram`` entry in the run: ``{tag: [(step, min, max, count), ...]}``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"histograms": 0})
    accumulator.Reload()
    return {
        tag: [
            (
                event.step,
                event.histogram_value.min,
                event.histogram_value.max,
                int(event.histogram_value.num),
            )
            for event in accumulator.Histograms(tag)
        ]
        for tag in accumulator.Tags()["histograms"]
    }
