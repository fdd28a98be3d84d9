"""Replay run folders to an MLflow server: ``python -m mmgnn.tracking.sync <folder> ...``.

A folder is a run folder (it holds ``tracking/events.jsonl``) or any folder above run folders
(a sweep folder, ``outputs/``): every run under it is replayed, parents before their children.
The replay is a difference: the server's run (found by its id in ``tracking/run.json``, else by
the tag ``mmgnn.local_id``, else created with the recorded start time) gets the params, tags,
metric points (key, step, timestamp, value), artifacts and end status it lacks, and nothing
else, so a run the server saw in part is completed and a second sync changes nothing.

    python -m mmgnn.tracking.sync outputs/multirun/2026-01-01/10-00-00
    python -m mmgnn.tracking.sync <run folder> --tracking-uri http://127.0.0.1:5000
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag

from mmgnn.tracking.local import BATCH, EVENTS, LocalLog, chunks
from mmgnn.tracking.names import TAG_LOCAL_ID, TAG_PARENT
from mmgnn.tracking.store import (
    TrackingUnreachable,
    ensure_experiment,
    get_client,
    is_unreachable,
    retry_locked,
    unreachable_message,
)

log = logging.getLogger(__name__)


@dataclass
class SyncResult:
    """What one run's replay sent (all zero when the server already had everything)."""

    folder: Path
    run_id: str
    created: bool = False
    params: int = 0
    tags: int = 0
    metrics: int = 0
    artifacts: int = 0
    status: str | None = None  # the end status set on the server, when it changed
    skipped_params: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.params or self.tags or self.metrics or self.artifacts
                    or self.status)


