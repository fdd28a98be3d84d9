"""One model factory for training and inference (like open_clip's ``create_model``).

A model is built from two things: the run's config (the ``model``, ``gnn``, ``skip``,
``fusion``, ``text_encoder`` and ``pe`` groups, ``budget``) and a :class:`ModelSummary` of the
data (each modality's feature size, whether its nodes have positions, the raw encoding widths,
the classes, and the branches' hidden size once chosen). Training summarises its prepared data
(:func:`summarize_data`), settles the hidden size (:func:`resolve_summary`: budget mode searches
it) and saves the summary as the run folder's ``model_meta.json``; inference loads that file
and calls :func:`create_model` with the run's saved config, so the model it rebuilds has the
trained model's modules, parameter names and shapes, and its checkpoint loads strictly.

    summary = resolve_summary(cfg, summarize_data(cfg, data), encodings=data.encodings)
    model = create_model(cfg, summary, encodings=data.encodings)     # training
    summary.save(run_dir / "model_meta.json")
    model = create_model(run_cfg, ModelSummary.load(run_dir / "model_meta.json"))  # inference
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from mmgnn.data.pe import Encoding, encodings_from_config
from mmgnn.data.pipeline import PreparedData
from mmgnn.losses.objective import resolve_fused
from mmgnn.models.budget import hidden_dim_for_budget
from mmgnn.models.multimodal import MultimodalGNN
from mmgnn.models.text_encoder import token_encoders_from_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSummary:
    """The data's side of a model: what the config alone cannot say.

    Attributes:
        modality_dims: modality -> node feature size, in the data's modality order.
        num_classes: classifier outputs (0: no classifier: ``loss.fused=none`` or no labels).
        has_pos: modality -> whether its nodes have positions (which ``pe`` entry applies:
            ``pe.without_pos`` is for modalities without them).
        pe_dims: modality -> raw columns of its node encoding (modalities with one).
        gnn_hidden_dim: the branches' hidden size; ``None`` until :func:`resolve_summary`
            chooses it (``gnn.hidden_dim``, or budget mode's search).
    """

    modality_dims: dict[str, int]
    num_classes: int = 0
    has_pos: dict[str, bool] = field(default_factory=dict)
    pe_dims: dict[str, int] = field(default_factory=dict)
    gnn_hidden_dim: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], state_dict: Mapping | None = None) -> "ModelSummary":
        """The summary ``to_dict`` wrote. Files from before ``has_pos`` and ``pe_dims`` were
        saved take them from the trained weights (``state_dict``): a modality with an encoder
        had positions, and its token projection's width is the encoding's."""
        dims = {str(m): int(d) for m, d in data["modality_dims"].items()}
        weights = {m: (state_dict or {}).get(f"encoders.{m}.token.weight") for m in dims}
        has_pos = data.get("has_pos", {m: w is not None for m, w in weights.items()})
        pe_dims = data.get("pe_dims", {m: int(w.shape[1]) for m, w in weights.items() if w is not None})
        hidden = data.get("gnn_hidden_dim")
        return cls(dims, int(data.get("num_classes", 0)), {m: bool(v) for m, v in has_pos.items()},
                   {m: int(v) for m, v in pe_dims.items()}, None if hidden is None else int(hidden))

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict()))
        return path

    @classmethod
    def load(cls, path: str | Path, state_dict: Mapping | None = None) -> "ModelSummary":
        return cls.from_dict(json.loads(Path(path).read_text()), state_dict)


def summarize_data(cfg: DictConfig, data: PreparedData) -> ModelSummary:
    """The summary of prepared data for the run ``cfg`` (the hidden size still open).

    A classifier is built only when the loss trains one (``loss.fused=classify``, or ``auto``)
    and the dataset has labels.
    """
    dataset = data.dataset
    has_labels = dataset.labels is not None
    classify = resolve_fused(OmegaConf.select(cfg, "loss.fused"), has_labels) == "classify" and has_labels
    return ModelSummary(
        modality_dims={m: d.dim for m, d in dataset.modalities.items()},
        num_classes=dataset.num_classes if classify else 0,
        has_pos={m: d.pos is not None for m, d in dataset.modalities.items()},
        pe_dims=dict(data.pe_dims),
    )


def model_encodings(cfg: DictConfig, summary: ModelSummary) -> dict[str, Encoding]:
    """modality -> node encoding from the run's ``pe`` group and which modalities have
    positions (``{}`` for a config without ``pe``)."""
    pe = OmegaConf.select(cfg, "pe")
    if pe is None:
        return {}
    pe = OmegaConf.to_container(pe, resolve=True)
    has_pos = {m: summary.has_pos.get(m, False) for m in summary.modality_dims}
    return encodings_from_config(summary.modality_dims, has_pos, pe["default"], pe.get("modalities"),
                                 pe.get("without_pos"))


def _builder(cfg: DictConfig, summary: ModelSummary, token_encoders: Mapping[str, nn.Module],
             encodings: Mapping[str, Encoding]):
    """hidden size -> the run's model (the one place the groups are instantiated)."""
    combine = OmegaConf.select(cfg, "pe.combine", default="concat")

    def build(hidden_dim: int) -> MultimodalGNN:
        model = instantiate(
            cfg.model,
            _partial_=True,
            modality_dims=dict(summary.modality_dims),
            num_classes=summary.num_classes,
            branch=instantiate(cfg.gnn, hidden_dim=hidden_dim),
            skip=instantiate(cfg.skip),
            fusion=instantiate(cfg.fusion),
        )  # the encodings and token encoders are passed as objects (instantiate would copy them)
        return model(encodings=dict(encodings), pe_dims=dict(summary.pe_dims), pe_combine=combine,
                     token_encoders=dict(token_encoders))

    return build


def resolve_summary(
    cfg: DictConfig,
    summary: ModelSummary,
    *,
    token_encoders: Mapping[str, nn.Module] | None = None,
    encodings: Mapping[str, Encoding] | None = None,
) -> ModelSummary:
    """``summary`` with the branches' hidden size chosen: kept when set, else ``gnn.hidden_dim``,
    or with ``budget`` set (GraphGym's budget mode) the size giving the model about ``budget``
    trainable parameters, a multiple of the attention heads, not counting a pretrained text
    encoder's weights. ``token_encoders`` and ``encodings`` as for :func:`create_model`."""
    if summary.gnn_hidden_dim is not None:
        return summary
    if not cfg.get("budget"):
        return replace(summary, gnn_hidden_dim=int(cfg.gnn.hidden_dim))
    token_encoders = _token_encoders(cfg, token_encoders)
    encodings = model_encodings(cfg, summary) if encodings is None else encodings
    heads = OmegaConf.select(cfg.gnn, "conv.heads", default=1) or 1
    for encoder in token_encoders.values():  # the budget counts the designed model only,
        encoder.requires_grad_(False)  # not the pretrained encoder's weights
    try:
        hidden = hidden_dim_for_budget(_builder(cfg, summary, token_encoders, encodings), cfg.budget,
                                       low=heads, high=2048, multiple_of=heads)
    finally:
        for encoder in token_encoders.values():
            encoder.requires_grad_(True)
    log.info("budget %d parameters: gnn hidden size %d", cfg.budget, hidden)
    return replace(summary, gnn_hidden_dim=hidden)


def _token_encoders(cfg: DictConfig, given: Mapping[str, nn.Module] | None) -> dict[str, nn.Module]:
    if given is not None:
        return dict(given)
    return token_encoders_from_config(OmegaConf.select(cfg, "text_encoder"))


def create_model(
    cfg: DictConfig,
    summary: ModelSummary,
    *,
    token_encoders: Mapping[str, nn.Module] | None = None,
    encodings: Mapping[str, Encoding] | None = None,
) -> MultimodalGNN:
    """The :class:`~mmgnn.models.MultimodalGNN` of run config ``cfg`` on data ``summary``.

    Args:
        cfg: the run's config (``model``, ``gnn``, ``skip``, ``fusion``, ``text_encoder``,
            ``pe``, ``budget``); ``pe.combine`` absent (a config from before encodings) means
            ``concat``.
        summary: the data's side (:class:`ModelSummary`); an unset hidden size is chosen by
            :func:`resolve_summary`.
        token_encoders: modality -> pretrained token encoder, already loaded (training loads
            it once, after checking the dataset's token ids); ``None``: from ``text_encoder``.
        encodings: modality -> node encoding (training passes the prepared data's);
            ``None``: from ``pe`` and ``summary.has_pos`` (:func:`model_encodings`).
    """
    token_encoders = _token_encoders(cfg, token_encoders)
    encodings = model_encodings(cfg, summary) if encodings is None else encodings
    summary = resolve_summary(cfg, summary, token_encoders=token_encoders, encodings=encodings)
    return _builder(cfg, summary, token_encoders, encodings)(summary.gnn_hidden_dim)
