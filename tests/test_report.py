"""experiments.report on a hand-made sweep in a temporary SQLite MLflow store.

The sweep (experiment ``ablate_demo``): skip in {none, sum} x fusion in {concat, gated} x
seeds {0, 1, 2}. Its (none, concat, seed 0) job reused a FINISHED run of an earlier sweep
(overriding only ``skip`` and ``seed``: its fusion comes from its params); its (sum, gated,
seed 2) job FAILED. ``test/retrieval/mean_recall`` is additive (0.5 + 0.1 [sum] + 0.04 [gated]
+ 0.01 seed), so every paired difference is the same; ``test/fused/acc`` is chosen by hand
for the rank view (with a tie).
"""
from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient

from experiments import report as cli
from mmgnn import analysis as rp

from conftest import sqlite_store

EXPERIMENT = "ablate_demo"
RECALL = "test/retrieval/mean_recall"
ACC = "test/fused/acc"
T0 = 1_700_000_000_000  # ms
SKIP, FUSION, SEEDS = ("none", "sum"), ("concat", "gated"), (0, 1, 2)
ACC_VALUES = {  # (skip, fusion) -> acc per seed; None: the failed job
    ("none", "concat"): (0.70, 0.60, 0.65),
    ("sum", "concat"): (0.72, 0.60, 0.60),
    ("none", "gated"): (0.68, 0.61, 0.66),
    ("sum", "gated"): (0.71, 0.69, None),
}
REUSED_KEY = ("none", "concat", 0)
FAILED_KEY = ("sum", "gated", 2)


def recall(skip: str, fusion: str, seed: int) -> float:
    return 0.5 + (0.1 if skip == "sum" else 0.0) + (0.04 if fusion == "gated" else 0.0) + 0.01 * seed


def _run(client, exp_id, name, tags, start, status="FINISHED", metrics=None, params=None):
    run = client.create_run(exp_id, run_name=name, tags=tags, start_time=start)
    rid = run.info.run_id
    client.log_batch(
        rid,
        metrics=[Metric(k, float(v), start, 0) for k, v in (metrics or {}).items()],
        params=[Param(k, str(v)) for k, v in (params or {}).items()],
    )
    client.set_terminated(rid, status, end_time=start + 1000)
    return rid


def _job_params(skip, fusion, seed):
    return {"skip.name": skip, "skip.mode": skip, "fusion.name": fusion, "gnn.name": "gat",
            "loss.name": "hardneg", "train.name": "default", "seed": seed}


