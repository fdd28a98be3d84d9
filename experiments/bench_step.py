"""One training step and one evaluation pass of the project against a plain-DGL reference.

    python -m experiments.bench_step [--batch-size 256] [--audio-nodes 40] [--rounds 3]
                                     [--steps 20] [--threads 2] [--tune-reference]

The workload (issue 12): every item has three modalities, all present, N(0, 1) features:
text a chain of ``--text-nodes`` (16) nodes with 32 features joined at distance 1 and 2 both
ways; image a 4 x 4 grid of 6-feature nodes, 4-neighbour; audio a chain of ``--audio-nodes``
(40) nodes with 20 features, joined like text; self-loops everywhere.

- **project**: the model and loss built from ``conf/`` by Hydra's compose with the overrides
  ``gnn=gat skip=sum fusion=xattn loss=infonce loss.fused=none fusion.dropout=0`` (hidden
  64, 2 GAT layers of 4 heads, one crossmodal block per ordered pair with an FFN of width
  128), graphs from the project's builders (``ChainGraph``, ``GridGraph``) batched by its
  :class:`~mmgnn.data.batch.MultimodalCollator`; train step = ``objective(model(batch,
  fuse=...))`` as the trainer runs it (:func:`~mmgnn.train.trainer.fuses_in_training`: with
  ``loss.fused=none`` the loss reads no fused output, so the step skips the fusion),
  ``backward``, AdamW step; ``step_fused`` = the same step always fusing (the like-for-like
  row: the reference's loss reads no fused output either, but its forward computes it); eval pass = :func:`mmgnn.train.evaluation.collect_outputs` on
  the batch.
- **reference** (:class:`ReferenceModel`): the same function written the way a DGL user
  would: one ``DGLGraph`` per item joined with ``dgl.batch``, ``dgl.nn.GATConv`` layers,
  ``dgl.mean_nodes`` readout, tokens padded with ``pad_sequence``, one
  ``nn.MultiheadAttention`` block per ordered modality pair, symmetric InfoNCE, AdamW; eval
  pass = ``model.eval()`` and a forward under ``torch.no_grad()``.

The project's process keeps freed memory as ``run_job`` has it do
(``train.keep_freed_memory``, :mod:`mmgnn.train.allocator`); the reference's process only with
``--tune-reference`` (the like-for-like allocator comparison).

Each round runs the project and the reference in two fresh processes (alternating which goes
first), with the same thread count; each process times ``--steps`` steps after ``--warmup``
steps on ``--n-batches`` cycled batches and reports medians. Printed: per round the time
ratios project / reference, of wall-clock time and of the process's CPU time (the latter
less sensitive to a shared machine's load); over rounds their median and min-max; the
forward / backward / optimiser split of ``step``; ``eval_branches`` (the eval pass's branches
alone: the project's forward with ``fuse=False``, the reference's ``encode``, so that
``eval - eval_branches`` is what token padding and the fusion cost); ``step_fused`` (the
reference's ``step_fused`` is its ``step`` run again); peak resident memory of each process;
both parameter counts.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import dgl
import torch
import torch.nn.functional as F
from dgl.nn import GATConv
from torch import nn
from torch.nn.utils.rnn import pad_sequence

from experiments.markdown import add_markdown_option, write_if_asked

KINDS = ("project", "reference")
OVERRIDES = ("gnn=gat", "skip=sum", "fusion=xattn", "loss=infonce", "loss.fused=none", "fusion.dropout=0")
"""The project's configuration of the workload (its own configs with these overrides)."""
ROOT = Path(__file__).resolve().parents[1]
LOAD_BEFORE = ", ".join(f"{x:.1f}" for x in os.getloadavg())
"""The load average when the script started (the machine's load is part of every result)."""


