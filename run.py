"""mmgnn's Hydra entry point: `python run.py [group=option ...] [key=value ...]`.

Everything happens in :func:`mmgnn.launch.job.main_job` (the tracked job around
:func:`mmgnn.train.job.run_job`); this file only wires Hydra in. It returns the best validation
value of the monitored metric, which Hydra's sweepers (e.g. Optuna) optimise.
"""
import os
import sys
from pathlib import Path

# Launchers that start fresh interpreters (submitit locally or on SLURM) must import mmgnn
# and our Hydra plugins from wherever they run: put the project root on their path.
ROOT = str(Path(__file__).resolve().parent)
if ROOT not in os.environ.get("PYTHONPATH", "").split(os.pathsep):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")]))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import warnings

import hydra
from omegaconf import DictConfig

from mmgnn import paths
from mmgnn.config import register_configs

# Run and sweep folders (hydra.run.dir, hydra.sweep.dir) are under $MMGNN_HOME, the root of
# every output (mmgnn.paths): set here when unset, so Hydra and the MLflow store agree.
os.environ.setdefault(paths.HOME_ENV, str(paths.home()))
# conf/hydra/launcher/ray.yaml shadows the Ray plugin's option of that name on purpose (it
# builds the workaround in); Hydra would warn about the schema match on every Ray sweep.
warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/ray' is validated against ConfigStore schema",
                        category=UserWarning)
register_configs()


def check_experiment_flag(argv: list[str]) -> None:
    """``experiment`` is not in the defaults list (a preset is added with ``+``): say so
    instead of Hydra's "No match in the defaults list"."""
    for arg in argv:
        if arg.startswith("experiment="):
            sys.exit(f"error: {arg}: an experiment preset is added with '+': "
                     f"python run.py -m +{arg} (the presets: python run.py --help)")


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from mmgnn.launch.job import main_job

    return main_job(cfg)


if __name__ == "__main__":
    check_experiment_flag(sys.argv[1:])
    main()
