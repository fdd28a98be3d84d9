"""experiments.bench_pe's study table: reading a multirun folder into per-setting statistics of
the fused accuracy with every modality and with each modality alone."""
from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from experiments.bench_pe import alone_accuracies, format_sweep_table, sweep_table


def write_job(folder, pe: str, gnn: str, seed: int, fused: float, image_alone: float, rows_alone: float):
    """A finished job as Hydra and run_job leave it: .hydra/config.yaml and test_metrics.json."""
    (folder / ".hydra").mkdir(parents=True)
    cfg = {"pe": {"default": {"kind": pe}}, "model": {"readout": "query"}, "seed": seed,
           "gnn": {"conv": {"_target_": f"mmgnn.models.convs.{gnn}"}}}
    OmegaConf.save(OmegaConf.create(cfg), folder / ".hydra" / "config.yaml")
    metrics = {"test/fused/acc": fused, "test/gates/image/mean": 0.5, "test/gates/rows/mean": 0.5,
               "test/missing/rows/fused/acc": image_alone, "test/missing/image/fused/acc": rows_alone,
               "test/missing/rows/retrieval/map": 0.1, "test/noise/image/0.3/fused/acc": 0.0}
    (folder / "test_metrics.json").write_text(json.dumps({"metrics": metrics}))


def test_alone_reads_the_condition_where_every_other_modality_is_missing():
    metrics = {"test/fused/acc": 0.9, "test/gates/a/mean": 0.2, "test/gates/b/mean": 0.3,
               "test/gates/c/mean": 0.5, "test/missing/b_and_c/fused/acc": 0.6,
               "test/missing/a_and_c/fused/acc": 0.7, "test/missing/a_and_b/fused/acc": 0.8,
               "test/missing/a/fused/acc": 0.1}
    assert alone_accuracies(metrics) == {"all": 0.9, "a alone": 0.6, "b alone": 0.7, "c alone": 0.8}


def test_sweep_table_means_and_stds_over_seeds(tmp_path):
    write_job(tmp_path / "0", "sinusoidal", "GATLayer", 0, 0.99, 0.90, 0.80)
    write_job(tmp_path / "1", "sinusoidal", "GATLayer", 1, 0.97, 0.94, 0.86)
    write_job(tmp_path / "2", "none", "GATLayer", 0, 0.95, 0.70, 0.60)
    write_job(tmp_path / "3", "sinusoidal", "LinearLayer", 0, 0.93, 0.85, 0.75)
    (tmp_path / "4").mkdir()  # a job that did not finish: no test_metrics.json, not counted
    stats = sweep_table(tmp_path)
    row = stats.loc[("sinusoidal", "query", "GATLayer", "image alone")]
    assert row["mean"] == pytest.approx(0.92) and row["std"] == pytest.approx(np.std([0.90, 0.94], ddof=1))
    assert row["count"] == 2
    assert stats.loc[("sinusoidal", "query", "GATLayer", "rows alone"), "mean"] == pytest.approx(0.83)
    assert stats.loc[("none", "query", "GATLayer", "all"), "mean"] == pytest.approx(0.95)
    assert stats.loc[("sinusoidal", "query", "LinearLayer", "rows alone"), "count"] == 1
    cells = format_sweep_table(stats)
    assert list(cells.columns) == ["all", "image alone", "rows alone"]
    assert cells.loc[("sinusoidal", "query", "GATLayer"), "image alone"] == "0.920 +- 0.028 (n=2)"


def test_sweep_table_refuses_a_folder_without_finished_jobs(tmp_path):
    with pytest.raises(FileNotFoundError, match="test_metrics.json"):
        sweep_table(tmp_path)