def _sweep_tags(sweep_dir, sweep_id):
    return {"mmgnn.role": "sweep", "mmgnn.sweep_id": sweep_id, "mmgnn.sweep_dir": str(sweep_dir),
            "mmgnn.overrides": "+experiment=ablate_demo"}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    uri = sqlite_store(tmp / "m.db")
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(EXPERIMENT, artifact_location=(tmp / "art").as_uri())

    # the earlier sweep and its run (later reused)
    old = _run(client, exp_id, "sweep-old", _sweep_tags(tmp / "sweep0", "ablate_demo/d/0"), T0)
    reused = _run(
        client, exp_id, "gat-none-concat-hardneg-s0",
        {"mlflow.parentRunId": old, "mmgnn.overrides": "skip=none seed=0",
         "mmgnn.monitor": "val/retrieval/mean_recall", "mmgnn.status": "finished"},
        T0 + 1000, metrics={RECALL: recall(*REUSED_KEY), ACC: ACC_VALUES[REUSED_KEY[:2]][0],
                            "params/total": 1000.0},
        params=_job_params(*REUSED_KEY),
    )

    # the latest sweep
    parent = _run(client, exp_id, "sweep-new", _sweep_tags(tmp / "sweep1", "ablate_demo/d/1"),
                  T0 + 100_000)
    client.set_tag(reused, f"mmgnn.reused_by.{parent}", "1")
    rows, start = [], T0 + 101_000
    for fusion in FUSION:
        for skip in SKIP:
            for seed in SEEDS:
                key = (skip, fusion, seed)
                start += 1000
                if key == REUSED_KEY:
                    rows.append({"skip": skip, "fusion": fusion, "seed": seed, RECALL: recall(*key),
                                 ACC: ACC_VALUES[key[:2]][seed], "run_id": reused})
                    continue
                tags = {"mlflow.parentRunId": parent,
                        "mmgnn.overrides": f"+experiment=ablate_demo skip={skip} fusion={fusion} seed={seed}",
                        "mmgnn.sweep_id": "ablate_demo/d/1"}
                name = f"gat-{skip}-{fusion}-hardneg-s{seed}"
                if key == FAILED_KEY:
                    tags["mmgnn.error"] = "RuntimeError: CUDA out of memory"
                    failed = _run(client, exp_id, name, tags, start, status="FAILED",
                                  metrics={"train/loss": 1.0}, params=_job_params(*key))
                    continue
                tags["mmgnn.monitor"] = "val/retrieval/mean_recall"
                rid = _run(client, exp_id, name, tags, start,
                           metrics={RECALL: recall(*key), ACC: ACC_VALUES[key[:2]][seed],
                                    "params/total": 1000.0 + (50 if skip == "sum" else 0)},
                           params=_job_params(*key))
                rows.append({"skip": skip, "fusion": fusion, "seed": seed, RECALL: recall(*key),
                             ACC: ACC_VALUES[key[:2]][seed], "run_id": rid})

    # an experiment whose only sweep has no finished run
    empty_id = client.create_experiment("all_failed", artifact_location=(tmp / "art2").as_uri())
    empty_parent = _run(client, empty_id, "sweep-x", _sweep_tags(tmp / "sweepx", "all_failed/d/0"), T0)
    _run(client, empty_id, "gat-sum-concat-hardneg-s0",
         {"mlflow.parentRunId": empty_parent, "mmgnn.overrides": "skip=sum seed=0",
          "mmgnn.error": "ValueError: items.csv: duplicate item_id 'a'"}, T0 + 1000, status="FAILED")
    client.create_experiment("no_sweeps", artifact_location=(tmp / "art3").as_uri())
    empty_sweep = client.create_experiment("empty_sweep", artifact_location=(tmp / "art4").as_uri())
    _run(client, empty_sweep, "sweep-e", _sweep_tags(tmp / "sweepe", "empty_sweep/d/0"), T0,
         status="RUNNING")

    return {"uri": uri, "client": client, "tmp": tmp, "parent": parent, "old": old,
            "reused": reused, "failed": failed, "expected": pd.DataFrame(rows),
            "empty_parent": empty_parent}


@pytest.fixture(scope="module")
def runs(store):
    return rp.load_runs(store["client"], store["parent"])


def test_load_runs_includes_reused_and_failed(store, runs):
    assert len(runs) == 12  # 10 children finished + 1 failed child + 1 reused
    assert set(runs["status"]) == {"FINISHED", "FAILED"}
    reused = runs[runs["run_id"] == store["reused"]]
    assert len(reused) == 1 and reused["source"].iloc[0] == "reused"
    assert reused["fusion"].iloc[0] == "concat"  # not overridden there: from params.fusion.name
    assert (runs["source"] == "child").sum() == 11
    assert store["old"] not in set(runs["run_id"]) and store["parent"] not in set(runs["run_id"])
    assert rp.factors_of(runs) == ["skip", "fusion"]  # +experiment is constant; seed replicates


def test_parse_overrides():
    assert rp.parse_overrides("+experiment=a ++x.y=3 skip=none seed=1") == {
        "experiment": "a", "x.y": "3", "skip": "none", "seed": "1"}
    assert rp.parse_overrides("(defaults)") == {}
    assert rp.parse_overrides(None) == {}
    assert rp.match_level("0.003", {"3e-3", "1e-3"}) == "3e-3"  # a reused run's param spelling
    assert rp.level_order(["10", "9", "x"]) == ["10", "9", "x"]
    assert rp.level_order(["10", "9", "0.5"], baseline="9") == ["9", "0.5", "10"]


