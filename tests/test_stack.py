"""The pinned stack imports and works together (torch, DGL with a GAT pass, Hydra, MLflow)."""
import dgl
import hydra
import mlflow
import numpy as np
import pandas as pd
import torch
from dgl.nn import GATConv


def test_versions_are_the_pinned_ones():
    assert torch.__version__.startswith("2.2.1")
    assert dgl.__version__ == "2.1.0"
    assert np.__version__.startswith("1.")
    assert hydra.__version__.startswith("1.3")
    assert int(mlflow.__version__.split(".")[0]) >= 2
    assert int(pd.__version__.split(".")[0]) == 2


def test_dgl_gat_forward_and_backward():
    torch.manual_seed(0)
    g = dgl.add_self_loop(dgl.graph(([0, 1, 2], [1, 2, 0])))
    conv = GATConv(8, 4, num_heads=2)
    x = torch.randn(3, 8, requires_grad=True)
    out = conv(g, x)
    assert out.shape == (3, 2, 4)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
