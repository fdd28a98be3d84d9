import atexit
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

# One OpenMP thread for the tests and every command they start (subprocesses inherit it), set
# before torch starts its thread pool: the tests' tiny models gain nothing from intra-op threads,
# which on a busy machine, or beside a second pytest-xdist worker (`make test` runs two), cost
# them about twice their CPU time in synchronisation. A value set by the caller wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("DGLBACKEND", "pytorch")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


@functools.lru_cache(maxsize=None)
def migrated_store() -> Path:
    """An empty MLflow SQLite store at MLflow's current schema, made once per test process:
    :func:`sqlite_store` copies it instead of running every migration again (seconds of CPU
    each time, in the test or in the command it starts)."""
    from mlflow.tracking import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="mlflow_store"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    MlflowClient(f"sqlite:///{folder / 'server.db'}").search_experiments()
    return folder / "server.db"


def sqlite_store(path) -> str:
    """The URI of a new, empty MLflow SQLite store at ``path``, already at the current schema
    (a copy of :func:`migrated_store`). Tests about a store's first creation (the docs blocks,
    the suite, the parallel sweep of test_tracking, preflight checks) use none."""
    path = Path(path)
    assert not path.exists(), f"{path} exists: sqlite_store makes a new store"
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_store(), path)
    return f"sqlite:///{path}"


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


# ----------------------------------------------------------------------------- pytest-xdist
#: Module-scoped fixtures too cheap to keep their tests on one worker.
CHEAP_MODULE_FIXTURES = {"one_thread"}


def pytest_collection_modifyitems(config, items):
    """``make test`` runs two pytest-xdist workers with ``--dist loadgroup``: a test that uses an
    expensive fixture built once per module (a trained run, a built dataset) goes with the
    module's other such tests to one worker, and the tests of the session's MLflow server
    (:func:`shared_mlflow_server`, :func:`served_sweep`) to one worker, so that each is built
    once, as in a run without workers. (Without ``--dist loadgroup`` the marks do nothing.)"""
    for item in items:
        names = getattr(item, "fixturenames", ())
        if "shared_mlflow_server" in names:
            item.add_marker(pytest.mark.xdist_group("shared_mlflow_server"))
            continue
        info = getattr(item, "_fixtureinfo", None)
        definitions = [info.name2fixturedefs[name][-1] for name in names
                       if name not in CHEAP_MODULE_FIXTURES and info.name2fixturedefs.get(name)] if info else []
        if any(d.scope != "function" and getattr(d.func, "__module__", None) == item.module.__name__
               for d in definitions):  # the test module's own (pytest's tmp_path_factory is no cost)
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
