"""One job: data -> graphs -> model -> training -> test metrics (:func:`run_job`).

``run.py``'s tracked entry around it is :func:`mmgnn.launch.job.main_job`.
"""
from __future__ import annotations

import json
import logging
import resource
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mmgnn import paths
from mmgnn.config import TrainerConfig
from mmgnn.data.dataset import MultimodalDataset
from mmgnn.data.graphs import graph_specs_from_config
from mmgnn.data.pe import dataset_encodings
from mmgnn.data.pipeline import PreparedData, prepare_data
from mmgnn.featurize.record import record_featurize_info
from mmgnn.metrics import monitored_value
from mmgnn.models import count_parameters
from mmgnn.models.factory import ModelSummary, create_model, resolve_summary, summarize_data
from mmgnn.models.text_encoder import token_encoders_from_config
from mmgnn.train.allocator import keep_freed_memory, restore_malloc_defaults
from mmgnn.train.evaluation import SplitOutputs, collect_outputs, robustness, score
from mmgnn.train.preflight import build_objective, check_run_config
from mmgnn.train.trainer import EpochCallback, FitResult, Trainer, seed_everything

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    """Everything a job produced: the value sweepers optimise and the files it wrote."""

    monitor: str
    value: float  # best validation value of the monitored metric
    test_metrics: dict[str, float]  # test/*, best_val/missing/* (with robustness.missing), cost
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    run_dir: Path | None = None
    files: dict[str, Path] = field(default_factory=dict)
    complexity: dict[str, float] = field(default_factory=dict)
    outputs: SplitOutputs | None = None  # the test split's outputs (for plots)


def check_config(cfg: DictConfig, dataset: MultimodalDataset) -> None:
    """Combinations of config and data that cannot work fail here, before training (the config
    alone was checked before the data loaded: :mod:`mmgnn.train.preflight`)."""
    if dataset.labels is None:
        if cfg.data.pairing == "label":
            raise ValueError("data.pairing=label needs a label column in items.csv")
        if cfg.loss.fused == "classify":
            raise ValueError(
                "loss.fused=classify needs labels but the dataset has none; use loss.fused=auto "
                "(the default: no classifier without labels) or loss.fused=none"
            )


def load_dataset(cfg: DictConfig) -> MultimodalDataset:
    """The dataset named by ``cfg.data`` (its ``loader`` is instantiated)."""
    return instantiate(cfg.data.loader)


def graph_specs(graph_cfg: DictConfig, dataset: MultimodalDataset) -> dict:
    """One graph spec per modality of ``dataset`` from a run's ``graph`` config.

    Entries of ``graph.modalities`` for modalities the dataset lacks are ignored with a warning.
    """
    graph = OmegaConf.to_container(graph_cfg, resolve=True)
    listed = graph["modalities"]
    absent = sorted(set(listed) - set(dataset.modality_names))
    if absent:  # the default graph config names the synthetic modalities
        log.warning(
            "graph.modalities lists %s, which this dataset does not have (it has %s): ignored; "
            "modalities not listed use graph.default (%s)",
            absent, list(dataset.modality_names), graph["default"],
        )
    per_modality = {m: v for m, v in listed.items() if m in dataset.modality_names}
    return graph_specs_from_config(dataset.modality_names, graph["default"], per_modality)


def prepare(cfg: DictConfig, dataset: MultimodalDataset) -> PreparedData:
    """Subsample (debug), standardise and build the graphs the config asks for."""
    return prepare_data(
        dataset,
        graph_specs(cfg.graph, dataset),
        self_loops=cfg.graph.self_loops,
        standardize=cfg.data.standardize,
        max_items=cfg.train.max_items,
        seed=cfg.data.seed,
        encodings=dataset_encodings(OmegaConf.to_container(cfg.pe, resolve=True), dataset),
    )


def build_model(cfg: DictConfig, data: PreparedData) -> torch.nn.Module:
    """The run's model on ``data`` (:func:`model_and_summary`)."""
    return model_and_summary(cfg, data)[0]


