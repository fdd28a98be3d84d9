"""Sweeps beyond one machine (docs/sweeps.md).

- A 2 x 2 sweep on a Ray cluster (``ray start --head`` on 127.0.0.1 with 2 CPUs) logging to a
  real ``mlflow server``: 4 FINISHED children under one parent, its report logged, each job's
  torch threads matched to its Ray CPUs; relaunched, the sweep reuses the 4.
- The sbatch script the SLURM launcher submits for a 2 x 2 sweep, written by the real launcher
  (submitit) without a cluster: stand-ins for ``sbatch``, ``srun`` and ``sacct`` keep the script
  and run its array on this machine.
- A per-machine store (``sqlite:``) is refused at the sweep's start by every launcher whose
  jobs may run on other machines.
"""
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from hydra import compose, initialize_config_dir

from conftest import ROOT
from mmgnn.config import CONF_DIR, register_configs
from mmgnn.launch.callbacks import per_machine_store, runs_elsewhere
from mmgnn.launch.job import launcher_threads
from test_tracking import TINY, MlflowServer, check_two_by_two, free_port, runs_of

# Tiny jobs whose torch threads the launcher decides (TINY pins train.num_threads=1).
JOB = [arg for arg in TINY if not arg.startswith("train.num_threads=")]
GRID = ["skip=none,sum", "seed=0,1"]
# Ray binds its node to a LAN address unless told the machine is not part of a cluster; with
# this, the head, its workers and the sweep's driver stay on 127.0.0.1.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}

needs_ray = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None,
    reason="ray is not installed (an extra: .venv/bin/pip install -r requirements-ray.txt; "
           "`make test` installs it)",
)


def run_sweep(tmp_path, *args, name="sweep", env=None, check=True, timeout=600):
    """``python run.py -m`` with tiny jobs, its sweep folder ``tmp_path / name`` (``None``:
    the default, ``$MMGNN_HOME/multirun/<day>/<time>``, with ``MMGNN_HOME=tmp_path/home``)."""
    folder = [f"hydra.sweep.dir={tmp_path / name}"] if name else []
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "-m", *JOB, "tracking.experiment=test",
         *folder, *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "MMGNN_HOME": str(tmp_path / "home"), **(env or {})},
    )
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


class RayHead:
    """``ray start --head --block`` on 127.0.0.1 with 2 CPUs, every port free, its own temp
    folder and its own token (Ray 2.60 turns token authentication on for ``ray start`` when
    ``~/.ray/auth_token`` exists; a driver connects only with ``RAY_AUTH_MODE=token`` and the
    token: :attr:`env`). :meth:`stop` ends it and every process it started, by their ids."""

    def __init__(self, cwd):
        self.cwd, self.port, self.process = cwd, free_port(), None
        self.env = {**LOOPBACK, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
        # Ray's socket paths must stay short (107 bytes): not under pytest's tmp_path.
        self.temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
        self.log = self.temp / "head.log"

    def start(self):
        ports = {flag: free_port() for flag in (
            "ray-client-server-port", "dashboard-port", "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port",
            "node-manager-port", "object-manager-port")}
        command = [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block",
                   "--num-cpus=2", "--num-gpus=0", "--node-ip-address=127.0.0.1",
                   f"--port={self.port}", "--include-dashboard=false", "--disable-usage-stats",
                   f"--temp-dir={self.temp}", "--object-store-memory=100000000",
                   *(f"--{flag}={port}" for flag, port in ports.items())]
        with open(self.log, "w") as log:
            # Workers start in the head's folder (as on a real node: where `ray start` ran).
            self.process = subprocess.Popen(command, cwd=self.cwd, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True,
                                            env={**os.environ, **self.env})
        return self

    def wait(self, timeout=180):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if "Ray runtime started" in self.log.read_text():
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.5)
        raise RuntimeError("ray start --head failed:\n" + self.log.read_text()[-3000:])

    def stop(self):
        try:
            started = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            started = []
        if self.process.poll() is None:  # --block: SIGTERM stops what it started, after a
            os.killpg(self.process.pid, signal.SIGTERM)  # drain of up to 30 s: cut it short
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=30)
        _, alive = psutil.wait_procs(started, timeout=10)
        for process in alive:  # workers in their own sessions, should any outlive the raylet
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture
def ray_head(tmp_path):
    """A Ray head being started (the test calls ``wait()`` once it has other things going)."""
    head = RayHead(tmp_path).start()
    try:
        yield head
    finally:
        head.stop()


