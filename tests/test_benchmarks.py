"""The benchmark scripts still run on tiny inputs (their numbers are never asserted)."""
from experiments import bench_graphs, bench_models, benchmark
from mmgnn.config import group_options


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


def test_training_benchmark_measures_every_phase():
    row = benchmark.measure("gnn", "mlp", n_items=120, batches=1, threads=1)
    for key in ("collate_ms", "forward_ms", "backward_ms", "step_ms", "train_items_per_s",
                "eval_items_per_s", "peak_rss_mb"):
        assert row[key] > 0
    assert row["params"] > 0 and row["items"] == 120
