"""A kernel that is executing counts as activity, even when its cell prints nothing for
hours: a long training run left to itself is work in progress, not an idle server.

Jupyter Server counts every setting named ``*_last_activity`` in the time it reports as its
last activity (to the hub, whose idle culler stops servers idle for HUB_IDLE_TIMEOUT); this
extension keeps one such setting at "now" while any kernel is busy.
"""

from __future__ import annotations

from datetime import UTC, datetime

from tornado.ioloop import PeriodicCallback

EVERY_MS = 5_000


def _jupyter_server_extension_points():
    return [{"module": "busy_activity"}]


def _load_jupyter_server_extension(serverapp) -> None:
    kernels = serverapp.kernel_manager
    settings = serverapp.web_app.settings

    def note_busy_kernels() -> None:
        states = (kernels.get_kernel(k).execution_state for k in kernels.list_kernel_ids())
        if "busy" in states:
            settings["busy_kernels_last_activity"] = datetime.now(UTC)

    PeriodicCallback(note_busy_kernels, EVERY_MS).start()