@pytest.fixture
def mlflow_server(tmp_path, ray_head):
    """A real ``mlflow server``, started while the Ray head boots."""
    server = MlflowServer(tmp_path).start()
    yield server.uri
    if server.process.poll() is None:
        server.kill()


@needs_ray
@pytest.mark.timeout(600)
def test_two_by_two_sweep_on_a_ray_cluster_logs_to_one_server_and_resumes(
        tmp_path, ray_head, mlflow_server):
    """The jobs run as on another machine: their outputs root (MMGNN_HOME, which ray_cluster
    sends to every node) is a folder the launching process never sees, so the sweep folder is
    not shared; the parent reaches the jobs and their outcomes reach the parent anyway."""
    uri = mlflow_server
    ray_head.wait()
    node = tmp_path / "node"  # the workers' outputs root: "another machine's disk"
    launcher = ["hydra/launcher=ray_cluster",
                f"hydra.launcher.ray.init.address=127.0.0.1:{ray_head.port}",
                "hydra.launcher.ray.remote.num_cpus=1", f"tracking.uri={uri}",
                f"hydra.launcher.ray.init.runtime_env.env_vars.MMGNN_HOME={node}"]
    proc = run_sweep(tmp_path, *launcher, *GRID, name=None, env=ray_head.env)
    assert "Connecting to existing Ray cluster at address: 127.0.0.1" in proc.stderr
    assert "(_run_job pid=" in proc.stdout + proc.stderr  # the jobs ran in Ray's workers
    assert "experiments.report --parent" in proc.stdout
    client, parents, children = runs_of(uri)
    check_two_by_two(uri, parents, children)  # one parent, 4 FINISHED children, the report
    parent = parents[0].info.run_id
    assert {c.data.params["train.num_threads"] for c in children} == {"1"}  # = its num_cpus
    assert {a.path for a in client.list_artifacts(parent, "report")} >= {"report/report.md"}
    assert parents[0].data.tags["mmgnn.jobs.finished"] == "4"
    # The launching machine's sweep folder: the parent, the report, every job's outcome (sent
    # to the parent by the jobs and fetched from it), no failed job; the jobs' folders are on
    # the other "machine", under the same sweep name.
    (sweep_dir,) = (tmp_path / "home" / "multirun").glob("*/*")
    (job_sweep_dir,) = (node / "multirun").glob("*/*")
    assert job_sweep_dir.relative_to(node) == sweep_dir.relative_to(tmp_path / "home")
    names = ["0.json", "1.json", "2.json", "3.json"]
    assert sorted(p.name for p in (sweep_dir / "jobs").glob("*.json")) == names
    assert sorted(a.path for a in client.list_artifacts(parent, "jobs")) == [
        f"jobs/{n}" for n in names]
    assert json.loads((sweep_dir / "failed_jobs.json").read_text()) == []
    assert (sweep_dir / "report" / "report.md").exists()
    assert not any((sweep_dir / str(n)).exists() for n in range(4))
    assert all((job_sweep_dir / str(n) / "checkpoints").is_dir() for n in range(4))
    assert not (job_sweep_dir / "mlflow_parent.json").exists()

    # Relaunched (as after a kill), the sweep reuses the 4 FINISHED runs instead of training.
    time.sleep(1)  # a new sweep folder (named by the second)
    run_sweep(tmp_path, *launcher, *GRID, name=None, env=ray_head.env)
    _, parents, children = runs_of(uri)
    assert len(parents) == 2 and len(children) == 4
    newest = max(parents, key=lambda r: r.info.start_time)
    assert newest.info.status == "FINISHED"
    assert newest.data.tags["mmgnn.jobs.reused"] == "4"
    assert all(c.data.tags.get(f"mmgnn.reused_by.{newest.info.run_id}") == "1" for c in children)


