import os
import sys
from pathlib import Path

import pytest
import torch

os.environ.setdefault("DGLBACKEND", "pytorch")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: intra-op threads only add synchronisation (badly so on a loaded machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Payload:
    """Unpickling this would create a directory: what a malicious checkpoint could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


@pytest.fixture
def pickle_payload():
    """``Payload(path)``: an object whose unpickling creates ``path`` (checkpoint safety tests)."""
    return Payload


@pytest.fixture(scope="session")
def shared_mlflow_server(tmp_path_factory):
    """A real ``mlflow server`` (``test_tracking.MlflowServer``) for the tests that only log to
    it and read back what they logged: each uses its own experiment. Never killed by a test."""
    from test_tracking import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("mlflow_server")).start()
    yield server
    if server.process.poll() is None:
        server.kill()


@pytest.fixture(scope="session")
def served_sweep(shared_mlflow_server, tmp_path_factory):
    """A finished 2 x 2 multirun of tiny jobs (``skip=none,sum`` x ``seed=0,1``, plots logged)
    against :func:`shared_mlflow_server`, in its experiment ``test``: read, never changed, by
    test_tracking (what the server holds) and test_ui (what MLflow's UI shows of it).
    Returns the server; ``server.folder / "server.db"`` is its store."""
    from test_tracking import sweep

    sweep(tmp_path_factory.mktemp("served_sweep"), shared_mlflow_server.uri, "skip=none,sum",
          "seed=0,1", "tracking.log_plots=true")
    return shared_mlflow_server
