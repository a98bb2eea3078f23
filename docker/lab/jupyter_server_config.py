# JupyterLab inside the lab container. Loaded from /etc/jupyter; start-lab launches it.
import os

c = get_config()  # noqa: F821 (injected by traitlets)

# All interfaces *inside* the container; compose publishes the port on 127.0.0.1 only.
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = 8888
c.ServerApp.open_browser = False
# JupyterLab opens on the learner's work folder: their copies of the lessons and exercises
# (`lab course sync`, run by start-lab), one folder per lesson, and whatever else they write.
# The engine and the solutions (the read-only /opt/autograd-lab/lab) are not in view.
c.ServerApp.root_dir = os.environ.get("LAB_WORK_DIR", "/workspace/work")
# The token comes from $JUPYTER_TOKEN, which start-lab always sets (random when unset);
# no password login, so the token is the only way in.
c.PasswordIdentityProvider.allow_password_change = False
# Lessons are jupytext percent scripts: jupytext's contents manager serves them as notebooks.
c.ServerApp.contents_manager_class = "jupytext.TextFileContentsManager"
# Extensions cannot be installed from inside (the environment belongs to root, by design).
c.LabApp.extension_manager = "readonly"
# The XSRF cookie is not sent along with requests that other sites start (on a hub the
# server's login cookie gets the same from the hub).
c.ServerApp.tornado_settings = {"xsrf_cookie_kwargs": {"samesite": "Lax"}}
# A busy kernel counts as activity, so the hub's idle culler never stops a running cell.
c.ServerApp.jpserver_extensions.update({"busy_activity": True})

# TensorBoard inside JupyterLab (jupyter-server-proxy, a launcher tile): started on first use,
# over this server's own runs only, so on a hub each learner sees just their runs. It listens on
# localhost; the proxy puts it under the server's auth at <base_url>tensorboard/.
c.ServerProxy.servers = {
    "tensorboard": {
        "command": lambda port, base_url: [
            "tensorboard",
            "--logdir",
            os.environ.get("LAB_RUNS_DIR", "/workspace/runs"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--path_prefix",
            f"{base_url}tensorboard",
            "--reload_interval",
            "5",
        ],
        "absolute_url": True,
        "timeout": 60,
        "launcher_entry": {"title": "TensorBoard", "category": "Other"},
        "new_browser_tab": False,
    }
}
