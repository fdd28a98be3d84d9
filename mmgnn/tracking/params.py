"""The resolved config as MLflow params, its hash (with the code version), and the run's name."""
from __future__ import annotations

import hashlib
import json

from omegaconf import DictConfig, OmegaConf

from mmgnn.paths import CONFIG_FILE
from mmgnn.tracking import version

# MLflow's limit on a param value (characters); longer values are shortened visibly.
MAX_PARAM_LENGTH = 6000
# Keys that say where or how a run is tracked, not what it computes: not part of its hash.
UNHASHED_PREFIXES = ("tracking.", "train.resume", "train.device", "train.num_threads")


def flatten(cfg: DictConfig | dict, prefix: str = "") -> dict[str, object]:
    """Nested config -> ``{"gnn.hidden_dim": 64, "train.stages.0.epochs": 3, ...}``."""
    data = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg
    flat: dict[str, object] = {}

    def walk(node, path):
        if isinstance(node, dict) and node:
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list) and node and any(isinstance(v, (dict, list)) for v in node):
            for i, v in enumerate(node):
                walk(v, f"{path}.{i}")
        else:
            flat[path] = node

    walk(data, prefix)
    return flat


def shorten(value: object, limit: int = MAX_PARAM_LENGTH) -> str:
    """A param value as text, cut to MLflow's limit with a visible marker."""
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    if len(text) <= limit:
        return text
    marker = f"...[truncated; see {CONFIG_FILE} artifact]"
    return text[: limit - len(marker)] + marker


def config_params(cfg: DictConfig) -> dict[str, str]:
    """MLflow params: every resolved config key at its dot path (``skip.mode=sum``)."""
    return {k: shorten(v) for k, v in flatten(cfg).items()}


def config_hash(cfg: DictConfig) -> str:
    """A hash of what the run computes: the resolved config (seed included) minus tracking,
    and the code version (:func:`mmgnn.tracking.version.code_version`), so that a run of
    other code never has the same hash."""
    flat = {
        k: v for k, v in flatten(cfg).items()
        if not any(k == p or k.startswith(p) for p in UNHASHED_PREFIXES)
    }
    content = {"code_version": version.code_version(), "config": flat}
    return hashlib.sha1(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_name(choices: dict[str, str], seed: int) -> str:
    """What the run is, e.g. ``gat-sum-xattn-hardneg-s1`` (from the chosen group options)."""
    parts = [choices.get(g, "?") for g in ("gnn", "skip", "fusion", "loss")]
    return "-".join(parts + [f"s{seed}"])
