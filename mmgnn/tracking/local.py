"""Local-first recording: every run event lands in its folder before MLflow sees it.

A run's folder holds ``tracking/events.jsonl`` (one JSON object a line, appended and flushed
as they happen) and, once the server has the run, ``tracking/run.json`` (its URI and run id).
Event kinds, each with ``kind`` and ``time`` (ms since the epoch):

- ``run``: ``local_id``, ``experiment`` (name), ``name``, ``tags``, ``start_time``,
  ``parent_local_id`` (the sweep's parent run, or null), ``tracking_uri``;
- ``params``: ``params`` {key: value}; ``tags``: ``tags`` {key: value};
- ``metrics``: ``metrics`` [[key, value, timestamp ms, step], ...];
- ``artifact``: ``path`` (relative to the folder when inside it) and ``where`` (artifact dir);
- ``resume`` (the run continues, status RUNNING) and ``end``: ``status``, ``end_time``.

:class:`Recorder` writes the events and forwards each to MLflow while the server answers.
When it stops answering (connection refused, timeout, 5xx after MLflow's bounded retries) the
recorder goes offline for the rest of the job: training never waits on the server again and
``python -m mmgnn.tracking.sync <folder>`` replays the folder later (:mod:`mmgnn.tracking.sync`).
"""
from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag

from mmgnn.tracking.names import EVENTS_FILE, STATE_FILE, TAG_LOCAL_ID, TAG_PARENT
from mmgnn.tracking.store import (
    TrackingUnreachable,
    unreachable_reason,
    ensure_experiment,
    get_client,
    is_unreachable,
    retry_locked,
    unreachable_message,
)

log = logging.getLogger(__name__)

EVENTS = EVENTS_FILE
STATE = STATE_FILE
BATCH = 1000  # MLflow's limit on metrics per log_batch call


def now_ms() -> int:
    return int(time.time() * 1000)