def model_and_summary(cfg: DictConfig, data: PreparedData) -> tuple[torch.nn.Module, ModelSummary]:
    """``MultimodalGNN`` from the model factory (:func:`mmgnn.models.factory.create_model`) and
    the summary it was built from (what ``model_meta.json`` records for inference).

    The pretrained text encoder (``text_encoder=minilm``) is loaded once, after the dataset's
    token ids are checked, and shared by budget mode's search and the model. With ``budget``
    set (GraphGym's budget mode), the branches' hidden size gives the model about ``budget``
    trainable parameters (:func:`mmgnn.models.factory.resolve_summary`).
    """
    token_encoders = token_encoders_from_config(OmegaConf.select(cfg, "text_encoder"), data.dataset)
    summary = resolve_summary(cfg, summarize_data(cfg, data), token_encoders=token_encoders,
                              encodings=data.encodings)
    model = create_model(cfg, summary, token_encoders=token_encoders, encodings=data.encodings)
    return model, summary


def data_summary(data: PreparedData) -> str:
    """Items per split, and per modality: present/missing items, nodes, edges."""
    sizes = data.split_sizes()
    lines = [
        f"dataset {data.dataset.name}: {data.dataset.n_items} items "
        + " ".join(f"{k}={v}" for k, v in sizes.items())
        + f", {data.dataset.num_classes} classes, {len(data.dataset.group_names)} groups",
        data.summary().to_string(index=False),
        "prepared in " + ", ".join(f"{k} {v:.2f}s" for k, v in data.timings.items()),
    ]
    return "\n".join(lines)


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_model_meta(run_dir: Path, summary: ModelSummary) -> Path:
    """``model_meta.json``: the summary :mod:`mmgnn.inference` rebuilds the model from."""
    return summary.save(run_dir / paths.MODEL_META_FILE)


def run_job(
    cfg: DictConfig,
    run_dir: str | Path,
    callbacks: list[EpochCallback] | None = None,
) -> JobResult:
    """Train and test one configuration; write ``test_metrics.json`` into ``run_dir``."""
    t_start = time.perf_counter()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seed_everything(cfg.seed)
    if cfg.train.num_threads > 0:
        torch.set_num_threads(cfg.train.num_threads)
        log.info("torch threads: %d", cfg.train.num_threads)
    if cfg.train.keep_freed_memory:
        keep_freed_memory()
    else:  # an earlier job of this process (a sequential multirun) may have kept it
        restore_malloc_defaults()

    check_run_config(cfg)
    dataset = load_dataset(cfg)
    check_config(cfg, dataset)
    data = prepare(cfg, dataset)
    print(data_summary(data), flush=True)
    if data.standardizer is not None:
        data.standardizer.save(run_dir / paths.STANDARDIZER_FILE)

    model, summary = model_and_summary(cfg, data)
    objective = build_objective(cfg, has_labels=dataset.labels is not None)
    write_model_meta(run_dir, summary)
    record_featurize_info(OmegaConf.select(cfg, "data.path"), run_dir)  # inference featurizes raw items alike
    log.info("model: %d parameters (%s)", count_parameters(model), type(model).__name__)
    config = TrainerConfig.from_config(cfg)
    trainer = Trainer(model, objective, data, config, run_dir, callbacks or [])
    if cfg.train.resume:
        trainer.resume()
    fit = trainer.fit()
    trainer.load_best()
    return evaluate_best(trainer, fit, t_start)


