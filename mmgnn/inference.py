"""Use a trained run on new data: the run's config, best weights and train-split statistics.

    python -m mmgnn.inference --run outputs/runs/<day>/<time> --data DIR --out embeddings.npz
    python -m mmgnn.inference --run outputs/runs/<day>/<time> --manifest new_items.csv --out embeddings.npz

``--manifest`` takes raw items (texts, image and audio files, as ``python -m mmgnn.featurize``
reads them) and featurizes them with the featurizers the run's training folder recorded
(``featurize.json``, copied into the run folder by training), then embeds them like ``--data``.

The features of the new data are standardised with the statistics saved by the run
(``standardizer.npz``), never refitted, and its graphs are built with the run's graph config,
so a model sees inputs prepared exactly as in training. The checkpoint is read with torch's
weights-only loader (:func:`mmgnn.train.checkpoint.load_checkpoint`): a run folder from someone
else cannot run code, and one whose checkpoint would need pickled objects is refused.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from mmgnn import paths
from mmgnn.data.dataset import MultimodalDataset
from mmgnn.data.normalize import Standardizer
from mmgnn.data.pe import dataset_encodings
from mmgnn.data.pipeline import prepare_data
from mmgnn.models.factory import ModelSummary, create_model
from mmgnn.models.text_encoder import check_token_ids
from mmgnn.train.checkpoint import CheckpointError, load_checkpoint
from mmgnn.train.evaluation import SplitOutputs, collect_outputs
from mmgnn.train.job import graph_specs

META_FILE = paths.MODEL_META_FILE


@dataclass
class TrainedRun:
    """A finished run's model (best checkpoint, eval mode), config and statistics."""

    cfg: DictConfig
    model: torch.nn.Module
    standardizer: Standardizer | None
    modality_dims: dict[str, int]

    @classmethod
    def load(cls, run_dir: str | Path, device: str = "cpu") -> "TrainedRun":
        run_dir = Path(run_dir)
        config = Path(paths.HYDRA_DIR) / paths.CONFIG_FILE
        checkpoint = Path(paths.CHECKPOINT_DIR) / paths.BEST_CHECKPOINT
        for needed in (config, META_FILE, checkpoint):
            if not (run_dir / needed).exists():
                raise FileNotFoundError(f"{run_dir} is not a finished mmgnn run: no {needed}")
        cfg = OmegaConf.load(run_dir / config)
        state = load_checkpoint(run_dir / checkpoint, device)
        # The model factory of training, on the data summary training saved (runs older than
        # its has_pos and pe_dims: read off the encoder weights).
        summary = ModelSummary.load(run_dir / META_FILE, state_dict=state["model"])
        model = create_model(cfg, summary)
        model.load_state_dict(state["model"])
        model.to(device).eval()
        path = run_dir / paths.STANDARDIZER_FILE
        standardizer = Standardizer.load(path) if path.exists() else None
        return cls(cfg, model, standardizer, dict(summary.modality_dims))

    def embed(self, dataset: MultimodalDataset, batch_size: int = 512) -> SplitOutputs:
        """Embeddings of every item of ``dataset``, with its fused vectors, gates and logits
        when the run trained its fusion (``None`` otherwise)."""
        dims = {m: d.dim for m, d in dataset.modalities.items()}
        if dims != self.modality_dims:
            raise ValueError(f"the run was trained on modalities {self.modality_dims} "
                             f"(name: feature size), the data has {dims}")
        for m in self.model.token_encoded:  # text_encoder=minilm: the encoder reads token ids
            encoder = self.model.branches[m].encoder
            check_token_ids(dataset, m, encoder.vocab_size, encoder.max_tokens,
                            f"the run's text_encoder={self.cfg.text_encoder.name}")
        if self.standardizer is not None:
            dataset = self.standardizer.transform(dataset)
        specs = graph_specs(self.cfg.graph, dataset)
        encodings = dataset_encodings(OmegaConf.to_container(self.cfg.pe, resolve=True), dataset) \
            if "pe" in self.cfg else None
        data = prepare_data(dataset, specs, self_loops=self.cfg.graph.self_loops, standardize=False,
                            encodings=encodings)
        rows = np.arange(dataset.n_items, dtype=np.int64)
        device = next(self.model.parameters()).device
        # A run without a classifier did not train its fusion (loss.fused=none): no fused output.
        return collect_outputs(self.model, data.loader("test", batch_size, rows=rows), device,
                               fuse=self.model.classifier is not None)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Embed a dataset folder, or new raw items, with a trained run.")
    parser.add_argument("--run", required=True, help="the run's output folder")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="a dataset folder (items.csv + *.npz)")
    source.add_argument("--manifest", help="a manifest of raw items (as for python -m mmgnn.featurize), "
                        "featurized as the run's training data was (its featurize.json)")
    parser.add_argument("--featurize-device", default="cpu", help="torch device of the encoders (--manifest)")
    parser.add_argument("--out", required=True, help="where to write the embeddings (.npz)")
    args = parser.parse_args(argv)
    from mmgnn.data.folder import load_folder
    from mmgnn.featurize.record import featurize_like

    try:
        run = TrainedRun.load(args.run)
        dataset = load_folder(args.data, modalities=list(run.modality_dims)) if args.data else \
            featurize_like(args.run, args.manifest, list(run.modality_dims), device=args.featurize_device)
        out = run.embed(dataset)
    except (FileNotFoundError, ValueError, CheckpointError) as err:
        raise SystemExit(f"mmgnn.inference: {err}") from None
    arrays = {f"embedding_{m}": v for m, v in out.embeddings.items()}
    arrays.update(present=out.present, fused=out.fused, gates=out.gates,
                  item_id=dataset.items["item_id"].to_numpy().astype(str))
    if out.logits is not None:
        arrays["logits"] = out.logits
    np.savez(args.out, **arrays)
    print(f"wrote {len(dataset.items)} items' embeddings to {args.out}")


if __name__ == "__main__":
    main()
