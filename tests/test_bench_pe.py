"""experiments.bench_pe's study table: reading a multirun folder into per-setting statistics of
the fused accuracy with every modality and with each modality alone, and message passing
against gnn=mlp paired on (data.seed, seed)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from omegaconf import OmegaConf

from experiments.bench_pe import (
    alone_accuracies,
    format_gaps,
    format_sweep_table,
    mlp_gaps,
    sweep_rows,
    sweep_table,
)


def write_job(folder, pe: str, gnn: str, seed: int, fused: float, image_alone: float, rows_alone: float,
              data_seed: int | None = None):
    """A finished job as Hydra and run_job leave it: .hydra/config.yaml, .hydra/hydra.yaml (the
    group choices) and test_metrics.json. ``data_seed`` None: a config from before
    ``data.seed`` existed (its data seeded by ``seed``)."""
    (folder / ".hydra").mkdir(parents=True)
    cfg = {"pe": {"default": {"kind": pe}}, "model": {"readout": "query"}, "seed": seed}
    if data_seed is not None:
        cfg["data"] = {"seed": data_seed}
    OmegaConf.save(OmegaConf.create(cfg), folder / ".hydra" / "config.yaml")
    choices = {"hydra": {"runtime": {"choices": {"pe": pe, "gnn": gnn}}}}
    OmegaConf.save(OmegaConf.create(choices), folder / ".hydra" / "hydra.yaml")
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
    write_job(tmp_path / "0", "sinusoidal", "gat", 0, 0.99, 0.90, 0.80)
    write_job(tmp_path / "1", "sinusoidal", "gat", 1, 0.97, 0.94, 0.86)
    write_job(tmp_path / "2", "none", "gat", 0, 0.95, 0.70, 0.60)
    write_job(tmp_path / "3", "sinusoidal", "mlp", 0, 0.93, 0.85, 0.75)
    (tmp_path / "4").mkdir()  # a job that did not finish: no test_metrics.json, not counted
    stats = sweep_table(sweep_rows(tmp_path))
    row = stats.loc[("sinusoidal", "query", "gat", "image alone")]
    assert row["mean"] == pytest.approx(0.92) and row["std"] == pytest.approx(np.std([0.90, 0.94], ddof=1))
    assert row["count"] == 2
    assert stats.loc[("sinusoidal", "query", "gat", "rows alone"), "mean"] == pytest.approx(0.83)
    assert stats.loc[("none", "query", "gat", "all"), "mean"] == pytest.approx(0.95)
    assert stats.loc[("sinusoidal", "query", "mlp", "rows alone"), "count"] == 1
    cells = format_sweep_table(stats)
    assert list(cells.columns) == ["all", "image alone", "rows alone"]
    assert cells.loc[("sinusoidal", "query", "gat"), "image alone"] == "0.920 +- 0.028 (n=2)"


def test_sweep_table_refuses_a_folder_without_finished_jobs(tmp_path):
    with pytest.raises(FileNotFoundError, match="test_metrics.json"):
        sweep_rows(tmp_path)


def test_mlp_gaps_pair_each_gnn_with_mlp_by_seed(tmp_path):
    """gat beats mlp on the image in every seed by 0.03 (paired std 0), but the seed spread is
    0.04: not "by more than the spread"; on the rows it wins by 0.10 > spread; sage wins one
    seed of two."""
    for i, (gnn, seed, image, rows) in enumerate([
        ("gat", 0, 0.93, 0.90), ("gat", 1, 0.99, 0.92), ("mlp", 0, 0.90, 0.80), ("mlp", 1, 0.96, 0.82),
        ("sage", 0, 0.91, 0.80), ("sage", 1, 0.95, 0.82), ("gat", 2, 0.5, 0.5),  # seed 2: no mlp to pair
    ]):
        write_job(tmp_path / str(i), "index", gnn, seed, 1.0, image, rows)
    gaps = mlp_gaps(sweep_rows(tmp_path))
    image = gaps.loc[("index", "query", "image alone", "gat")]
    assert image["gap"] == pytest.approx(0.03) and image["gap_std"] == pytest.approx(0.0, abs=1e-12)
    assert image["pairs"] == 2 and image["wins"] == 2
    assert image["spread"] == pytest.approx(np.std([0.93, 0.99, 0.5], ddof=1)) and not image["beats"]
    assert image["ci_low"] == pytest.approx(0.03) and image["ci_high"] == pytest.approx(0.03)  # every seed +0.03
    rows = gaps.loc[("index", "query", "rows alone", "sage")]
    assert rows["gap"] == pytest.approx(0.0) and rows["wins"] == 0 and not rows["beats"]
    sage_image = gaps.loc[("index", "query", "image alone", "sage")]
    assert sage_image["wins"] == 1 and sage_image["gap"] == pytest.approx(0.0)
    # paired gaps +0.01 and -0.01: sd 0.014142, se 0.01, 95% t-interval 0 ± t(0.975, 1) 12.7062 * 0.01
    assert sage_image["ci_low"] == pytest.approx(-0.127062, abs=1e-6)
    assert sage_image["ci_high"] == pytest.approx(0.127062, abs=1e-6)
    assert "mlp" not in gaps.index.get_level_values("gnn")
    text = format_gaps(gaps)
    assert text.startswith("message passing against gnn=mlp, paired on (data.seed, seed); "
                           "ci_low..ci_high: 95% Student-t interval of the mean gap over the pairs:")
    assert "+0.030" in text and "-0.127" in text


def test_mlp_gaps_pair_on_data_seed_and_seed(tmp_path):
    """Runs with the same seed but another data seed (another split) are never paired: gat and
    mlp share (data.seed, seed) only at (0, 0) (+0.05) and (1, 1) (+0.10)."""
    for i, (gnn, data_seed, seed, image) in enumerate([
        ("gat", 0, 0, 0.95), ("mlp", 0, 0, 0.90), ("gat", 1, 1, 0.70), ("mlp", 1, 1, 0.60),
        ("mlp", 1, 0, 0.50), ("gat", 0, 1, 0.99),  # seed shared with a run above, data.seed not
    ]):
        write_job(tmp_path / str(i), "index", gnn, seed, 1.0, image, 0.5, data_seed=data_seed)
    rows = sweep_rows(tmp_path)
    assert sorted(set(zip(rows["data.seed"], rows["seed"]))) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    image = mlp_gaps(rows).loc[("index", "query", "image alone", "gat")]
    # diffs 0.05, 0.10: mean 0.075, sd 0.035355, se 0.025, half-width 12.7062 * 0.025 = 0.317655
    assert image["pairs"] == 2 and image["wins"] == 2 and image["gap"] == pytest.approx(0.075)
    assert image["ci_low"] == pytest.approx(0.075 - 0.317655, abs=1e-6)
    assert image["ci_high"] == pytest.approx(0.075 + 0.317655, abs=1e-6)