# ----------------------------------------------------------------------------- the workload
def make_workload(n_items: int, text_nodes: int, audio_nodes: int, seed: int):
    """The workload's :class:`~mmgnn.data.dataset.MultimodalDataset` (N(0, 1) features)."""
    import numpy as np
    import pandas as pd

    from mmgnn.data.dataset import ModalityData, MultimodalDataset

    rng = np.random.default_rng(seed)

    def modality(name: str, nodes: int, dim: int, pos: np.ndarray) -> ModalityData:
        x = rng.standard_normal((n_items * nodes, dim)).astype(np.float32)
        return ModalityData(name, x, np.arange(n_items + 1, dtype=np.int64) * nodes,
                            pos=np.tile(pos.astype(np.float32), (n_items, 1)))

    grid = np.stack(np.meshgrid(np.arange(4), np.arange(4), indexing="ij"), -1).reshape(-1, 2)
    modalities = {
        "text": modality("text", text_nodes, 32, np.arange(text_nodes)[:, None]),
        "image": modality("image", 16, 6, grid),
        "audio": modality("audio", audio_nodes, 20, np.arange(audio_nodes)[:, None]),
    }
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)], "split": "train"})
    return MultimodalDataset(
        items=items, modalities=modalities, labels=None, label_names=None,
        groups=np.zeros(n_items, dtype=np.int64), group_names=["all"],
        split=np.full(n_items, "train"), name="bench_step",
    )


def project_config(extra: tuple[str, ...] = ()):
    """``conf/config.yaml`` composed with :data:`OVERRIDES` (and ``extra``)."""
    from hydra import compose, initialize_config_dir

    from mmgnn.config import CONF_DIR, register_configs

    register_configs()
    overrides = [*OVERRIDES, "graph.self_loops=true", "graph.modalities.text.window=2",
                 "graph.modalities.audio.window=2", *extra]
    with initialize_config_dir(version_base="1.3", config_dir=str(CONF_DIR)):
        return compose("config", overrides=overrides)


def project_graphs(cfg, dataset):
    """The project's graphs of the workload (its builders, from ``cfg.graph``)."""
    from mmgnn.data.graphs import build_graphs, graph_specs_from_config

    specs = graph_specs_from_config(dataset.modality_names, cfg.graph.default, cfg.graph.modalities)
    return build_graphs(dataset, specs, self_loops=cfg.graph.self_loops)


