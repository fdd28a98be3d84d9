"""The benchmark scripts still run on tiny inputs (their numbers are never asserted)."""
from experiments import bench_graphs, bench_models, bench_scale, bench_step, benchmark
from mmgnn.config import group_options

from conftest import sqlite_store


def test_graph_benchmark_runs_on_a_small_dataset(capsys):
    bench_graphs.main(["--sizes", "200", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "build_graphs" in out and "200 items" in out


def test_model_benchmark_runs_every_variant(capsys):
    bench_models.main(["--batch-size", "8", "--n-batches", "1", "--warmup", "0", "--repeats", "2",
                       "--threads", "1"])
    out = capsys.readouterr().out
    rows = [line.split("|")[1:5] for line in out.splitlines() if line.startswith("| fusion") or line.startswith("| gnn")]
    assert {gnn for varied, gnn, _, _ in rows if varied.strip() == "gnn"} == {f" {g} " for g in group_options("gnn")}
    fusions = {fusion.split(" (")[0].strip() for varied, _, _, fusion in rows if varied.strip() == "fusion"}
    assert fusions == set(group_options("fusion"))
    assert len(rows) == len(group_options("gnn")) + len(group_options("fusion")) + 1  # + xattn attend=all


def test_training_benchmark_varies_every_gnn_and_fusion_option():
    assert benchmark.variants() == [("gnn", g) for g in group_options("gnn")] + [
        ("fusion", f) for f in group_options("fusion")]


def test_beta_sweep_plot_averages_diagnostics_after_warmup_and_writes_png(tmp_path, capsys):
    """A fake hardneg sweep in a temporary sqlite store: per-run values, table and PNG."""
    import pytest
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    from experiments import plot_beta_sweep

    uri = sqlite_store(tmp_path / "m.db")
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("beta_demo", artifact_location=(tmp_path / "art").as_uri())
    parent = client.create_run(exp, tags={"mmgnn.role": "sweep"}).info.run_id
    client.set_terminated(parent)
    # (beta, seed, status, test recall, floor share per epoch 0..2); warm-up 1 epoch: epoch 0 out
    jobs = [(0, 0, "FINISHED", 0.5, [0.9, 0.6, 0.4]), (2, 0, "FINISHED", 0.8, [0.9, 0.1, 0.0]),
            (2, 1, "FINISHED", 0.7, [0.9, 0.3, 0.1]), (8, 0, "FAILED", 0.0, [0.9, 0.9, 0.9]),
            (None, 0, "FINISHED", 0.9, [])]  # a run of another loss: no beta, left out
    for beta, seed, status, recall, floor in jobs:
        overrides = "loss=infonce" if beta is None else f"loss.alignment.beta={beta} seed={seed}"
        run = client.create_run(exp, tags={"mlflow.parentRunId": parent,
                                           "mmgnn.overrides": overrides}).info.run_id
        params = {"loss.alignment.beta_warmup_epochs": "1", "loss.alignment.beta_scale": "logit"}
        if beta is not None:
            params["loss.alignment.beta"] = str(beta)
        metrics = [Metric("test/retrieval/mean_recall", recall, 0, 0)]
        metrics += [Metric("train/hardneg/floor_share", v, 0, step) for step, v in enumerate(floor)]
        metrics += [Metric("train/hardneg/weight_entropy", 1.0 - v, 0, step)
                    for step, v in enumerate(floor)]
        client.log_batch(run, metrics=metrics,
                         params=[Param(k, v) for k, v in params.items()])
        client.set_terminated(run, status)

    out = tmp_path / "plots" / "beta.png"
    points = plot_beta_sweep.main(["--experiment", "beta_demo", "--tracking-uri", uri,
                                   "--out", str(out)])
    assert points["beta"].tolist() == [0.0, 2.0, 2.0]
    assert points["test_mean_recall"].tolist() == pytest.approx([0.5, 0.8, 0.7])
    assert points["floor_share"].tolist() == pytest.approx([0.5, 0.05, 0.2])
    assert points["weight_entropy"].tolist() == pytest.approx([0.5, 0.95, 0.8])
    assert points["top1_weight"].isna().all()  # not logged
    assert "| 2 | 2 | 0.7500 | 0.1250 | 0.8750 |" in capsys.readouterr().out
    assert out.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    for experiment, name, message in (("nope", "x.png", "no experiment"),
                                      ("beta_demo", "x.txt", ".png")):
        with pytest.raises(SystemExit, match=message):
            plot_beta_sweep.main(["--experiment", experiment, "--tracking-uri", uri,
                                  "--out", str(tmp_path / name)])
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.txt").exists()


def test_training_benchmark_measures_every_phase():
    row = benchmark.measure("gnn", "mlp", n_items=120, batches=1, threads=1)
    for key in ("collate_ms", "forward_ms", "backward_ms", "step_ms", "train_items_per_s",
                "eval_items_per_s", "peak_rss_mb"):
        assert row[key] > 0
    assert row["params"] > 0 and row["items"] == 120


def test_step_benchmark_compares_project_and_reference_at_tiny_size():
    """Both workers in this process (the script runs each in a fresh one), then the table."""
    args = bench_step.parse_args(["--batch-size", "4", "--audio-nodes", "6", "--steps", "1", "--warmup", "0",
                                  "--threads", "1"])
    results = {kind: bench_step.worker(kind, args) for kind in bench_step.KINDS}
    params = {kind: r["params"] for kind, r in results.items()}
    assert results["project"]["kept_freed_memory"] and not results["reference"]["kept_freed_memory"]
    assert abs(params["project"] - params["reference"]) <= 0.05 * params["reference"]
    for r in results.values():
        assert all(r[k] > 0 and r[f"{k}_cpu"] >= 0
                   for k in ("forward", "backward", "optimizer", "step", "eval", "step_fused", "eval_branches"))
    table = "\n".join(bench_step.summary([results]))
    for phase in ("| step |", "| forward |", "| backward |", "| optimizer |", "| eval |", "| eval_branches |",
                  "| step_fused |", "| peak RSS MB |"):
        assert phase in table


def test_scale_benchmark_measures_every_phase_at_tiny_size():
    rows = [bench_scale.measure(n, threads=1, overrides=[], max_batches=1) for n in (120, 240)]
    assert [r["items"] for r in rows] == [120, 240]
    for row in rows:
        assert 0 < row["train_items"] <= 128 and 0 < row["eval_items"] <= 256
        assert all(row[k] > 0 for k in bench_scale.PHASES)
    lines = bench_scale.table(rows)
    assert lines[2].startswith("| 120 |") and lines[2].endswith("| 1.00 |") and lines[3].startswith("| 240 |")