def evaluate_best(trainer: Trainer, fit: FitResult, t_start: float) -> JobResult:
    """Score the trainer's model (the best checkpoint, loaded) on the test split, with the
    robustness checks and the cost; write ``test_metrics.json`` and print the summary. With
    ``train.robustness.missing``, the validation split's missing-modality scores at the best
    epoch are recorded too (``best_val/missing/...``: what choosing on validation reads). The
    fusion runs only when the loss trained it (``trainer.trains_fusion``): otherwise no
    ``fused/*`` or ``gates/*`` metric is computed, printed or recorded."""
    data, model, device = trainer.data, trainer.model, trainer.device
    config = trainer.config
    eval_batch_size, pairing = config.train.eval_batch_size, config.pairing
    t0 = time.perf_counter()
    outputs = collect_outputs(model, data.loader("test", eval_batch_size), device,
                              fuse=trainer.trains_fusion)
    eval_seconds = time.perf_counter() - t0
    test = score(outputs, data.dataset.group_names, pairing)
    rob = robustness(
        model,
        data,
        "test",
        eval_batch_size,
        device,
        pairing,
        missing=config.train.robustness.missing,
        noise_levels=list(config.train.robustness.noise_levels),
        seed=config.seed,
        fuse=trainer.trains_fusion,
    )
    complexity = {
        "params/total": float(count_parameters(model)),
        "params/gnn_hidden_dim": float(model.branches[model.modalities[0]].out_dim),
        **{f"params/trainable/{k}": float(v) for k, v in fit.trainable_per_stage.items()},
        "time/train_s": fit.seconds,
        "time/total_s": time.perf_counter() - t_start,
        "time/graphs_s": data.timings.get("graphs", 0.0),
        "latency/ms_per_item": 1000 * eval_seconds / max(1, len(outputs.index)),
        "memory/peak_mb": _peak_memory_mb(device),
    }
    test_metrics = {f"test/{k}": v for k, v in {**test, **rob}.items()}
    if config.train.robustness.missing:
        val_missing = robustness(model, data, "val", eval_batch_size, device, pairing, missing=True,
                                 noise_levels=[], seed=config.seed, fuse=trainer.trains_fusion)
        test_metrics.update({f"best_val/{k}": v for k, v in val_missing.items()})
    test_metrics.update(complexity)
    test_metrics["best_epoch"] = float(fit.best_epoch)
    monitor_name, test_value = monitored_value(test, pairing, config.train.monitor)
    run_dir = trainer.run_dir
    files = {"test_metrics": run_dir / paths.TEST_METRICS_FILE}
    files["test_metrics"].write_text(json.dumps({
        "monitor": fit.monitor,
        "best_val": fit.best_value,
        "best_epoch": fit.best_epoch,
        "test_monitored": {monitor_name: test_value},
        "metrics": test_metrics,
    }, indent=2, sort_keys=True))
    files["best_checkpoint"] = trainer.ckpt_dir / paths.BEST_CHECKPOINT
    print(format_results(test, rob, complexity, fit.monitor, fit.best_value, fit.best_epoch))
    return JobResult(
        monitor=fit.monitor,
        value=fit.best_value,
        test_metrics=test_metrics,
        best_epoch=fit.best_epoch,
        history=fit.history,
        run_dir=run_dir,
        files=files,
        complexity=complexity,
        outputs=outputs,
    )


def format_results(
    test: dict[str, float],
    rob: dict[str, float],
    complexity: dict[str, float],
    monitor: str,
    best_value: float,
    best_epoch: int,
) -> str:
    """The printed summary: retrieval per direction, headline metrics, robustness, cost.

    Every number is also in ``test_metrics.json`` (per group, per pair, per noise level).
    """
    fmt = "{:.4f}".format
    direction = pd.Series(test).filter(regex=r"^[^/]+_to_[^/]+/").rename_axis("key").reset_index()
    parts = direction["key"].str.split("/", n=1, expand=True)
    table = direction.assign(pair=parts[0], metric=parts[1]).pivot(
        index="pair", columns="metric", values=0
    )
    order = ["r1", "r5", "r10", "medr", "mean_rank", "map", "label_r1", "label_r5", "label_r10"]
    table = table[[c for c in order if c in table] + [c for c in table if c not in order]]
    headline = pd.Series(test).filter(
        regex=r"^(retrieval/(r1|r5|r10|medr|mean_rank|map|rsum|mean_recall)|fused/(acc|macro_f1|map)"
        r"|worst_group/(retrieval/(mean_recall|map)|fused/acc))$"
    )
    lines = [
        f"best {monitor} = {best_value:.4f} at epoch {best_epoch + 1} (test metrics below "
        "use that checkpoint)",
        "",
        "test retrieval per direction:",
        table.to_string(float_format=fmt),
        "",
        "test summary:",
        headline.to_string(float_format=fmt),
    ]
    if rob:
        kept = pd.Series(rob).filter(regex=r"^(missing/|noise/[^/]+/auc/)")
        lines += ["", "robustness (test; noise = area under the curve over levels):",
                  kept.to_string(float_format=fmt)]
    lines += ["", "complexity:", pd.Series(complexity).to_string(float_format=lambda v: f"{v:,.3f}")]
    return "\n".join(lines)
