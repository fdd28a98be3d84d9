"""Variant lists are derived from conf/, never written out: the experiment presets sweep every
option of their groups, and an option added in a folder of ``$MMGNN_CONFIG_PATH`` (one class +
one YAML, no list edited) is picked up by the "every gnn" / "every builder" tests and by
``run.py``."""
import math
import os
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class
from omegaconf import OmegaConf

from mmgnn.config import group_options, register_configs

from conftest import ROOT


def preset_jobs(experiment: str) -> list[dict[str, str]]:
    """The jobs ``python run.py -m +experiment=<experiment>`` launches, as {key: value}, from
    the preset's own sweeper expanding its own params (``glob(*)`` included)."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=str(ROOT / "conf")):
        cfg = compose("config", overrides=[f"+experiment={experiment}"], return_hydra_config=True)
        loader = GlobalHydra.instance().config_loader()
    options = OmegaConf.to_container(cfg.hydra.sweeper)
    sweeper = get_class(options.pop("_target_"))(**options)
    params = [f"{key}={value}" for key, value in options["params"].items()]
    overrides = OverridesParser.create(config_loader=loader).parse_overrides(params)
    batches = sweeper.split_arguments(overrides, None)
    return [dict(o.split("=", 1) for o in job) for batch in batches for job in batch]


@pytest.mark.parametrize("experiment, groups", [
    ("ablate_gnn", ["gnn"]),
    ("ablate_fusion", ["fusion"]),
    ("ablate_skip", ["skip"]),
    ("ablate_loss", ["loss"]),
    ("full", ["gnn", "skip", "fusion", "loss"]),
])
def test_grid_presets_sweep_every_option_of_their_groups(experiment, groups):
    jobs = preset_jobs(experiment)
    sizes = [len(group_options(g)) for g in groups]
    assert len(jobs) == 3 * math.prod(sizes)  # x 3 seeds
    for group in groups:
        assert sorted({job[group] for job in jobs}) == group_options(group)
    assert len({tuple(sorted(job.items())) for job in jobs}) == len(jobs)


def test_controlled_preset_samples_every_level_of_every_factor():
    jobs = preset_jobs("full_sampled")
    factors = ["gnn", "skip", "fusion", "loss"]
    for factor in factors:
        assert sorted({job[factor] for job in jobs}) == group_options(factor)
    configs = {tuple(job[f] for f in factors) for job in jobs}
    assert len(jobs) == 3 * len(configs)
    assert len(configs) <= 2 * sum(len(group_options(f)) for f in factors)


THROWAWAY_CONV = '''
"""A conv layer that lives outside mmgnn: max over in-neighbours plus a self term."""
import dgl.function as fn
import torch


class ThrowawayLayer(torch.nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.own = torch.nn.Linear(in_dim, out_dim, bias=bias)
        self.neighbours = torch.nn.Linear(in_dim, out_dim, bias=False)

    def forward(self, graph, h):
        with graph.local_scope():
            graph.ndata["h"] = h
            graph.update_all(fn.copy_u("h", "m"), fn.max("m", "pooled"))
            return self.own(h) + self.neighbours(graph.ndata["pooled"])

'''

THROWAWAY_BUILDER = '''
"""A graph builder that lives outside mmgnn: node 0 of each item -> every other node."""
from dataclasses import dataclass

import numpy as np
import torch

from mmgnn.data.graphs import GraphSpec


@dataclass(frozen=True)
class StarGraph(GraphSpec):
    name = "star"
    hub: int = 0

    def edges(self, modality):
        counts = np.diff(modality.ptr).tolist()
        spokes = torch.tensor([j for n in counts for j in range(n) if j != self.hub and n > self.hub],
                              dtype=torch.int64)
        per_item = [n - 1 if n > self.hub else 0 for n in counts]
        edge_ptr = torch.tensor(np.concatenate([[0], np.cumsum(per_item)]), dtype=torch.int64)
        return torch.full_like(spokes, self.hub), spokes, edge_ptr
'''


@pytest.fixture(scope="module")
def throwaway(tmp_path_factory):
    """A config folder with ``gnn/throwaway.yaml`` and ``graph/builder/throwaway.yaml`` and a
    python folder with their classes; the environment that points mmgnn at both."""
    root = tmp_path_factory.mktemp("throwaway")
    (root / "conf" / "gnn").mkdir(parents=True)
    (root / "conf" / "graph" / "builder").mkdir(parents=True)
    (root / "throwaway_conv.py").write_text(THROWAWAY_CONV)
    (root / "throwaway_builder.py").write_text(THROWAWAY_BUILDER)
    gcn = OmegaConf.load(ROOT / "conf" / "gnn" / "gcn.yaml")
    gcn.conv = {"_target_": "throwaway_conv.ThrowawayLayer", "_partial_": True, "bias": True}
    OmegaConf.save(gcn, root / "conf" / "gnn" / "throwaway.yaml")
    (root / "conf" / "graph" / "builder" / "throwaway.yaml").write_text(
        "_target_: throwaway_builder.StarGraph\nhub: 0\n"
    )
    env = {**os.environ, "MMGNN_CONFIG_PATH": str(root / "conf"), "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
    return root, env


def test_a_new_gnn_and_builder_are_picked_up_by_the_every_variant_tests(throwaway):
    root, env = throwaway
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", "-k", "throwaway",
         "tests/test_models.py", "tests/test_graphs.py", "tests/test_run.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    passed = {line.split(" ", 1)[1] for line in proc.stdout.splitlines() if line.startswith("PASSED ")}
    for test_id in (
        "tests/test_models.py::test_gnn_yaml_builds_a_branch[throwaway]",
        "tests/test_models.py::test_only_message_passing_branches_use_edges[throwaway]",
        "tests/test_models.py::test_forward_shapes_and_gradients[throwaway-sum-xattn]",
        "tests/test_models.py::test_outputs_of_an_item_do_not_depend_on_its_batch[throwaway-none-concat]",
        "tests/test_graphs.py::test_every_builder_yaml_builds_grouped_edges_without_self_loops[throwaway]",
        "tests/test_run.py::test_every_option_runs_end_to_end[gnn=throwaway]",
    ):
        assert test_id in passed, (test_id, sorted(passed)[:20])
    combos = [t for t in passed if t.startswith("tests/test_models.py::test_forward_shapes_and_gradients[")]
    assert len(combos) == len(group_options("skip")) * len(group_options("fusion"))
    assert not any("FAILED" in line for line in proc.stdout.splitlines())


def test_run_py_finds_options_in_the_config_path(throwaway, tmp_path):
    root, env = throwaway
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "gnn=throwaway", "graph/builder@graph.modalities.text=throwaway",
         "debug=fast", "tracking.enabled=false", "train.max_items=64", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    saved = OmegaConf.load(tmp_path / "run" / ".hydra" / "config.yaml")
    assert saved.gnn.conv._target_ == "throwaway_conv.ThrowawayLayer"
    assert "star(hub=0)" in proc.stdout  # the graph summary names the builder
    assert (tmp_path / "run" / "test_metrics.json").exists()


def test_without_the_config_path_the_option_is_unknown(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MMGNN_CONFIG_PATH"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "run.py"), "gnn=throwaway", "tracking.enabled=false",
         f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode != 0
    assert "throwaway" in proc.stderr and "gat" in proc.stderr  # Hydra lists the options it has
    assert not (tmp_path / "run" / "test_metrics.json").exists()
