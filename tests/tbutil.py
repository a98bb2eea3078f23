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


def read_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the run's event file(s): ``{tag: [(step, value), ...]}`` in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = Path(run_dir)
    assert list(run_dir.glob("events.out.tfevents.*")), f"no event file in {run_dir}"
    # size_guidance 0 = keep every point; the default samples scalars down to 10 000.
    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    accumulator.Reload()
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()["scalars"]
    }