# ------------------------------------------------------------------------------------- SLURM
# Stand-ins for SLURM's commands, so that the real launcher (hydra-submitit-launcher ->
# submitit's SlurmExecutor) submits to this machine: sbatch keeps the script, answers with a
# job id and runs the array's tasks (as many at once as the script's --array=...%N) with the
# variables SLURM sets; srun runs its command with srun's output files; sacct knows nothing
# (submitit then waits for each task's result file). The jobs inherit the launching process's
# environment, as with sbatch's default --export=ALL.
SBATCH = r"""#!/bin/bash
set -euo pipefail
kept="$MMGNN_TEST_SLURM/submission.sh"
cp "$1" "$kept"
read -r first last parallel < <(sed -n 's/^#SBATCH --array=\([0-9]*\)-\([0-9]*\)%\([0-9]*\)$/\1 \2 \3/p' "$kept")
job=4242
(
  for task in $(seq "$first" "$last"); do
    while [ "$(jobs -rp | wc -l)" -ge "$parallel" ]; do sleep 0.2; done
    SLURM_JOB_ID=$((job + 1 + task)) SLURM_ARRAY_JOB_ID=$job SLURM_ARRAY_TASK_ID=$task \
      SLURM_NTASKS=1 SLURM_PROCID=0 SLURM_LOCALID=0 SLURM_NODEID=0 SLURM_JOB_NUM_NODES=1 \
      SLURM_JOB_NODELIST=localhost bash "$kept" &
  done
  wait
) < /dev/null > "$MMGNN_TEST_SLURM/array.log" 2>&1 &
echo "Submitted batch job $job"
"""
SRUN = r"""#!/bin/bash
out=/dev/null; err=/dev/null
while [ $# -gt 0 ]; do
  case "$1" in
    --unbuffered) shift ;;
    --output) out=$2; shift 2 ;;
    --error) err=$2; shift 2 ;;
    *) break ;;
  esac
done
name() { local p=${1//%A/$SLURM_ARRAY_JOB_ID}; p=${p//%a/$SLURM_ARRAY_TASK_ID}; p=${p//%t/0}; echo "${p//%j/$SLURM_JOB_ID}"; }
out=$(name "$out"); err=$(name "$err")
mkdir -p "$(dirname "$out")" "$(dirname "$err")"
exec "$@" >> "$out" 2>> "$err"
"""
SACCT = "#!/bin/sh\necho 'JobID|State|NodeList'\n"


@pytest.mark.timeout(400)
def test_slurm_launcher_submits_a_two_by_two_array_that_runs(tmp_path):
    """The sbatch script of a 2 x 2 sweep with conf/hydra/launcher/slurm.yaml and a few
    overrides: its resources, environment and command; then its 4 tasks run it to the end."""
    bin_dir, kept = tmp_path / "bin", tmp_path / "slurm"
    bin_dir.mkdir()
    kept.mkdir()
    for tool, text in (("sbatch", SBATCH), ("srun", SRUN), ("sacct", SACCT)):
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    proc = run_sweep(
        tmp_path, "hydra/launcher=slurm", "hydra.launcher.partition=gpu",
        "hydra.launcher.timeout_min=30", "hydra.launcher.cpus_per_task=3",
        "hydra.launcher.gpus_per_node=1", "hydra.launcher.mem_gb=16",
        "hydra.launcher.array_parallelism=2",
        # SLURM needs a tracking server (test_launchers_that_run_jobs_elsewhere_...); the
        # script and the jobs are what this test is about
        "tracking.enabled=false", *GRID, check=False, timeout=360,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "MMGNN_TEST_SLURM": str(kept)},
    )
    script = (kept / "submission.sh").read_text()
    flags = dict(re.findall(r"^#SBATCH --([\w-]+)=(.*)$", script, flags=re.M))
    sweep_dir = tmp_path / "sweep"
    assert flags["array"] == "0-3%2"  # 4 jobs, 2 at a time
    assert flags["partition"] == "gpu" and flags["time"] == "30"
    assert flags["cpus-per-task"] == "3" and flags["gpus-per-node"] == "1"
    assert flags["mem"] == "16GB" and flags["nodes"] == "1" and flags["ntasks-per-node"] == "1"
    assert flags["output"] == f"{sweep_dir}/.submitit/%A_%a/%A_%a_0_log.out"
    # The environment: the exports of slurm.yaml's setup and submitit's own.
    assert "export DGLBACKEND=pytorch\n" in script
    assert f"export MMGNN_HOME={tmp_path / 'home'}\n" in script
    assert "export SUBMITIT_EXECUTOR=slurm\n" in script
    # The command: this interpreter runs each job's pickled launcher call, in the sweep folder.
    command = script.strip().splitlines()[-1]
    assert command.startswith("srun --unbuffered --output ")
    assert command.endswith(f"{sys.executable} -u -m submitit.core._submit "
                            f"{sweep_dir}/.submitit/%j")
    # The array ran: every job trained and tested, with its CPUs as torch threads.
    assert proc.returncode == 0, proc.stderr[-3000:] + (kept / "array.log").read_text()[-2000:]
    for task in range(4):
        assert (sweep_dir / str(task) / "test_metrics.json").exists()
        assert "torch threads: 3" in (sweep_dir / str(task) / "run.log").read_text()
        assert (sweep_dir / ".submitit" / f"4242_{task}" / f"4242_{task}_0_result.pkl").exists()


