"""Structured configs: schemas for the config groups whose fields are fixed.

Registered in Hydra's ConfigStore as ``<group>_schema`` (outside every config group, so
``--help`` lists only real options and ``data=data_schema`` is not one) and named first in each
option's ``defaults`` list (``- /data_schema@_here_``), so a misspelt key or a value of the
wrong type fails at start with Hydra's own message (``train.epochs=abc`` -> ``Value 'abc' could
not be converted to Integer``). The groups that build objects with ``_target_`` (gnn, skip, fusion, model, loss) are checked
against their constructors' signatures and annotations by :func:`check_targets` at start.

The dataclasses below are the one place where the defaults of data, optim, sched, train and
tracking live: their YAML options (``conf/<group>/*.yaml``) set only what makes an option
what it is (``tests/test_config.py`` checks this for every option), and the trainer reads
these typed objects (:class:`TrainerConfig`), not loose arguments with defaults of their own.
"""
from __future__ import annotations

import inspect
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore


@dataclass
class DataConfig:
    """``data`` group: which dataset and how it is prepared."""

    loader: Any = None  # _target_ + arguments of the loader function
    seed: int = 0  # the data's seed (split, synthesis, partners); the model's is the top-level seed
    pairing: str = "item"  # item | label: what corresponds across modalities
    standardize: bool = True  # per-modality z-score with train-split statistics
    path: Optional[str] = None  # data=folder: the dataset folder
    modalities: Optional[list[str]] = None  # data=folder: which <modality>.npz (None: all)


@dataclass
class GraphConfig:
    """``graph`` group: one builder per modality, ``default`` for the unlisted ones.

    A builder is ``_target_`` (a ``mmgnn.data.graphs.GraphSpec`` subclass) plus that class's
    own options, from ``conf/graph/builder/<name>.yaml``; the entries are untyped here because
    each builder has other options, and ``graph_specs_from_config`` checks every entry against
    its class with an error naming the modality and the option.
    """

    default: dict[str, Any] = field(default_factory=dict)
    modalities: dict[str, Any] = field(default_factory=dict)  # modality -> builder entry
    self_loops: bool = False


@dataclass
class OptimConfig:
    """``optim`` group: AdamW with decoupled weight decay on weights only."""

    lr: float = 3e-3
    weight_decay: float = 1e-2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables clipping


@dataclass
class SchedConfig:
    """``sched`` group: linear warm-up then cosine annealing, stepped per optimiser step."""

    warmup_fraction: float = 0.1
    min_lr_ratio: float = 0.05


@dataclass
class StageConfig:
    """One stage of fine-tuning: ``epochs`` epochs with ``freeze`` modules frozen and
    ``lr_scale`` per module (``mmgnn.train.stages.Stage`` is this class).

    Module names are prefixes of parameter names: ``branches.text`` (one branch), ``fusion``,
    ``heads.image``, ``branches`` (every branch), ``loss`` (the temperature).
    """

    name: str = "joint"
    epochs: int = 10
    freeze: list[str] = field(default_factory=list)
    lr_scale: dict[str, float] = field(default_factory=dict)


def joint_training() -> list[StageConfig]:
    """The default stages: one stage of 20 epochs in which every module trains. Chosen on
    validation over staged fine-tuning (``train=staged``) across the development suite
    (docs/defaults.md); it also runs on data without a ``text`` modality."""
    return [StageConfig("joint", 20)]


@dataclass
class RobustnessConfig:
    missing: bool = True  # drop each modality and each pair of modalities at test time
    noise_levels: list[float] = field(default_factory=lambda: [0.0, 0.3, 0.6, 0.9])


@dataclass
class TrainConfig:
    """``train`` group: batches, stages, validation, early stopping, checkpoints, device."""

    batch_size: int = 128
    eval_batch_size: int = 512
    stages: list[StageConfig] = field(default_factory=joint_training)
    modality_dropout: float = 0.1  # each present modality of an item hidden with this probability
    monitor: str = "auto"  # a validation metric key, or auto (from data.pairing)
    patience: int = 4  # epochs of the last stage without improvement before stopping (0: never)
    min_steps: int = 140  # the least optimiser steps: fewer from the stages -> their epochs (and patience) x k
    min_delta: float = 0.0  # an improvement must beat the best by more than this
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision (bf16 autocast) when on CUDA; ignored on CPU
    resume: bool = False  # continue from <run dir>/checkpoints/last.pt
    stop_after_epoch: Optional[int] = None  # end the run after this epoch (tests of resume)
    max_items: Optional[int] = None  # use only this many items (debug=fast)
    num_threads: int = 0  # torch threads; 0: torch's default, or cores // n_jobs in a parallel sweep
    keep_freed_memory: bool = True  # glibc malloc keeps freed activations for reuse (mmgnn.train.allocator)
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)


