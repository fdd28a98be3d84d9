"""mmgnn's Hydra entry point: `python run.py [group=option ...] [key=value ...]`.

Everything happens in :func:`mmgnn.train.job.run_job`; this file only wires Hydra in.
It returns the best validation value of the monitored metric, which Hydra's sweepers
(e.g. Optuna) optimise.
"""
import os

os.environ.setdefault("DGLBACKEND", "pytorch")

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from mmgnn.config import register_configs  # noqa: E402

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from mmgnn.train.job import main_job

    return main_job(cfg)


if __name__ == "__main__":
    main()
