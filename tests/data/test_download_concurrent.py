"""Two `lab data download` runs at once on one data dir: one downloads, the other waits."""

from __future__ import annotations

import json

from support.dl_support import SYNTHETIC, start_lab_data

from lab.data.download import Run
from lab.data.progress import Quiet
from lab.data.registry import load


def test_two_concurrent_runs_leave_one_correct_copy(server, registry, data_dir):
    server.behave("a", throttle=400_000)  # slow enough that the runs overlap
    args = ("download", "--registry", str(registry), "--data-dir", str(data_dir), "--json")

    first, second = start_lab_data(*args), start_lab_data(*args)
    outputs = [proc.communicate(timeout=60) for proc in (first, second)]

    assert [first.returncode, second.returncode] == [0, 0], [err for _, err in outputs]
    summaries = [json.loads(out) for out, _ in outputs]
    # one run fetched everything; the other waited for the lock and then needed nothing
    assert sorted(s["requests"] for s in summaries) == [0, len(SYNTHETIC)]
    assert server.stats.bytes == sum(len(v) for v in SYNTHETIC.values())
    for name in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        assert (data_dir / "MNIST" / "raw" / name).read_bytes() == SYNTHETIC[name]
    # and the data dir is consistent: a third run in this process has nothing to do
    server.reset_stats()
    again = Run(load(registry), data_dir, 4, Quiet()).run(["mnist", "cifar10", "hymenoptera"])
    assert again["ok"] and server.stats.requests == 0