def test_ablation_table_matches_pandas(store, runs):
    table = rp.ablation_table(runs, ["skip", "fusion"], [RECALL, ACC])
    expected = store["expected"].groupby(["skip", "fusion"])[[RECALL, ACC]].agg(["mean", "std", "count"])
    assert len(table) == 4
    for row in table.itertuples(index=False):
        skip, fusion = row[0], row[1]
        record = dict(zip(table.columns, row))
        for metric in (RECALL, ACC):
            assert record[f"{metric}:mean"] == pytest.approx(expected.loc[(skip, fusion), (metric, "mean")])
            assert record[f"{metric}:std"] == pytest.approx(expected.loc[(skip, fusion), (metric, "std")])
            assert record[f"{metric}:n"] == expected.loc[(skip, fusion), (metric, "count")]
    # best first by the primary metric; the failed job is not counted
    assert list(table[f"{RECALL}:mean"]) == sorted(table[f"{RECALL}:mean"], reverse=True)
    assert table.iloc[0][["skip", "fusion"]].tolist() == ["sum", "gated"]
    assert table.iloc[0][f"{RECALL}:n"] == 2 and table.iloc[0]["runs"] == 2
    none_concat = table[(table["skip"] == "none") & (table["fusion"] == "concat")]
    assert none_concat[f"{RECALL}:n"].iloc[0] == 3  # the reused run counts
    # lower-is-better metrics sort ascending
    by_size = rp.ablation_table(runs, ["skip", "fusion"], ["params/total"])
    assert list(by_size["params/total:mean"]) == sorted(by_size["params/total:mean"])


def test_rank_view_by_hand(runs):
    ranks = rp.rank_view(runs, ["skip", "fusion"], ACC).set_index(["factor", "level"])
    # skip, groups (fusion, seed): (concat,0) sum; (concat,1) tie; (concat,2) none; (gated,0)
    # sum; (gated,1) sum; (gated,2) holds only none (sum failed) and is left out.
    assert ranks.loc[("skip", "none"), "groups"] == 5
    assert ranks.loc[("skip", "none"), "mean_rank"] == pytest.approx((2 + 1.5 + 1 + 2 + 2) / 5)
    assert ranks.loc[("skip", "sum"), "mean_rank"] == pytest.approx((1 + 1.5 + 2 + 1 + 1) / 5)
    assert ranks.loc[("skip", "sum"), "rank1"] == 4 and ranks.loc[("skip", "sum"), "rank2"] == 1
    assert ranks.loc[("skip", "none"), "rank1"] == 2 and ranks.loc[("skip", "none"), "rank2"] == 3
    # fusion, groups (skip, seed): concat wins (none,0), (sum,0); gated wins (none,1), (none,2), (sum,1)
    assert ranks.loc[("fusion", "gated"), "mean_rank"] == pytest.approx(1.4)
    assert ranks.loc[("fusion", "concat"), "mean_rank"] == pytest.approx(1.6)
    assert ranks.loc[("fusion", "gated"), "rank1"] == 3
    # the same as a direct computation
    fin = runs[runs["status"] == "FINISHED"]
    direct = fin.assign(r=fin.groupby(["fusion", "seed"])["metrics." + ACC].rank(ascending=False))
    direct = direct[direct.groupby(["fusion", "seed"])["skip"].transform("size") == 2]
    assert direct.groupby("skip")["r"].mean().to_dict() == pytest.approx(
        {"none": ranks.loc[("skip", "none"), "mean_rank"], "sum": ranks.loc[("skip", "sum"), "mean_rank"]})
    # lower-is-better metrics rank ascending
    lower = rp.group_ranks(runs, ["skip", "fusion"], "skip", "params/total")
    assert set(lower.loc[lower["skip"] == "none", "rank"]) == {1.0}


