"""Every default lives in one place: the schema dataclasses of ``mmgnn/config.py``.

A YAML option may set only the keys that make it that option (``OPTION_KEYS``: which dataset,
which graph builders, which stages); every other key it composes to must equal the schema's
default. The trainer reads the same typed objects (``TrainerConfig``), so a run composed from
the default YAML trains with exactly the dataclass defaults.
"""
from dataclasses import fields

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from mmgnn.config import (
    CONF_DIR,
    SCHEMAS,
    StageConfig,
    TrainConfig,
    TrainerConfig,
    group_options,
    register_configs,
)


# The keys an option may set away from the schema's default: what the option *is*.
OPTION_KEYS = {
    "data": {"loader", "path", "pairing"},  # the dataset, and what corresponds in it
    "graph": {"default", "modalities"},  # the builders
    "train": {"stages"},  # e.g. train=joint: one joint stage instead of staged fine-tuning
    "optim": set(),
    "sched": set(),
    "tracking": set(),
}
# Groups whose option files hold no default at all (only their OPTION_KEYS).
DEFAULTS_ONLY_IN_SCHEMA = ("optim", "sched", "train")


def compose_cfg(overrides=()):
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("config", overrides=list(overrides))


def disagreements(node, schema, allowed):
    """``{key: (composed value, schema default)}`` for keys outside ``allowed`` that differ."""
    composed = OmegaConf.to_container(node, resolve=False)
    defaults = OmegaConf.to_container(OmegaConf.structured(schema), resolve=False)
    return {
        key: (composed.get(key), default)
        for key, default in defaults.items()
        if key not in allowed and composed.get(key) != default
    }


OPTIONS = [(group, option) for group in SCHEMAS for option in group_options(group)]


@pytest.mark.parametrize("group,option", OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_yaml_option_agrees_with_schema_defaults(group, option):
    cfg = compose_cfg([f"{group}={option}"])
    assert disagreements(cfg[group], SCHEMAS[group], OPTION_KEYS[group]) == {}


def test_disagreement_check_catches_a_yaml_default_that_differs():
    node = OmegaConf.merge(OmegaConf.structured(TrainConfig), {"patience": 5})
    assert disagreements(node, TrainConfig, OPTION_KEYS["train"]) == {"patience": (5, 4)}
    node = OmegaConf.merge(OmegaConf.structured(TrainConfig), {"stages": [{"name": "joint"}]})
    assert disagreements(node, TrainConfig, OPTION_KEYS["train"]) == {}


@pytest.mark.parametrize("group", DEFAULTS_ONLY_IN_SCHEMA)
def test_option_files_set_only_their_option_keys(group):
    for path in sorted((CONF_DIR / group).glob("*.yaml")):
        keys = set(OmegaConf.load(path)) - {"defaults"}
        assert keys <= OPTION_KEYS[group], f"{path} restates schema defaults: {keys}"


def test_trainer_config_from_the_default_yaml_is_the_schema_defaults():
    assert TrainerConfig.from_config(compose_cfg()) == TrainerConfig()


def test_trainer_config_reads_overrides_as_typed_objects():
    cfg = compose_cfg(["train=joint", "train.patience=7", "optim.lr=0.01", "optim.betas=[0.8,0.9]",
                       "sched.min_lr_ratio=0.0", "seed=3", "data.pairing=label"])
    config = TrainerConfig.from_config(cfg)
    assert config.train.stages == [StageConfig("joint", 20)]
    assert isinstance(config.train.stages[0], StageConfig)
    assert (config.train.patience, config.optim.lr, config.optim.betas) == (7, 0.01, [0.8, 0.9])
    assert (config.sched.min_lr_ratio, config.seed, config.pairing) == (0.0, 3, "label")
    others = {f.name for f in fields(TrainConfig)} - {"stages", "patience"}
    assert all(getattr(config.train, k) == getattr(TrainConfig(), k) for k in others)
