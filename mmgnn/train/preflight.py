"""A run's config checked as a whole before any data is loaded or any run is recorded.

Each check names the key, the value and what is allowed, as a :class:`~mmgnn.config.ConfigError`
(``run.py`` prints it as one line and exits non-zero; in a sweep the job fails and the sweep
records it). What is checked here, in order:

1. the values the schemas' types admit but no run can use (:func:`mmgnn.config.check_values`:
   ``train.stages.0.epochs=-1``, ``data=folder`` without ``data.path``, ...);
2. the ``_target_`` groups against their constructors: unknown keys, wrong types, a value
   outside a ``Literal`` (``model.readout=foo``) (:func:`mmgnn.config.check_targets`);
3. constraints between groups: attention heads must divide the width they split
   (``fusion.num_heads`` and ``model.embed_dim``, ``gnn.conv.heads`` and ``gnn.hidden_dim``);
4. every ``pe`` and ``graph`` entry builds its encoding / graph builder;
5. the model builds (:func:`mmgnn.models.factory.create_model`) on a stand-in of two small
   modalities, and the objective builds: any other constructor error, prefixed with the groups
   that configure it.

What needs the data (module names in ``train.stages``, token ids for ``text_encoder``, ``pe``
kinds that read ``pos``) is checked once the data is loaded, still before training.
"""
from __future__ import annotations

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mmgnn.config import ConfigError, check_targets, check_values
from mmgnn.data.graphs import graph_specs_from_config
from mmgnn.data.pe import make_encoding
from mmgnn.losses import MultimodalObjective
from mmgnn.losses.objective import resolve_fused
from mmgnn.models.factory import ModelSummary, create_model

# The stand-in data of the model check: two modalities (every fusion needs >= 2), two classes.
STAND_IN_DIMS = {"a": 4, "b": 4}


def check_run_config(cfg: DictConfig) -> None:
    """Every check above, cheapest first (a few milliseconds in all).

    Raises:
        ConfigError: the first problem found.
    """
    check_values(cfg)
    check_object_groups(cfg)
    check_heads(cfg)
    check_encodings_and_graphs(cfg)
    check_builds(cfg)


def check_object_groups(cfg: DictConfig) -> None:
    """The ``_target_`` groups against their constructors (keys, types, ``Literal`` values)."""
    for group in ("gnn", "skip", "fusion", "model"):
        check_targets(cfg[group], group)
    check_targets(cfg.loss.alignment, "loss.alignment")
    if OmegaConf.select(cfg, "text_encoder.encoder") is not None:
        check_targets(cfg.text_encoder.encoder, "text_encoder.encoder")


def check_heads(cfg: DictConfig) -> None:
    """Multi-head layers split a width into equal heads: the width must be a multiple."""
    pairs = [("fusion.num_heads", "model.embed_dim")]
    if not cfg.budget:  # budget mode chooses gnn.hidden_dim as a multiple of the heads
        pairs.append(("gnn.conv.heads", "gnn.hidden_dim"))
    for heads_key, width_key in pairs:
        heads, width = OmegaConf.select(cfg, heads_key), OmegaConf.select(cfg, width_key)
        if heads is None or width is None:
            continue
        if heads < 1 or width % heads:
            raise ConfigError(f"{heads_key}={heads} must divide {width_key}={width} "
                              f"(each of the {heads} heads gets an equal share of the width)")


def check_encodings_and_graphs(cfg: DictConfig) -> None:
    """Every ``pe`` entry is an encoding and every ``graph`` entry a builder, with its options."""
    pe = OmegaConf.to_container(cfg.pe, resolve=True)
    if pe.get("combine") not in ("concat", "add"):
        raise ConfigError(f"pe.combine={pe.get('combine')!r}: must be one of concat, add")
    entries = {"pe.default": pe["default"], "pe.without_pos": pe.get("without_pos")}
    entries.update({f"pe.modalities.{m}": v for m, v in (pe.get("modalities") or {}).items()})
    for where, options in entries.items():
        if options is not None:
            try:
                make_encoding(options, where)
            except ValueError as error:
                raise ConfigError(str(error)) from None
    graph = OmegaConf.to_container(cfg.graph, resolve=True)
    try:
        unlisted = "(a modality without its own builder)"  # so graph.default is built too
        graph_specs_from_config([*graph["modalities"], unlisted], graph["default"], graph["modalities"])
    except (ValueError, TypeError) as error:
        raise ConfigError(f"graph: {error}") from None


def check_builds(cfg: DictConfig) -> None:
    """The model (on :data:`STAND_IN_DIMS`) and the objective build from their groups."""
    stand_in = ModelSummary(dict(STAND_IN_DIMS), num_classes=2,
                            gnn_hidden_dim=OmegaConf.select(cfg, "gnn.hidden_dim"))
    try:  # the model factory of training and inference, without encodings or a text encoder
        create_model(cfg, stand_in, token_encoders={}, encodings={})
    except Exception as error:  # noqa: BLE001 - any constructor error is the config's
        raise ConfigError(f"the model groups (model, gnn, skip, fusion) do not build: "
                          f"{_cause(error)}") from None
    try:
        build_objective(cfg)
    except Exception as error:  # noqa: BLE001
        raise ConfigError(f"the loss group does not build: {_cause(error)}") from None


def build_objective(cfg: DictConfig, has_labels: bool = True) -> MultimodalObjective:
    """The run's objective from the ``loss`` group, for a dataset with or without labels
    (``loss.fused=auto``: :func:`~mmgnn.losses.objective.resolve_fused`)."""
    return MultimodalObjective(
        alignment=instantiate(cfg.loss.alignment),
        fused=resolve_fused(cfg.loss.fused, has_labels),
        fused_weight=cfg.loss.fused_weight,
        alignment_weight=cfg.loss.alignment_weight,
    )


def _cause(error: BaseException) -> str:
    """The innermost message of an error (Hydra wraps a constructor's error in its own)."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {error}"
