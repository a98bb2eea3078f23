# JupyterLab inside the lab container. Loaded from /etc/jupyter; start-lab launches it.
c = get_config()  # noqa: F821 (injected by traitlets)

# All interfaces *inside* the container; compose publishes the port on 127.0.0.1 only.
c.ServerApp.ip = "0.0.0.0"
c.ServerApp.port = 8888
c.ServerApp.open_browser = False
c.ServerApp.root_dir = "/workspace"
# The token comes from $JUPYTER_TOKEN, which start-lab always sets (random when unset);
# no password login, so the token is the only way in.
c.PasswordIdentityProvider.allow_password_change = False
# Lessons are jupytext percent scripts: jupytext's contents manager serves them as notebooks.
c.ServerApp.contents_manager_class = "jupytext.TextFileContentsManager"
# Extensions cannot be installed from inside (the environment belongs to root, by design).
c.LabApp.extension_manager = "readonly"