@dataclass
class TrackingConfig:
    """``tracking`` group: where and what MLflow logs."""

    enabled: bool = True
    uri: Optional[str] = None  # None: sqlite:///<project>/outputs/mlflow.db
    experiment: str = "mmgnn"
    run_name: Optional[str] = None  # None: made from the config (gat-sum-xattn-infonce-s0)
    log_checkpoint: bool = True
    log_plots: bool = True
    skip_finished: bool = True  # in a sweep, a config whose hash has a FINISHED run is skipped
    force: bool = False  # re-run even when a FINISHED run of this config exists
    log_detail: bool = False  # every metric to MLflow, not only the headline set (metrics.csv has all)
    offline_ok: bool = False  # server away at start: record to the run folder only (else fail fast)


@dataclass
class TrainerConfig:
    """What :class:`~mmgnn.train.Trainer` reads from a run's config, as typed objects.

    The ``train``, ``optim`` and ``sched`` groups, ``data.pairing`` (which validation metric
    leads when ``train.monitor=auto``) and the run's ``seed`` (shuffling and modality dropout).
    """

    train: TrainConfig = field(default_factory=TrainConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    pairing: str = DataConfig.pairing
    seed: int = 0

    @classmethod
    def from_config(cls, cfg: Any) -> "TrainerConfig":
        """The typed view of a composed run config (a ``DictConfig`` with those groups)."""
        return cls(
            train=as_schema(cfg.train, TrainConfig),
            optim=as_schema(cfg.optim, OptimConfig),
            sched=as_schema(cfg.sched, SchedConfig),
            pairing=str(cfg.data.pairing),
            seed=int(cfg.seed),
        )


def as_schema(node: Any, schema: type) -> Any:
    """A config node as an instance of its schema dataclass (interpolations resolved).

    Merged onto the schema first, so a node composed without it (a plain dict) is checked
    and completed the same way Hydra does at start.
    """
    from omegaconf import OmegaConf

    return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))


class ConfigError(ValueError):
    """A config a run cannot use, found before any data is loaded; the message names the key,
    the value and what is allowed (``run.py`` prints it as one line)."""


# key -> (test of the value, what it must be): the constraints the schemas' types cannot say.
VALUE_RULES: dict[str, tuple[typing.Callable[[Any], bool], str]] = {
    "data.pairing": (lambda v: v in ("item", "label"), "one of item, label"),
    "train.batch_size": (lambda v: v >= 1, ">= 1"),
    "train.eval_batch_size": (lambda v: v >= 1, ">= 1"),
    "train.modality_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "train.patience": (lambda v: v >= 0, ">= 0 (0: never stop early)"),
    "train.min_steps": (lambda v: v >= 0, ">= 0 (0: the stages' epochs as given)"),
    "train.min_delta": (lambda v: v >= 0, ">= 0"),
    "train.num_threads": (lambda v: v >= 0, ">= 0 (0: torch's default)"),
    "train.max_items": (lambda v: v is None or v >= 2, "null or >= 2"),
    "train.stop_after_epoch": (lambda v: v is None or v >= 0, "null or >= 0"),
    "train.device": (lambda v: v in ("auto", "cpu", "cuda") or str(v).removeprefix("cuda:").isdigit(),
                     "auto, cpu, cuda or cuda:N"),
    "optim.lr": (lambda v: v > 0, "> 0"),
    "optim.weight_decay": (lambda v: v >= 0, ">= 0"),
    "optim.betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two values in [0, 1)"),
    "optim.eps": (lambda v: v > 0, "> 0"),
    "optim.grad_clip": (lambda v: v >= 0, ">= 0 (0: no clipping)"),
    "sched.warmup_fraction": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "sched.min_lr_ratio": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "budget": (lambda v: v is None or v > 0, "null or a parameter count > 0"),
    "loss.fused_weight": (lambda v: v >= 0, ">= 0"),
    "loss.alignment_weight": (lambda v: v >= 0, ">= 0"),
}


def check_values(cfg: Any) -> None:
    """The values of a composed run config that its schema's types admit but no run can use.

    Raises:
        ConfigError: naming the key, the value and the constraint, e.g.
            ``train.stages.0.epochs=-1: must be >= 1``.
    """
    from omegaconf import OmegaConf

    def fail(key: str, value: Any, rule: str) -> typing.NoReturn:
        raise ConfigError(f"{key}={value!r}: must be {rule}")

    if cfg.data.loader is not None and "path" in cfg.data.loader and cfg.data.path is None:
        raise ConfigError(f"data.path is not set, and this dataset's loader "
                          f"({cfg.data.loader._target_}) reads a folder: "
                          "python run.py data=folder data.path=/path/to/dataset")
    for key, (test, rule) in VALUE_RULES.items():
        value = OmegaConf.select(cfg, key)
        if not test(value):
            fail(key, value, rule)
    if not cfg.train.stages:
        raise ConfigError("train.stages is empty: give at least one stage (e.g. train=joint)")
    for i, stage in enumerate(cfg.train.stages):
        if stage.epochs < 1:
            fail(f"train.stages.{i}.epochs", stage.epochs, ">= 1")
    for i, level in enumerate(cfg.train.robustness.noise_levels):
        if level < 0:
            fail(f"train.robustness.noise_levels.{i}", level, ">= 0")