def test_marginal_effects_and_paired_differences(store, runs):
    expected = store["expected"]
    effects = rp.marginal_effects(runs, ["skip", "fusion"], RECALL).set_index(["factor", "level"])
    for factor in ("skip", "fusion"):
        for level, values in expected.groupby(factor)[RECALL]:
            row = effects.loc[(factor, level)]
            assert row["n"] == len(values)
            assert row["mean"] == pytest.approx(values.mean())
            assert row["ci_low"] <= row["mean"] <= row["ci_high"]
            assert row["ci_low"] < row["ci_high"]  # the values differ

    baselines = rp.choose_baselines(runs, ["skip", "fusion"])
    assert baselines == {"skip": "none", "fusion": "concat"}
    diffs = rp.paired_differences(runs, ["skip", "fusion"], RECALL, baselines).set_index("factor")
    # every pair differs by exactly the additive effect: the interval is degenerate
    assert diffs.loc["skip", "level"] == "sum" and diffs.loc["skip", "pairs"] == 5
    assert diffs.loc["skip", "diff"] == pytest.approx(0.1)
    assert diffs.loc["skip", "diff_ci_low"] == pytest.approx(0.1, abs=1e-12)
    assert diffs.loc["skip", "diff_ci_high"] == pytest.approx(0.1, abs=1e-12)
    assert diffs.loc["skip", "wins"] == 5
    assert diffs.loc["fusion", "pairs"] == 5 and diffs.loc["fusion", "diff"] == pytest.approx(0.04)
    # a chosen baseline flips the sign; paired acc differences match a direct computation
    flipped = rp.paired_differences(runs, ["skip", "fusion"], RECALL, {"skip": "sum", "fusion": "concat"})
    assert flipped.set_index("factor").loc["skip", "diff"] == pytest.approx(-0.1)
    acc = rp.paired_differences(runs, ["skip", "fusion"], ACC, baselines).set_index("factor")
    wide = expected.pivot_table(index=["fusion", "seed"], columns="skip", values=ACC)
    direct = (wide["sum"] - wide["none"]).dropna()
    assert acc.loc["skip", "pairs"] == len(direct) == 5
    assert acc.loc["skip", "diff"] == pytest.approx(direct.mean())
    assert acc.loc["skip", "diff_ci_low"] <= direct.mean() <= acc.loc["skip", "diff_ci_high"]
    # by hand: diffs 0.02, 0, -0.05, 0.03, 0.08; mean 0.016, sd 0.047223, se 0.021119,
    # 95% t-interval 0.016 ± t(0.975, 4) 2.77645 * 0.021119 = 0.016 ± 0.058635
    assert acc.loc["skip", "diff_ci_low"] == pytest.approx(0.016 - 0.058635, abs=1e-6)
    assert acc.loc["skip", "diff_ci_high"] == pytest.approx(0.016 + 0.058635, abs=1e-6)


def test_interval_and_markdown_helpers():
    assert rp.t_interval([0.3, 0.3, 0.3]) == pytest.approx((0.3, 0.3))
    assert all(math.isnan(v) for v in rp.t_interval([]))
    table = rp.markdown_table(pd.DataFrame({"a": ["x|y"], "b": [0.123456]}))
    assert table.splitlines() == ["| a | b |", "|---|---:|", "| x\\|y | 0.1235 |"]
    assert rp.higher_is_better(RECALL) and not rp.higher_is_better("test/retrieval/medr")
    assert not rp.higher_is_better("time/total_s") and not rp.higher_is_better("params/total")