# ----------------------------------------------------------------------------- the reference
class ReferenceBranch(nn.Module):
    """Linear -> ReLU -> Dropout, then per layer ``LayerNorm(Dropout(ReLU(GATConv))) + h``; the
    token head reads ``h + Linear(x)`` (a skip of the input features)."""

    def __init__(self, in_dim: int, hidden: int, heads: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.inp = nn.Linear(in_dim, hidden)
        self.convs = nn.ModuleList(
            GATConv(hidden, hidden // heads, heads, allow_zero_in_degree=True) for _ in range(layers))
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(layers))
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Linear(in_dim, hidden)
        self.head = nn.Linear(hidden, hidden)

    def forward(self, g, x):
        h = self.drop(F.relu(self.inp(x)))
        for conv, norm in zip(self.convs, self.norms):
            h = norm(self.drop(F.relu(conv(g, h).flatten(1)))) + h
        return self.head(h + self.skip(x))


class ReferenceBlock(nn.Module):
    """Pre-LN cross-attention block (``nn.MultiheadAttention``): target attends to source, then an FFN."""

    def __init__(self, dim: int, heads: int, ff: int) -> None:
        super().__init__()
        self.norm_t, self.norm_s, self.norm_ff = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ff = nn.Sequential(nn.Linear(dim, ff), nn.ReLU(), nn.Linear(ff, dim))

    def forward(self, t, s, s_pad):
        s = self.norm_s(s)
        h = t + self.attn(self.norm_t(t), s, s, key_padding_mask=s_pad, need_weights=False)[0]
        return h + self.ff(self.norm_ff(h))


class ReferenceModel(nn.Module):
    """Branches, mean readout, padded tokens, one block per ordered pair, merge, gates, LayerNorm.
    ``forward(graphs) -> (normalised pooled embeddings per modality, fused [B, hidden])``."""

    def __init__(self, dims: dict[str, int], hidden=64, heads=4, layers=2, ff=128, dropout=0.1):
        super().__init__()
        self.names = list(dims)
        self.branches = nn.ModuleDict({m: ReferenceBranch(d, hidden, heads, layers, dropout) for m, d in dims.items()})
        self.in_norms = nn.ModuleDict({m: nn.LayerNorm(hidden) for m in dims})
        pairs = [(t, s) for t in self.names for s in self.names if s != t]
        self.blocks = nn.ModuleDict({f"{s}->{t}": ReferenceBlock(hidden, heads, ff) for t, s in pairs})
        self.merge = nn.ModuleDict({m: nn.Linear((len(dims) - 1) * hidden, hidden) for m in dims})
        self.gates = nn.ModuleDict({m: nn.Linear(hidden, 1) for m in dims})
        self.out_norm = nn.LayerNorm(hidden)

    def encode(self, graphs):
        """The branches alone: ``(node states per modality, normalised pooled embeddings)``."""
        states, embeddings = {}, {}
        for m in self.names:
            g = graphs[m]
            states[m] = g.ndata["h"] = self.branches[m](g, g.ndata["x"])
            embeddings[m] = F.normalize(dgl.mean_nodes(g, "h"), dim=-1)
        return states, embeddings

    def forward(self, graphs):
        tokens, pads = {}, {}
        states, embeddings = self.encode(graphs)
        for m in self.names:
            h, counts = states[m], graphs[m].batch_num_nodes()
            tokens[m] = self.in_norms[m](pad_sequence(torch.split(h, counts.tolist()), batch_first=True))
            pads[m] = torch.arange(tokens[m].shape[1]) >= counts[:, None]
        fused = 0
        for t in self.names:
            outs = [self.blocks[f"{s}->{t}"](tokens[t], tokens[s], pads[s]) for s in self.names if s != t]
            u = self.merge[t](torch.cat(outs, -1)).masked_fill(pads[t][..., None], 0)
            v = u.sum(1) / (~pads[t]).sum(1, keepdim=True)
            fused = fused + torch.sigmoid(self.gates[t](v)) * v
        return embeddings, self.out_norm(fused)


class SymmetricInfoNCE(nn.Module):
    """CLIP's loss over every modality pair, both directions, learnable temperature."""

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(1.0 / temperature).log())

    def forward(self, embeddings):
        names, losses = list(embeddings), []
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                logits = self.logit_scale.exp() * embeddings[a] @ embeddings[b].t()
                target = torch.arange(logits.shape[0])
                losses += [F.cross_entropy(logits, target), F.cross_entropy(logits.t(), target)]
        return torch.stack(losses).mean()


def reference_batches(graphs, rows_per_batch):
    """Per-item ``DGLGraph`` objects (from the same edges) joined by ``dgl.batch``."""
    batches = []
    for rows in rows_per_batch:
        batch = {}
        for m, mg in graphs.items():
            items = []
            for i in rows:
                e0, e1 = int(mg.edge_ptr[i]), int(mg.edge_ptr[i + 1])
                n0, n1 = int(mg.ptr[i]), int(mg.ptr[i + 1])
                g = dgl.graph((mg.src[e0:e1], mg.dst[e0:e1]), num_nodes=n1 - n0)
                g.ndata["x"] = mg.x[n0:n1]
                items.append(g)
            batch[m] = dgl.batch(items)
        batches.append(batch)
    return batches


# ----------------------------------------------------------------------------- one process
def _setup(kind: str, args):
    """``(model, loss_fn(batch, always_fuse) -> scalar, eval_fn(batch), branches_fn(batch),
    optimiser, batches, params, whether malloc keeps freed memory)``; ``branches_fn`` = the eval
    pass's branches alone, up to the normalised embeddings (no padding, no fusion)."""
    from mmgnn.data.batch import MultimodalCollator
    from mmgnn.models import count_parameters
    from mmgnn.train.allocator import keep_freed_memory

    cfg = project_config(tuple(args.override))
    tuned = bool(cfg.train.keep_freed_memory if kind == "project" else args.tune_reference)
    if tuned:
        keep_freed_memory()  # as run_job does for the project
    torch.manual_seed(args.seed)
    n_items = args.batch_size * args.n_batches
    dataset = make_workload(n_items, args.text_nodes, args.audio_nodes, args.seed)
    graphs = project_graphs(cfg, dataset)
    rows = [list(range(i, i + args.batch_size)) for i in range(0, n_items, args.batch_size)]
    if kind == "project":
        from hydra.utils import instantiate

        from mmgnn.train.evaluation import collect_outputs
        from mmgnn.train.job import build_objective
        from mmgnn.train.optim import build_adamw
        from mmgnn.train.trainer import fuses_in_training

        dims = {m: d.dim for m, d in dataset.modalities.items()}
        model = instantiate(cfg.model, modality_dims=dims, num_classes=0, branch=instantiate(cfg.gnn),
                            skip=instantiate(cfg.skip), fusion=instantiate(cfg.fusion))
        objective = build_objective(cfg)
        optimizer = build_adamw(model, objective, 1e-3, 0.01)
        collate = MultimodalCollator(graphs, None, torch.zeros(n_items, dtype=torch.int64))
        batches = [collate(r) for r in rows]

        fuse = fuses_in_training(model, objective)

        def loss_fn(batch, always_fuse=False):
            return objective(model(batch, fuse=fuse or always_fuse), batch)[0]

        def eval_fn(batch):
            collect_outputs(model, [batch], torch.device("cpu"))

        def branches_fn(batch):
            model.eval()
            with torch.no_grad():
                model(batch, fuse=False)
            model.train()
    else:
        model = ReferenceModel({m: d.dim for m, d in dataset.modalities.items()})
        objective = SymmetricInfoNCE()
        optimizer = torch.optim.AdamW(list(model.parameters()) + list(objective.parameters()), 1e-3,
                                      weight_decay=0.01)
        batches = reference_batches(graphs, rows)

        def loss_fn(batch, always_fuse=False):  # the reference always fuses
            return objective(model(batch)[0])

        def eval_fn(batch):
            model.eval()
            with torch.no_grad():
                model(batch)
            model.train()

        def branches_fn(batch):
            model.eval()
            with torch.no_grad():
                model.encode(batch)
            model.train()
    return model, loss_fn, eval_fn, branches_fn, optimizer, batches, count_parameters(model), tuned


def worker(kind: str, args) -> dict:
    """Time ``kind``'s train steps and eval passes in this process; medians in ms."""
    torch.set_num_threads(args.threads)
    model, loss_fn, eval_fn, branches_fn, optimizer, batches, params, tuned = _setup(kind, args)
    names = ("forward", "backward", "optimizer", "step", "eval", "step_fused", "eval_branches")
    wall: dict[str, list[float]] = {k: [] for k in names}
    cpu: dict[str, list[float]] = {k: [] for k in names}
    model.train()
    for i in range(args.warmup + args.steps):
        batch = batches[i % len(batches)]
        marks = [(time.perf_counter(), time.process_time())]
        for always_fuse in (False, True):  # the step as the trainer runs it, then always fusing
            loss = loss_fn(batch, always_fuse)
            marks.append((time.perf_counter(), time.process_time()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            marks.append((time.perf_counter(), time.process_time()))
            optimizer.step()
            marks.append((time.perf_counter(), time.process_time()))
        eval_fn(batch)
        marks.append((time.perf_counter(), time.process_time()))
        branches_fn(batch)
        marks.append((time.perf_counter(), time.process_time()))
        if i >= args.warmup:
            spans = [(0, 1), (1, 2), (2, 3), (0, 3), (6, 7), (3, 6), (7, 8)]
            for key, (a, b) in zip(names, spans):
                wall[key].append(1e3 * (marks[b][0] - marks[a][0]))
                cpu[key].append(1e3 * (marks[b][1] - marks[a][1]))
    result = {k: statistics.median(v) for k, v in wall.items()}
    result.update({f"{k}_cpu": statistics.median(v) for k, v in cpu.items()})
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["params"] = params
    result["kept_freed_memory"] = tuned
    return result


# ----------------------------------------------------------------------------- driver
def _worker_argv(kind: str, args) -> list[str]:
    argv = [sys.executable, "-m", "experiments.bench_step", "--worker", kind]
    for name in ("batch_size", "text_nodes", "audio_nodes", "n_batches", "steps", "warmup", "threads", "seed"):
        argv += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
    if args.tune_reference:
        argv.append("--tune-reference")
    for override in args.override:
        argv += ["--override", override]
    return argv


def run_round(index: int, args) -> dict[str, dict]:
    """Both kinds in fresh processes, the first one alternating by round."""
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    order = KINDS if index % 2 == 0 else KINDS[::-1]
    results = {}
    for kind in order:
        proc = subprocess.run(_worker_argv(kind, args), capture_output=True, text=True, env=env, cwd=ROOT)
        if proc.returncode != 0:
            raise SystemExit(f"bench_step: the {kind} worker failed (exit {proc.returncode}):\n{proc.stderr}")
        results[kind] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def summary(rounds: list[dict[str, dict]]) -> list[str]:
    """Markdown table: per phase the medians of both kinds and the ratios median [min-max] over
    rounds, of wall-clock time and of the process's CPU time (less sensitive to other load)."""
    lines = ["| phase | project ms | reference ms | project / reference (wall) | "
             "project / reference (CPU time) |", "|---|---:|---:|---|---|"]

    def spread(key: str) -> str:
        ratios = [r["project"][key] / r["reference"][key] for r in rounds]
        return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}-{max(ratios):.2f}]"

    for phase in ("step", "forward", "backward", "optimizer", "eval", "eval_branches", "step_fused"):
        p = statistics.median(r["project"][phase] for r in rounds)
        q = statistics.median(r["reference"][phase] for r in rounds)
        lines.append(f"| {phase} | {p:.1f} | {q:.1f} | {spread(phase)} | {spread(phase + '_cpu')} |")
    rss = {k: statistics.median(r[k]["peak_rss_mb"] for r in rounds) for k in KINDS}
    lines.append(f"| peak RSS MB | {rss['project']:.0f} | {rss['reference']:.0f} | "
                 f"{rss['project'] / rss['reference']:.2f} | |")
    return lines


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--text-nodes", type=int, default=16)
    parser.add_argument("--audio-nodes", type=int, default=40)
    parser.add_argument("--n-batches", type=int, default=2, help="distinct batches cycled through")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tune-reference", action="store_true",
                        help="the reference's process also keeps freed memory (mmgnn.train.allocator), "
                             "as the project's does unless --override train.keep_freed_memory=false")
    parser.add_argument("--override", action="append", default=[],
                        help="extra Hydra override of the project's config (repeatable)")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    add_markdown_option(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args)))
        return {}
    rounds = [run_round(i, args) for i in range(args.rounds)]
    params = {k: rounds[0][k]["params"] for k in KINDS}
    lines = [
        f"B={args.batch_size}, text {args.text_nodes} / image 16 / audio {args.audio_nodes} nodes, "
        f"{args.threads} threads, {args.rounds} rounds x {args.steps} steps (+{args.warmup} warm-up), "
        f"malloc keeping freed memory: project {'yes' if rounds[0]['project']['kept_freed_memory'] else 'no'}, "
        f"reference {'yes' if args.tune_reference else 'no'}, "
        f"load average before/after: {LOAD_BEFORE} / {', '.join(f'{x:.1f}' for x in os.getloadavg())}",
        f"parameters: project {params['project']:,}, reference {params['reference']:,} "
        f"({params['project'] / params['reference']:.3f}x)",
        "",
        *summary(rounds),
    ]
    print("\n".join(lines))
    write_if_asked(args, argv, "experiments.bench_step", "Benchmark: the project against plain DGL",
                   "\n".join(lines))
    return {"rounds": rounds, "params": params}


if __name__ == "__main__":
    main()