def chunks(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


class LocalLog:
    """The append-only event file of one run folder."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / EVENTS

    def append(self, kind: str, **data: Any) -> dict:
        event = {"kind": kind, "time": now_ms(), **data}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(event, default=str) + "\n")
            handle.flush()
        return event

    def events(self) -> list[dict]:
        """Every event; a last line cut short by a crash is skipped."""
        if not self.path.exists():
            return []
        out = []
        for number, line in enumerate(self.path.read_text().splitlines(), 1):
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                log.warning("%s:%d: unreadable event skipped", self.path, number)
        return out

    def run_event(self) -> dict | None:
        return next((e for e in self.events() if e["kind"] == "run"), None)

    def read_state(self) -> dict:
        path = self.folder / STATE
        return json.loads(path.read_text()) if path.exists() else {}

    def write_state(self, uri: str, run_id: str) -> None:
        path = self.folder / STATE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"tracking_uri": uri, "run_id": run_id}, indent=2))


def connect(uri: str, experiment: str, offline_ok: bool) -> str | None:
    """The experiment's id on the server, or ``None`` when it is away and ``offline_ok``.

    Raises :class:`TrackingUnreachable` (a one-line message saying what to do) otherwise.
    """
    try:
        return ensure_experiment(get_client(uri), experiment)
    except Exception as error:
        if not is_unreachable(error):
            raise
        if not offline_ok:
            raise TrackingUnreachable(unreachable_message(uri, error)) from None
        log.warning("MLflow server %s is unreachable (%s); tracking.offline_ok=true: recording "
                    "to the run folder only", uri, unreachable_reason(error))
        return None


class Recorder:
    """Records one MLflow run to its folder first, then to the server while it answers.

    Args:
        folder: the run's folder (events go to ``<folder>/tracking/``).
        uri: the MLflow tracking URI.
        experiment_id: the experiment on the server, or ``None`` to record offline only.
    """

    def __init__(self, folder: str | Path, uri: str, experiment_id: str | None) -> None:
        self.local = LocalLog(folder)
        self.uri = uri
        self.client = get_client(uri)
        self.experiment_id = experiment_id
        self.online = experiment_id is not None
        self.run_id: str | None = None
        self.local_id: str | None = None

    # ------------------------------------------------------------ the server, guarded
    def call(self, fn: Callable, *args, **kwargs):
        """``fn(*args, **kwargs)`` on the server; ``None`` (and offline from now on) when it
        is unreachable. Any other error (a request the server refused) is raised."""
        if not self.online:
            return None
        try:
            return retry_locked(fn, *args, **kwargs)
        except Exception as error:
            if not is_unreachable(error):
                raise
            self.online = False
            log.warning("MLflow server %s stopped answering (%s): recording to %s only; once it "
                        "is back run `python -m mmgnn.tracking.sync %s`", self.uri,
                        unreachable_reason(error), self.local.path, self.local.folder)
            return None

    # ------------------------------------------------------------ lifecycle
    def start(self, experiment: str, name: str, tags: dict[str, str],
              parent: tuple[str | None, str | None] = (None, None)) -> str | None:
        """A new run (``parent``: its server run id and local id). Returns the server id."""
        self.local_id = uuid.uuid4().hex
        start_time = now_ms()
        tags = {**tags, TAG_LOCAL_ID: self.local_id}
        self.local.append("run", local_id=self.local_id, experiment=experiment, name=name,
                          tags=tags, start_time=start_time, parent_local_id=parent[1],
                          tracking_uri=self.uri)
        server_tags = {**tags, **({TAG_PARENT: parent[0]} if parent[0] else {})}
        run = self.call(self.client.create_run, self.experiment_id, start_time=start_time,
                        tags=server_tags, run_name=name)
        if run is not None:
            self.run_id = run.info.run_id
            self.local.write_state(self.uri, self.run_id)
        return self.run_id

    def resume(self) -> bool:
        """Continue the run recorded in this folder (``train.resume``); False when none is."""
        first = self.local.run_event()
        if first is None:
            return False
        self.local_id = first["local_id"]
        self.local.append("resume")
        state = self.local.read_state()
        if state.get("tracking_uri") == self.uri:
            self.run_id = state["run_id"]
            self.call(self.client.update_run, self.run_id, status="RUNNING")
        else:
            self.online = False  # the server never had it: the sync creates it
        return True

    def end(self, status: str) -> None:
        end_time = now_ms()
        self.local.append("end", status=status, end_time=end_time)
        if self.run_id:
            self.call(self.client.set_terminated, self.run_id, status, end_time)

    # ------------------------------------------------------------ what a run records
    def log_params(self, params: dict[str, str]) -> None:
        self.local.append("params", params=params)
        items = [Param(k, v) for k, v in params.items()]
        for chunk in chunks(items, 100):
            if self.run_id:
                self.call(self.client.log_batch, self.run_id, params=chunk)

    def set_tags(self, tags: dict[str, str]) -> None:
        self.local.append("tags", tags=tags)
        if self.run_id:
            self.call(self.client.log_batch, self.run_id,
                      tags=[RunTag(k, v) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        """Finite values only (NaN is dropped: MLflow stores it but tables choke)."""
        stamp = now_ms()
        rows = [[k, float(v), stamp, step] for k, v in metrics.items()
                if v is not None and v == v]
        if not rows:
            return
        self.local.append("metrics", metrics=rows)
        for chunk in chunks(rows, BATCH):
            if self.run_id:
                self.call(self.client.log_batch, self.run_id,
                          metrics=[Metric(k, v, t, s) for k, v, t, s in chunk])

    def log_artifact(self, path: str | Path, where: str | None = None) -> None:
        """A file, or every file under a folder (kept at their relative paths)."""
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            sub = file.parent.relative_to(path).as_posix() if path.is_dir() else "."
            dest = "/".join(p for p in (where, sub) if p and p != ".") or None
            self.local.append("artifact", path=self._relative(file), where=dest)
            if self.run_id:
                self.call(self.client.log_artifact, self.run_id, str(file), dest)

    def _relative(self, file: Path) -> str:
        try:
            return file.resolve().relative_to(self.local.folder.resolve()).as_posix()
        except ValueError:
            return str(file.resolve())