def test_cli_latest_sweep_report_and_artifacts(store, capsys):
    report = cli.main(["--experiment", EXPERIMENT, "--tracking-uri", store["uri"]])
    out_dir = store["tmp"] / "sweep1" / "report"  # the latest sweep's folder, not sweep0
    assert report.path == out_dir / "report.md"
    printed = capsys.readouterr().out
    assert str(report.path) in printed and "| skip | fusion |" in printed
    for name in ("report.md", "failed.md", "ablation.csv", "ablation.md", "ranks.csv", "ranks.md",
                 "effects.csv", "effects.md", "ranks_skip.png", "ranks_fusion.png",
                 "effects_skip.png", "effects_fusion.png"):
        assert (out_dir / name).is_file(), name
    text = report.path.read_text()
    head = text.splitlines()[2]
    assert "1 of 12 runs did not finish (FAILED 1)" in head
    assert "FINISHED 11, FAILED 1" in text and "reused from earlier sweeps: 1" in text
    assert store["parent"] in text and "ablate_demo/d/1" in text
    assert "RuntimeError: CUDA out of memory" in text and "gat-sum-gated-hardneg-s2" in text
    failed = (out_dir / "failed.md").read_text()
    assert "gat-sum-gated-hardneg-s2" in failed and "FAILED" in failed
    assert "skip=sum fusion=gated seed=2" in failed and "RuntimeError: CUDA out of memory" in failed
    assert "![ranks_skip](ranks_skip.png)" in text
    assert "- replicates: seed (0, 1, 2)" in text  # no data.seed override: seed alone
    assert "95% Student-t interval over those n runs" in text  # the caption names the method
    effects_md = (out_dir / "effects.md").read_text()
    assert "[95% t-interval over runs]" in effects_md and "[95% t-interval over pairs]" in effects_md
    csv = pd.read_csv(out_dir / "ablation.csv")
    assert csv[f"{RECALL}:n"].sum() == 11
    logged = {a.path for a in store["client"].list_artifacts(store["parent"], "report")}
    assert {"report/report.md", "report/failed.md", "report/ablation.csv",
            "report/ranks_skip.png", "report/effects_fusion.png"} <= logged


def test_cli_parent_out_metrics_baseline(store, tmp_path):
    out = tmp_path / "rep"
    report = cli.main(["--parent", store["old"], "--tracking-uri", store["uri"], "--no-log",
                      "--out", str(out)])  # the earlier sweep: one run, no factor
    assert report.path == out / "report.md" and "All 1 runs finished." in report.path.read_text()
    report = cli.main(["--parent", store["parent"], "--tracking-uri", store["uri"], "--no-log",
                      "--out", str(out), "--metrics", f"{ACC},nope/x", "--baseline", "skip=sum"])
    text = report.path.read_text()
    assert f"primary metric: `{ACC}`" in text and "nope/x" in text
    effects = pd.read_csv(out / "effects.csv")
    row = effects[(effects["factor"] == "skip") & (effects["level"] == "none")].iloc[0]
    assert row["diff"] < 0 and not row["baseline"] and row["pairs"] == 5
    ranks = pd.read_csv(out / "ranks.csv")
    assert ranks.loc[(ranks["factor"] == "skip") & (ranks["level"] == "sum"), "mean_rank"].iloc[0] \
        == pytest.approx(1.3)  # ranked by the chosen primary metric (acc)
    assert (out / "ranks_skip.png").is_file() and (out / "effects_skip.png").is_file()


def test_no_finished_runs_is_a_report(store, tmp_path):
    report = cli.main(["--experiment", "all_failed", "--tracking-uri", store["uri"], "--no-log",
                      "--out", str(tmp_path)])
    text = report.path.read_text()
    assert "No finished runs" in text and "duplicate item_id" in text
    assert "FAILED 1" in text


def test_sweep_without_runs_is_a_report(store, tmp_path):
    report = cli.main(["--experiment", "empty_sweep", "--tracking-uri", store["uri"], "--no-log",
                      "--out", str(tmp_path)])
    assert "The sweep has no runs." in report.path.read_text()


@pytest.mark.parametrize("argv, message", [
    (["--experiment", "nope"], "no experiment named 'nope'"),
    (["--experiment", "no_sweeps"], "has no sweep"),
    (["--parent", "0123456789abcdef0123456789abcdef"], "no run"),
    (["--parent", "PLACEHOLDER", "--metrics", "test/retrieval/mean_recal"], "close: test/retrieval/mean_recall"),
    (["--parent", "PLACEHOLDER", "--baseline", "skip=concat"], "no such level"),
])
def test_cli_errors(store, argv, message):
    argv = [store["parent"] if a == "PLACEHOLDER" else a for a in argv]
    with pytest.raises(SystemExit) as error:
        cli.main([*argv, "--tracking-uri", store["uri"], "--no-log", "--out", str(store["tmp"] / "x")])
    assert message in str(error.value.code)


