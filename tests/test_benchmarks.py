"""The benchmark scripts still run on tiny inputs (their numbers are never asserted)."""
from experiments import bench_graphs, bench_models, benchmark


def test_graph_benchmark_runs_on_a_small_dataset(capsys):
    bench_graphs.main(["--sizes", "200", "--repeats", "1"])
    out = capsys.readouterr().out
    assert "build_graphs" in out and "200 items" in out


def test_model_benchmark_runs_every_variant(capsys):
    bench_models.main(["--batch-size", "8", "--n-batches", "1", "--warmup", "0", "--repeats", "2",
                       "--threads", "1"])
    out = capsys.readouterr().out
    for name in ("concat", "gated", "xattn", "lowrank", "gcn", "sage", "gin", "mlp"):
        assert name in out


def test_training_benchmark_measures_every_phase():
    row = benchmark.measure("gnn", "mlp", n_items=120, batches=1, threads=1)
    for key in ("collate_ms", "forward_ms", "backward_ms", "step_ms", "train_items_per_s",
                "eval_items_per_s", "peak_rss_mb"):
        assert row[key] > 0
    assert row["params"] > 0 and row["items"] == 120
