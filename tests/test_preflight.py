"""A config error fails before any data loads and before any MLflow run exists, in one line
that names the key, the value and what is allowed (mmgnn.train.preflight, run.py)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from mmgnn.config import ConfigError
from mmgnn.train import job
from mmgnn.train.preflight import check_run_config
from test_config import compose_cfg

ROOT = Path(__file__).resolve().parents[1]


def run_py(args, tmp_path):
    """``run.py`` with the tracking store in ``tmp_path``: (exit code, stdout, stderr)."""
    env = {**os.environ, "DGLBACKEND": "pytorch"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), *args, f"tracking.uri=sqlite:///{tmp_path}/m.db",
         f"hydra.run.dir={tmp_path}/run"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    return proc.returncode, proc.stdout, proc.stderr


# The command-line mistakes of issue 18, and a word each message must contain.
MISTAKES = {
    "data=folder": ("data.path", "data=folder data.path=/path/to/dataset"),
    "fusion.num_heads=3": ("fusion.num_heads=3", "must divide model.embed_dim=64"),
    "train.stages.0.epochs=-1": ("train.stages.0.epochs=-1", ">= 1"),
    "experiment=ablate_gnn": ("experiment=ablate_gnn", "+experiment=ablate_gnn"),
}


@pytest.mark.parametrize("override", MISTAKES)
def test_a_config_mistake_exits_in_one_line_before_data_and_mlflow(override, tmp_path):
    code, out, err = run_py([override], tmp_path)
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert all(word in lines[0] for word in MISTAKES[override])
    assert "Traceback" not in err and "dataset " not in out  # no data summary: nothing loaded
    assert not (tmp_path / "m.db").exists()  # no MLflow store, so no run in it


@pytest.mark.parametrize("override,first_line", [
    ("optim.name=sgd", "Could not override 'optim.name'."),  # the key is gone: nothing read it
    ("data=schema", "In 'config': Could not find 'data/schema'"),  # schemas are no options
])
def test_keys_and_options_that_do_not_exist_fail_in_composition(override, first_line, tmp_path):
    code, out, err = run_py([override], tmp_path)
    assert code != 0 and err.splitlines()[0] == first_line
    assert "Traceback" not in err and not (tmp_path / "m.db").exists()


def test_help_lists_only_real_options_and_says_how_to_add_a_preset(tmp_path):
    code, out, _ = run_py(["--help"], tmp_path)
    assert code == 0
    assert "schema" not in out
    assert "python run.py -m +experiment=ablate_gnn" in out
    groups = dict(line.split(": ", 1) for line in out.split("== Configuration groups ==")[1]
                  .split("== Config ==")[0].splitlines() if ": " in line)
    from mmgnn.config import group_options

    assert groups["data"] == ", ".join(group_options("data")) and "folder" in groups["data"]
    assert groups["optim"] == "adamw"


@pytest.mark.parametrize("overrides,message", [
    (["model.readout=foo"], "model.readout='foo': mmgnn.models.MultimodalGNN expects one of 'mean'"),
    (["skip.mode=both"], "skip.mode='both': mmgnn.models.ModalitySkip expects one of 'none', 'sum'"),
    (["gnn.conv.heads=5"], "gnn.conv.heads=5 must divide gnn.hidden_dim=64"),
    (["model.embed_dim=30"], "fusion.num_heads=4 must divide model.embed_dim=30"),
    (["train.modality_dropout=1.0"], "train.modality_dropout=1.0: must be in [0, 1)"),
    (["train.batch_size=0"], "train.batch_size=0: must be >= 1"),
    (["optim.lr=0"], "optim.lr=0.0: must be > 0"),
    (["optim.betas=[0.9,1.0]"], "optim.betas=[0.9, 1.0]: must be two values in [0, 1)"),
    (["sched.warmup_fraction=1.0"], "sched.warmup_fraction=1.0: must be in [0, 1)"),
    (["train.device=gpu"], "train.device='gpu': must be auto, cpu, cuda or cuda:N"),
    (["data.pairing=pairs"], "data.pairing='pairs': must be one of item, label"),
    (["pe.default._target_=mmgnn.data.pe.Foo"], "pe.default: cannot load pe encoding 'mmgnn.data.pe.Foo'"),
    (["pe=rwse", "pe.default.steps=0"], "pe.default: rwse steps must be an integer >= 1"),
    (["pe.combine=mean"], "pe.combine='mean': must be one of concat, add"),
    (["graph.default.k=0"], "graph:"),
    (["loss.alignment.temperature=-1"], "the loss group does not build: ValueError: temperature"),
    (["loss.fused=both"], "the loss group does not build"),
    (["fusion=lowrank", "fusion.rank=0"], "the model groups (model, gnn, skip, fusion) do not build"),
])
def test_each_config_error_names_its_key(overrides, message):
    with pytest.raises(ConfigError) as error:
        check_run_config(compose_cfg(overrides))
    assert message in str(error.value)


def test_every_option_of_every_group_passes_the_check():
    from mmgnn.config import group_options

    for group in ("gnn", "skip", "fusion", "loss", "pe", "graph", "train", "text_encoder", "data"):
        for option in group_options(group):
            if "/" not in option:
                cfg = compose_cfg([f"{group}={option}"] + (["data.path=/x"] if option == "folder" else []))
                check_run_config(cfg)


def test_run_job_checks_before_loading_data(tmp_path, monkeypatch):
    loaded = []
    monkeypatch.setattr(job, "load_dataset", lambda cfg: loaded.append(cfg))
    with pytest.raises(ConfigError, match="fusion.num_heads=3"):
        job.run_job(compose_cfg(["fusion.num_heads=3"]), tmp_path)
    assert loaded == []


def test_data_seed_is_the_data_and_seed_the_model():
    cfg = compose_cfg(["seed=3"])
    assert (cfg.seed, cfg.data.seed, cfg.data.loader.seed) == (3, 0, 0)  # data fixed across seeds
    cfg = compose_cfg(["seed=3", "data.seed=${seed}"])  # the documented way to vary both
    assert (cfg.data.seed, cfg.data.loader.seed) == (3, 3)
    for data in ("synthetic", "synthetic_hard", "synthetic_positional", "digits", "folder"):
        raw = OmegaConf.to_container(compose_cfg([f"data={data}", "data.seed=5"]).data, resolve=True)
        assert raw["loader"]["seed"] == 5, data