# ----------------------------------------------------------------------------- sweep files
DETAIL = "test/group/g1/retrieval/map"  # a detailed key that no run logs as an MLflow metric
DETAIL_VALUES = {("none", 0): 0.40, ("none", 1): 0.50, ("sum", 0): 0.70, ("sum", 1): 0.80}


def _metrics_csv(folder, rows):
    """A run's ``metrics.csv`` in the tracking contract's layout."""
    path = folder / "metrics.csv"
    pd.DataFrame([{"key": k, "split": k.split("/")[0], "metric": k.rsplit("/", 1)[-1], "query": "",
                   "gallery": "", "group": "", "condition": "", "value": v} for k, v in rows.items()]
                 ).to_csv(path, index=False)
    return path


def _small_sweep(store, name, parent_tags=None):
    """A new experiment in ``store`` with a parent run tagged as a sweep: (client, exp id, parent)."""
    client, tmp = store["client"], store["tmp"] / name
    exp_id = client.create_experiment(name, artifact_location=(tmp / "art").as_uri())
    parent = _run(client, exp_id, "sweep", {**_sweep_tags(tmp / "sweep", f"{name}/d/0"),
                                            **(parent_tags or {})}, T0)
    return client, exp_id, parent


def _child(client, exp_id, parent, skip, seed, start, status="FINISHED", metrics=None):
    tags = {"mlflow.parentRunId": parent, "mmgnn.overrides": f"skip={skip} seed={seed}"}
    if status == "FAILED":
        tags["mmgnn.error"] = "RuntimeError: boom"
    return _run(client, exp_id, f"gat-{skip}-s{seed}", tags, start, status=status, metrics=metrics,
                params=_job_params(skip, "concat", seed))


def test_metrics_not_logged_to_mlflow_come_from_the_metrics_csv_artifact(store, tmp_path, monkeypatch):
    client, exp_id, parent = _small_sweep(store, "detail_demo")
    finished = {}
    for i, (skip, seed) in enumerate(DETAIL_VALUES):
        rid = _child(client, exp_id, parent, skip, seed, T0 + 1000 * (i + 1),
                     metrics={RECALL: recall(skip, "concat", seed)})
        if (skip, seed) != ("sum", 1):  # an older run without the artifact keeps no value
            folder = tmp_path / rid
            folder.mkdir()
            # the logged MLflow metric wins over the table's (here deliberately different) value
            client.log_artifact(rid, str(_metrics_csv(folder, {DETAIL: DETAIL_VALUES[skip, seed],
                                                               RECALL: 99.0})))
        finished[rid] = (skip, seed)
    failed = _child(client, exp_id, parent, "sum", 2, T0 + 9000, status="FAILED")
    (tmp_path / failed).mkdir()
    client.log_artifact(failed, str(_metrics_csv(tmp_path / failed, {DETAIL: 5.0})))

    downloads = []
    original = MlflowClient.download_artifacts

    def counted(self, run_id, path, dst_path=None):
        downloads.append((run_id, path))
        return original(self, run_id, path, dst_path)

    monkeypatch.setattr(MlflowClient, "download_artifacts", counted)
    out = tmp_path / "rep"
    report = cli.main(["--parent", parent, "--tracking-uri", store["uri"], "--no-log", "--out", str(out),
                       "--metrics", f"{DETAIL},{RECALL}"])
    # one download per finished run that has the artifact; none for the failed run
    assert sorted(downloads) == sorted((rid, "metrics.csv") for rid, key in finished.items()
                                       if key != ("sum", 1))
    table = pd.read_csv(out / "ablation.csv").set_index("skip")
    assert table.loc["none", f"{DETAIL}:mean"] == pytest.approx(0.45)
    assert table.loc["none", f"{DETAIL}:n"] == 2 and table.loc["sum", f"{DETAIL}:n"] == 1
    assert table.loc["sum", f"{DETAIL}:mean"] == pytest.approx(0.70)
    assert table.loc["none", f"{RECALL}:mean"] == pytest.approx(0.505)  # MLflow's, not 99
    assert list(table.index) == ["sum", "none"]  # best first by the detailed primary metric
    text = report.path.read_text()
    assert f"primary metric: `{DETAIL}`" in text
    assert "| none | 2 | 0.4500 ± 0.0707 (2) | 0.5050 ± 0.0071 (2) |" in text
    assert "| sum | 2 | 0.7000 ± – (1) | 0.6050 ± 0.0071 (2) |" in text