# The schema of each group whose fields are fixed (the other groups build objects: _target_).
SCHEMAS: dict[str, type] = {
    "data": DataConfig,
    "graph": GraphConfig,
    "optim": OptimConfig,
    "sched": SchedConfig,
    "train": TrainConfig,
    "tracking": TrackingConfig,
}


def register_configs() -> None:
    """Store every schema in Hydra's ConfigStore (call before ``@hydra.main`` runs)."""
    cs = ConfigStore.instance()
    for group, schema in SCHEMAS.items():
        cs.store(name=f"{group}_schema", node=schema)


def _accepts(annotation: Any, value: Any) -> bool:
    """Whether ``value`` fits a simple annotation (int, float, str, bool, Literal, Optional/Union)."""
    if annotation is inspect.Parameter.empty or annotation is Any:
        return True
    if typing.get_origin(annotation) is typing.Literal:
        return value in typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_accepts(a, value) for a in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation in (int, str):
        return isinstance(value, annotation) and not isinstance(value, bool)
    return True  # containers, callables, modules: left to the constructor


def _describe(annotation: Any) -> str:
    """An annotation in words: ``one of 'mean', 'max'`` for a Literal, else its name."""
    if typing.get_origin(annotation) is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(annotation))
    return getattr(annotation, "__name__", str(annotation))


def check_targets(node: Any, path: str) -> None:
    """Check a ``_target_`` config against its constructor before anything is built.

    Every key must be a parameter of the target (unless it takes ``**kwargs``) and every
    value of a simple type must match the parameter's annotation, so ``gnn.hidden_dim=abc``
    fails at start naming the key, the value and the expected type. Nested targets
    (``gnn.conv``) are checked too.
    """
    from hydra.utils import get_object
    from omegaconf import DictConfig, OmegaConf

    if not isinstance(node, DictConfig) or "_target_" not in node:
        return
    target = get_object(node._target_)
    signature = inspect.signature(target)
    hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    open_kwargs = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    for key in node:
        if str(key).startswith("_"):
            continue
        value = OmegaConf.select(node, str(key))
        if key not in signature.parameters:
            if not open_kwargs:
                raise ConfigError(
                    f"{path}.{key}: {node._target_} takes no parameter {key!r}; it takes "
                    + ", ".join(n for n in signature.parameters if n != "self")
                )
            continue
        if isinstance(value, DictConfig):
            check_targets(value, f"{path}.{key}")
        elif not _accepts(hints.get(str(key), inspect.Parameter.empty), value):
            raise ConfigError(f"{path}.{key}={value!r}: {node._target_} expects {_describe(hints[str(key)])}")


CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
# Extra config folders (os.pathsep-separated) searched after conf/: a plugin or a test adds
# options to any group (e.g. <dir>/gnn/mygnn.yaml) without editing this project.
EXTRA_CONF_ENV = "MMGNN_CONFIG_PATH"


def config_search_path() -> list[str]:
    """``conf/`` then the folders in ``$MMGNN_CONFIG_PATH``, as Hydra ``file://`` paths."""
    extra = [p for p in os.environ.get(EXTRA_CONF_ENV, "").split(os.pathsep) if p]
    return [f"file://{CONF_DIR}"] + [f"file://{Path(p).resolve()}" for p in extra]


def _config_repository():
    """Hydra's config repository over ``conf/``, ``$MMGNN_CONFIG_PATH`` and the ConfigStore,
    searched as a run searches them (search-path plugins included)."""
    from hydra._internal.config_repository import ConfigRepository
    from hydra._internal.utils import create_config_search_path

    main, *extra = config_search_path()
    search_path = create_config_search_path(main)
    known = {element.path for element in search_path.get_path()}
    for path in extra:  # already there when hydra_plugins.mmgnn_searchpath was discovered
        if path not in known:
            search_path.append("mmgnn", path)
    return ConfigRepository(config_search_path=search_path)


def group_options(group: str) -> list[str]:
    """The options of a config group (``gnn`` -> ``['gat', 'gatv2', 'gcn', ...]``), sorted.

    Read by Hydra's own config repository from ``conf/`` and ``$MMGNN_CONFIG_PATH``, so the
    tests, benchmarks and presets that cover "every gnn / fusion / ..." pick up a new option
    (one class + one YAML) without a list to edit. Nested groups are named with ``/``
    (``graph/builder``).
    """
    from hydra.core.object_type import ObjectType

    options = _config_repository().get_group_options(group, results_filter=ObjectType.CONFIG)
    return sorted(options)


def load_option(group: str, name: str) -> Any:
    """One option's config node as its file holds it (``load_option("gnn", "gat")``), found
    where :func:`group_options` finds it; a ``defaults`` list is not applied.

    Raises:
        ValueError: no such option, naming the group's options.
    """
    loaded = _config_repository().load_config(f"{group}/{name}")
    if loaded is None:
        raise ValueError(f"no config {group}/{name}; the {group} options are {group_options(group)}")
    return loaded.config
