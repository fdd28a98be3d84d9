"""Every MLflow tag and every file that tracking records, named once (like MLflow's
``mlflow/utils/mlflow_tags.py``).

Tags of a job's run: :data:`TAG_HASH`, :data:`TAG_CODE`, :data:`TAG_COMMIT`, :data:`TAG_STATUS`,
:data:`TAG_OVERRIDES`, :data:`TAG_RUN_DIR`, :data:`TAG_MONITOR`, :data:`TAG_SWEEP`,
:data:`TAG_FACTORS`, :data:`TAG_LOCAL_ID`, :data:`TAG_PARENT` (MLflow's nesting), and when they
apply :data:`TAG_RESUMED`, :data:`TAG_ERROR`, ``<TAG_REUSED>.<parent id>``. Tags of a sweep's
parent run: :data:`TAG_ROLE` = :data:`ROLE_SWEEP`, :data:`TAG_SWEEP_DIR`, :data:`TAG_EXPECTED`,
``<TAG_JOBS>.<status>``, ``<TAG_REUSES>.<run id>``, :data:`TAG_NOTE` (the report's table).

Files: a job's run folder gets the resolved config (``mmgnn.paths.CONFIG_FILE``), :data:`METRICS_FILE`,
:data:`HISTORY_FILE`, :data:`PLOTS_DIR` and the event log (:data:`EVENTS_FILE`,
:data:`STATE_FILE`); a sweep folder gets :data:`PARENT_FILE`, :data:`JOBS_DIR`,
:data:`FAILED_JOBS_FILE` and :data:`REPORT_DIR`. What training writes into a run folder is named
in :mod:`mmgnn.paths`.
"""
from __future__ import annotations

from pathlib import Path

# ----------------------------------------------------------------------------- MLflow's own tags
TAG_PARENT = "mlflow.parentRunId"  # a child run's parent (MLflow nests runs by it)
TAG_COMMIT = "mlflow.source.git.commit"  # the git commit of the code that ran
TAG_NOTE = "mlflow.note.content"  # the run's description in the MLflow UI
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"  # experiment tag: which view MLflow 3's UI opens
EXPERIMENT_KIND_TRAINING = "custom_model_development"  # its value: the model-training view

# ----------------------------------------------------------------------------- mmgnn's tags
TAG_ROLE = "mmgnn.role"  # ROLE_SWEEP on a sweep's parent run
ROLE_SWEEP = "sweep"
TAG_SWEEP = "mmgnn.sweep_id"  # <experiment>/<day>/<time> of the sweep, on the parent and its jobs
TAG_SWEEP_DIR = "mmgnn.sweep_dir"  # the sweep folder (the report goes to <it>/report)
TAG_EXPECTED = "mmgnn.expected_jobs"  # how many jobs the sweep launched
TAG_FACTORS = "mmgnn.factors"  # the sweep's swept override keys, comma-separated
TAG_JOBS = "mmgnn.jobs"  # + ".<status>" on the parent: how many jobs ended so
TAG_REUSED = "mmgnn.reused_by"  # + ".<parent run id>" on a FINISHED run a later sweep reused
TAG_REUSES = "mmgnn.reuses"  # + ".<run id>" on that sweep's parent: the run's code and commit
TAG_HASH = "mmgnn.config_hash"  # of the config and the code version: what a sweep reuses by
TAG_CODE = "mmgnn.code_version"  # mmgnn.tracking.version.code_version() of the run's process
TAG_STATUS = "mmgnn.status"  # running, then the run's end status in lower case
TAG_OVERRIDES = "mmgnn.overrides"  # the job's command-line overrides ("(defaults)": none)
TAG_RUN_DIR = "mmgnn.run_dir"  # the job's run folder
TAG_MONITOR = "mmgnn.monitor"  # the validation metric that chose the best epoch (val/...)
TAG_RESUMED = "mmgnn.resumed"  # "true" on a run continued by train.resume
TAG_ERROR = "mmgnn.error"  # the error that ended a FAILED run
TAG_LOCAL_ID = "mmgnn.local_id"  # the run's id in its folder's event log (what a sync finds it by)
NO_OVERRIDES = "(defaults)"  # TAG_OVERRIDES of a job without overrides

# ----------------------------------------------------------------------------- files
METRICS_FILE = "metrics.csv"  # every final metric of a job, tidy (artifact at the run root)
HISTORY_FILE = "history.csv"  # every epoch's metrics of a job
PLOTS_DIR = "plots"  # a job's plots (run folder and artifact folder)
HYDRA_ARTIFACTS = "hydra"  # artifact folder of Hydra's .hydra/
EVENTS_FILE = Path("tracking") / "events.jsonl"  # a run folder's event log (mmgnn.tracking.local)
STATE_FILE = Path("tracking") / "run.json"  # the server's run id of the folder
PARENT_FILE = "mlflow_parent.json"  # in a sweep folder: the parent run the jobs nest under
JOBS_DIR = "jobs"  # in a sweep folder: <job number>.json, each job's outcome
FAILED_JOBS_FILE = "failed_jobs.json"  # parent artifact: jobs that failed before their run existed
REPORT_DIR = "report"  # in a sweep folder, and the parent's artifact folder: the ablation report
