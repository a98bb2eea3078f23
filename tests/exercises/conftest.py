import pytest


@pytest.fixture(autouse=True)
def _work_dir(tmp_path, monkeypatch):
    """Progress and copies go to a scratch work dir, never the repository's work/."""
    monkeypatch.setenv("LAB_WORK_DIR", str(tmp_path / "work"))
    return tmp_path / "work"
