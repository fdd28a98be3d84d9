"""What a sweep will launch, read from its config before any job runs.

The sweeper itself says: a sweeper with ``split_arguments`` (Hydra's basic sweeper, the
controlled sweeper) is built from ``hydra.sweeper`` and asked for its job list, exactly as it
will launch it; a sweeper with ``n_trials`` (Optuna) launches that many; any other sweeper's
count is unknown (``None``).
"""
from __future__ import annotations

import importlib
import logging

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

from mmgnn.tracking.names import TAG_EXPECTED

log = logging.getLogger(__name__)


def _arguments(config: DictConfig) -> list[str]:
    """The sweeper's inputs: ``hydra.sweeper.params`` then the command line (Hydra's order)."""
    params = OmegaConf.select(config, "hydra.sweeper.params") or {}
    return [f"{k}={v}" for k, v in params.items()] + list(config.hydra.overrides.task)


def swept_factors(config: DictConfig) -> list[str]:
    """The override keys the sweep varies (``skip``, ``seed``, ``optim.lr``), in order."""
    overrides = OverridesParser.create().parse_overrides(_arguments(config))  # keys only: no glob expansion
    return list(dict.fromkeys(o.get_key_element() for o in overrides if o.is_sweep_override()))


def planned_jobs(config: DictConfig, loader=None) -> list[list[str]] | None:
    """Each job's overrides in launch order (job n is entry n), or ``None`` when the sweeper
    does not say in advance (Optuna's trials: a list of that many empty override lists).

    ``loader`` is the app's config loader (:func:`config_loader`): a sweep over a config
    group's ``glob(*)`` expands to that group's options through it, as the sweeper's own
    parser does; without it such a sweep's plan is unknown (``None``, with a warning).
    """
    sweeper_cfg = config.hydra.sweeper
    n_trials = OmegaConf.select(sweeper_cfg, "n_trials")
    if n_trials is not None:
        return [[] for _ in range(int(n_trials))]
    try:  # built by hand: Hydra's instantiate refuses its own ``hydra._internal`` classes
        module, _, name = sweeper_cfg._target_.rpartition(".")
        kwargs = OmegaConf.to_container(sweeper_cfg, resolve=True)
        kwargs.pop("_target_")
        sweeper = getattr(importlib.import_module(module), name)(**kwargs)
    except Exception as error:  # a sweeper we cannot build here: its count stays unknown
        log.info("cannot plan the sweep's jobs (%s); %s not set", error, TAG_EXPECTED)
        return None
    if not hasattr(sweeper, "split_arguments"):
        return None
    try:
        overrides = OverridesParser.create(config_loader=loader).parse_overrides(_arguments(config))
        batches = sweeper.split_arguments(overrides, None)
    except Exception as error:  # e.g. glob(*) without a loader: the sweep still runs and is logged
        log.warning("cannot plan the sweep's jobs (%s); %s not set", error, TAG_EXPECTED)
        return None
    return [list(job) for batch in batches for job in batch]


def config_loader():
    """The running Hydra app's config loader (keep it: Hydra clears its global state on exit),
    or ``None`` outside an app."""
    from hydra.core.global_hydra import GlobalHydra

    hydra = GlobalHydra.instance()
    return hydra.config_loader() if hydra.is_initialized() else None


def compose_error(loader, overrides: list[str]) -> str | None:
    """Why a job's config does not compose (Hydra's message), or ``None`` when it does or
    when there is nothing to compose with."""
    from hydra.types import RunMode

    if loader is None or not overrides:
        return None
    try:
        loader.load_configuration("config", overrides=list(overrides), run_mode=RunMode.MULTIRUN)
    except Exception as error:
        return f"{type(error).__name__}: {error}"[:5000]
    return None