def test_a_malformed_metrics_csv_is_named(tmp_path):
    path = tmp_path / "metrics.csv"
    path.write_text("key,value\ntest/a,0.5\ntest/b,high\n")
    with pytest.raises(rp.ReportError, match=r"run r1: metrics.csv row 3: value 'high' of 'test/b'"):
        rp.read_metrics_csv(path, "run r1")
    path.write_text("name,value\ntest/a,0.5\n")
    with pytest.raises(rp.ReportError, match="lacks the column"):
        rp.read_metrics_csv(path, "run r1")
    path.write_text("key,value\ntest/a,0.5\ntest/b,nan\n")
    assert rp.read_metrics_csv(path).to_dict() == {"test/a": 0.5}


def test_jobs_that_failed_before_their_run_existed_are_listed_and_counted(store, tmp_path):
    client, exp_id, parent = _small_sweep(store, "unstarted_demo", {"mmgnn.expected_jobs": "5"})
    for i, skip in enumerate(("none", "sum")):
        _child(client, exp_id, parent, skip, 0, T0 + 1000 * (i + 1), metrics={RECALL: 0.5 + 0.1 * i})
    _child(client, exp_id, parent, "none", 1, T0 + 5000, status="FAILED")
    jobs = [{"job": 3, "overrides": ["skip=concat", "seed=0"], "error": "ValueError: bad graph"},
            # the failed run above: recorded already, not listed twice
            {"job": 2, "overrides": ["skip=none", "seed=1"], "error": "RuntimeError: boom"}]
    (tmp_path / "failed_jobs.json").write_text(json.dumps(jobs))
    client.log_artifact(parent, str(tmp_path / "failed_jobs.json"))

    runs = rp.load_runs(client, parent)
    assert len(runs) == 4
    unstarted = runs[runs["source"] == "no_run"].iloc[0]
    assert (unstarted["run_name"], unstarted["status"], unstarted["skip"], unstarted["seed"]) == (
        "job 3", "FAILED", "concat", "0")
    report = rp.report_sweep(client, parent, out=tmp_path / "rep")  # logs to the parent run
    text = report.path.read_text()
    assert "**2 of 4 jobs did not finish (FAILED 2)" in text
    assert "**1 of the 5 jobs the sweep launched left no record.**" in text
    assert "- runs: 3 (FINISHED 2, FAILED 1); reused from earlier sweeps: 0" in text
    assert ("- jobs: 5 expected, 3 with an MLflow run, 1 without one (failed before their run "
            "existed, or never launched), 1 without any record") in text
    failed = (tmp_path / "rep" / "failed.md").read_text()
    assert "| job 3 | FAILED | `skip=concat seed=0` | ValueError: bad graph | (no run) |" in failed
    assert "2 of 4 jobs did not finish" in failed and failed.count("RuntimeError: boom") == 1
    assert pd.read_csv(tmp_path / "rep" / "ablation.csv")[f"{RECALL}:n"].sum() == 2
    logged = client.get_run(parent)
    assert logged.data.tags["mlflow.note.content"].startswith("| skip | runs |")
    assert "report/failed.md" in {a.path for a in client.list_artifacts(parent, "report")}


@pytest.mark.parametrize("content, message", [
    ('{"job": 1}', "must be a list of jobs"),
    ('[{"job": "1", "overrides": [], "error": ""}]', "entry 0: expected"),
    ("[", "is not JSON"),
])
def test_a_malformed_failed_jobs_file_is_named(store, tmp_path, content, message):
    client, _, parent = _small_sweep(store, f"bad_jobs_{len(content)}")
    (tmp_path / "failed_jobs.json").write_text(content)
    client.log_artifact(parent, str(tmp_path / "failed_jobs.json"))
    with pytest.raises(rp.ReportError, match=f"run {parent}: failed_jobs.json.*{message}"):
        rp.load_runs(client, parent)
