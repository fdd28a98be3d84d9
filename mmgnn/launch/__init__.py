"""The composing layer on top: what runs jobs and sweeps out of the layers below.

- :mod:`mmgnn.launch.job`: :func:`main_job`, the job entry ``run.py`` calls (config checks,
  training through :mod:`mmgnn.train`, the MLflow run through :mod:`mmgnn.tracking`, plots);
- :mod:`mmgnn.launch.plots`: the per-run plots (drawn with :mod:`mmgnn.analysis.plots`, handed
  to tracking as files);
- :mod:`mmgnn.launch.callbacks`: :class:`MLflowSweepCallback`, the Hydra callback giving a
  sweep its parent run and its report (``hydra.callbacks.mlflow_sweep`` in ``conf/config.yaml``);
- :mod:`mmgnn.launch.sweep_plan`: what a sweep will launch, read before any job runs.

Nothing below imports this package (``tests/test_layers.py``).
"""