def run_folders(path: str | Path) -> list[Path]:
    """Run folders at or under ``path``, outermost first (a sweep's parent before its jobs)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such folder")
    found = [p.parent.parent for p in path.rglob(EVENTS.name) if p.parent.name == EVENTS.parent.name]
    if not found:
        raise FileNotFoundError(f"{path}: no {EVENTS} at or under this folder (nothing recorded)")
    return sorted(found, key=lambda p: (len(p.parts), str(p)))


class RunReplay:
    """Brings one run folder's record to the server (see the module docstring)."""

    def __init__(self, folder: Path, uri: str, parent_ids: dict[str, str]) -> None:
        self.local = LocalLog(folder)
        self.uri = uri
        self.client = get_client(uri)
        self.parent_ids = parent_ids
        self.events = self.local.events()
        self.first = next((e for e in self.events if e["kind"] == "run"), None)
        if self.first is None:
            raise ValueError(f"{self.local.path}: no 'run' event (the file is not a run record)")

    def server_run(self):
        """The server's run of this folder, or ``None``."""
        state = self.local.read_state()
        if state.get("tracking_uri") == self.uri:
            try:
                return retry_locked(self.client.get_run, state["run_id"])
            except Exception as error:
                if is_unreachable(error):
                    raise
        experiment = self.client.get_experiment_by_name(self.first["experiment"])
        if experiment is None:
            return None
        runs = retry_locked(self.client.search_runs, [experiment.experiment_id],
                            filter_string=f"tags.`{TAG_LOCAL_ID}` = '{self.first['local_id']}'",
                            max_results=1)
        return runs[0] if runs else None

    def create(self):
        first = self.first
        experiment_id = ensure_experiment(self.client, first["experiment"])
        tags = dict(first["tags"])
        parent = self.parent_ids.get(first.get("parent_local_id") or "")
        if parent:
            tags[TAG_PARENT] = parent
        return retry_locked(self.client.create_run, experiment_id, start_time=first["start_time"],
                            tags=tags, run_name=first["name"])

    def replay(self) -> SyncResult:
        run = self.server_run()
        created = run is None
        if created:
            run = self.create()
        run_id = run.info.run_id
        self.local.write_state(self.uri, run_id)
        result = SyncResult(self.local.folder, run_id, created=created)
        self._params(run, result)
        self._tags(run, result)
        self._metrics(run, result)
        self._artifacts(run_id, result)
        self._status(run, result)
        return result

    def _params(self, run, result: SyncResult) -> None:
        have = run.data.params
        wanted: dict[str, str] = {}
        for event in self.events:
            if event["kind"] == "params":
                wanted.update(event["params"])
        missing = []
        for key, value in wanted.items():
            if key not in have:
                missing.append(Param(key, str(value)))
            elif have[key] != str(value):
                result.skipped_params.append(key)  # MLflow params cannot change
        for chunk in chunks(missing, 100):
            retry_locked(self.client.log_batch, run.info.run_id, params=chunk)
        result.params = len(missing)

    def _tags(self, run, result: SyncResult) -> None:
        wanted = dict(self.first["tags"])
        for event in self.events:
            if event["kind"] == "tags":
                wanted.update(event["tags"])
        changed = [RunTag(k, str(v)) for k, v in wanted.items() if run.data.tags.get(k) != str(v)]
        if changed:
            retry_locked(self.client.log_batch, run.info.run_id, tags=changed)
        result.tags = len(changed)

    def _metrics(self, run, result: SyncResult) -> None:
        points: dict[str, set[tuple]] = defaultdict(set)
        for event in self.events:
            if event["kind"] == "metrics":
                for key, value, stamp, step in event["metrics"]:
                    points[key].add((int(step), int(stamp), float(value)))
        missing: list[Metric] = []
        for key, wanted in sorted(points.items()):
            if key in run.data.metrics:
                history = retry_locked(self.client.get_metric_history, run.info.run_id, key)
                wanted = wanted - {(m.step, m.timestamp, m.value) for m in history}
            missing += [Metric(key, v, t, s) for s, t, v in sorted(wanted)]
        for chunk in chunks(missing, BATCH):
            retry_locked(self.client.log_batch, run.info.run_id, metrics=chunk)
        result.metrics = len(missing)

    def _artifacts(self, run_id: str, result: SyncResult) -> None:
        listed: dict[str, set[str]] = {}
        for event in self.events:
            if event["kind"] != "artifact":
                continue
            file = Path(event["path"])
            file = file if file.is_absolute() else self.local.folder / file
            where = event["where"] or ""
            if where not in listed:
                listed[where] = {a.path for a in retry_locked(
                    self.client.list_artifacts, run_id, where or None)}
            dest = f"{where}/{file.name}" if where else file.name
            if dest in listed[where]:
                continue
            if not file.exists():
                log.warning("%s: recorded artifact %s is gone; not uploaded", self.local.folder, file)
                continue
            retry_locked(self.client.log_artifact, run_id, str(file), where or None)
            listed[where].add(dest)
            result.artifacts += 1

    def _status(self, run, result: SyncResult) -> None:
        last = next((e for e in reversed(self.events) if e["kind"] in ("end", "resume")), None)
        if last is None or last["kind"] == "resume":
            return  # still running (or killed without a word): leave the server's status
        if run.info.status != last["status"] or run.info.end_time != last["end_time"]:
            retry_locked(self.client.set_terminated, run.info.run_id, last["status"],
                         last["end_time"])
            result.status = last["status"]


def sync(path: str | Path, uri: str | None = None) -> list[SyncResult]:
    """Replay every run folder at or under ``path`` to ``uri`` (default: the URI each run was
    recorded for, in its ``tracking/run.json``, else the project's default store)."""
    results: list[SyncResult] = []
    parent_ids: dict[str, str] = {}
    for folder in run_folders(path):
        first = LocalLog(folder).run_event()
        if first is None:
            raise ValueError(f"{folder / EVENTS}: no 'run' event (not a run record)")
        target = uri or first["tracking_uri"]
        try:
            result = RunReplay(folder, target, parent_ids).replay()
        except Exception as error:
            if is_unreachable(error):
                raise TrackingUnreachable(unreachable_message(target, error)) from None
            raise
        parent_ids[first["local_id"]] = result.run_id
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mmgnn.tracking.sync", description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", help="run folders or folders above them")
    parser.add_argument("--tracking-uri", default=None,
                        help="where to replay (default: the URI each run was recorded for)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        for folder in args.folders:
            for r in sync(folder, args.tracking_uri):
                what = (f"created, " if r.created else "") + (
                    f"{r.params} params, {r.tags} tags, {r.metrics} metric points, "
                    f"{r.artifacts} artifacts" + (f", status {r.status}" if r.status else "")
                    if r.changed else "up to date")
                print(f"{r.folder}: run {r.run_id}: {what}")
                if r.skipped_params:
                    print(f"  params differing on the server (kept): {', '.join(r.skipped_params)}")
    except (FileNotFoundError, ValueError, TrackingUnreachable) as error:
        print(f"sync: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