# ------------------------------------------------------------------------ per-machine stores
def launcher_config(*overrides):
    register_configs()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("config", overrides=list(overrides), return_hydra_config=True).hydra.launcher


@pytest.mark.filterwarnings(r"ignore:\s*'hydra/launcher/ray' is validated against ConfigStore schema")
@pytest.mark.parametrize(("overrides", "elsewhere", "threads"), [
    ([], False, 0),  # basic: one job at a time, torch's default
    (["hydra/launcher=local_parallel"], False, max(1, (os.cpu_count() or 1) // 2)),
    (["hydra/launcher=local_submitit"], False, 1),
    (["hydra/launcher=ray"], False, 1),  # its own local Ray: the jobs share this disk
    (["hydra/launcher=ray", "hydra.launcher.ray.remote.num_cpus=3"], False, 3),
    (["hydra/launcher=ray", "hydra.launcher.ray.init.address=auto"], True, 1),
    (["hydra/launcher=ray_cluster", "hydra.launcher.ray.remote.num_cpus=2"], True, 2),
    (["hydra/launcher=slurm"], True, 2),
])
def test_launchers_where_jobs_run_and_their_threads(overrides, elsewhere, threads):
    launcher = launcher_config(*overrides)
    assert runs_elsewhere(launcher) is elsewhere
    assert launcher_threads(launcher) == threads


def test_per_machine_stores():
    assert per_machine_store("sqlite:////tmp/x/mlflow.db") and per_machine_store("file:///tmp/m")
    assert per_machine_store("/tmp/mlruns") and per_machine_store("./mlruns")
    assert not per_machine_store("http://10.0.0.2:5000")
    assert not per_machine_store("https://mlflow.example.org")
    assert not per_machine_store("postgresql://u@db/mlflow")


@pytest.mark.parametrize("launcher", [
    ["hydra/launcher=ray_cluster"],
    ["hydra/launcher=ray", "hydra.launcher.ray.init.address=auto"],
    ["hydra/launcher=slurm"],
])
def test_launchers_that_run_jobs_elsewhere_refuse_a_per_machine_store(tmp_path, launcher):
    """Refused before anything is launched, in one line that says what to do."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = run_sweep(tmp_path, *launcher, f"tracking.uri={uri}", *GRID, check=False,
                     env={"RAY_ADDRESS": "127.0.0.1:9"})  # nothing may reach a cluster
    assert proc.returncode != 0
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
    assert uri in line
    assert "mlflow server --host 0.0.0.0 --port 5000 --backend-store-uri sqlite:///" in line
    assert "tracking.uri=http://" in line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "sweep" / "jobs").exists()
    assert not (tmp_path / "mlflow.db").exists()
