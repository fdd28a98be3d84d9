"""A run whose loss never trains the fusion (``loss.fused=none``) computes, prints and records
no metric of the fused output: not in the test metrics, the validation history, the printed
summary or ``metrics.csv``; with ``loss.fused=classify`` they are all there."""
import contextlib
import io
import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from mmgnn.analysis.runs import read_metrics_csv
from mmgnn.config import register_configs
from mmgnn.tracking import MLflowJobRun
from mmgnn.train.job import run_job

from conftest import ROOT, sqlite_store

TINY = [
    "debug=fast",
    "train.max_items=64",
    "gnn.hidden_dim=16",
    "model.embed_dim=16",
    "train.robustness.noise_levels=[0.0,0.9]",
    "train.num_threads=1",
]
# fused/* and gates/* after any split, condition or group prefix (synthetic groups are g0, g1...)
FUSION_KEY = re.compile(r"(^|/)(fused|gates)/")


def compose_cfg(overrides):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        return compose("config", overrides=TINY + list(overrides))


def fusion_keys(keys) -> set[str]:
    return {k for k in keys if FUSION_KEY.search(k)}


def tracked_run(fused: str, tmp) -> tuple:
    """One job with ``loss.fused=fused``, tracked to a local sqlite MLflow: its result, the
    text it printed and the keys of its ``metrics.csv``."""
    cfg = compose_cfg([f"loss.fused={fused}", f"tracking.uri={sqlite_store(tmp / 'mlflow.db')}"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), MLflowJobRun(cfg, tmp / "run", {}, []) as tracker:
        result = run_job(cfg, tmp / "run", callbacks=[tracker])
        tracker.log_result(result)
    return result, printed.getvalue(), set(read_metrics_csv(tmp / "run" / "metrics.csv").index)


@pytest.mark.parametrize("fused", ["none", "classify"])
def test_fused_and_gate_metrics_exist_only_when_the_loss_trains_the_fusion(fused, tmp_path, one_thread):
    result, printed, csv_keys = tracked_run(fused, tmp_path)
    test = fusion_keys(result.test_metrics)
    val = fusion_keys(k for epoch in result.history for k in epoch)
    if fused == "none":
        assert test == val == fusion_keys(csv_keys) == set()
        assert not re.search(r"\b(fused|gates)/", printed)
        assert "test/retrieval/mean_recall" in result.test_metrics
        assert "val/retrieval/mean_recall" in result.history[-1]
        return
    assert {"test/fused/acc", "test/fused/map", "test/fused/label_r1", "test/worst_group/fused/acc",
            "test/gates/text/mean", "test/gates/image/mean", "test/gates/audio/mean",
            "test/missing/text/fused/acc", "test/noise/image/auc/fused/acc"} <= test
    assert {"val/fused/acc", "val/fused/map", "val/gates/text/mean"} <= val
    assert {"test/fused/acc", "best_val/fused/map", "test/gates/audio/mean"} <= csv_keys
    assert re.search(r"^fused/acc\s", printed, re.M) and "missing/text/fused/acc" in printed


def test_a_fused_monitor_without_training_the_fusion_fails_before_training(tmp_path):
    cfg = compose_cfg(["loss.fused=none", "train.monitor=fused/map", "tracking.enabled=false"])
    with pytest.raises(ValueError, match=r"train\.monitor='fused/map'.*loss\.fused=none"):
        run_job(cfg, tmp_path)
    assert not (tmp_path / "checkpoints").exists()
