"""Models: GNN branches, skips, readouts, fusion metamodels and the assembled MultimodalGNN."""
import os

os.environ.setdefault("DGLBACKEND", "pytorch")

from mmgnn.models import convs, fusion  # noqa: E402
from mmgnn.models.branch import ConvBlock, GNNBranch  # noqa: E402
from mmgnn.models.budget import hidden_dim_for_budget  # noqa: E402
from mmgnn.models.multimodal import ModelOutput, MultimodalGNN, count_parameters, pad_tokens  # noqa: E402
from mmgnn.models.readout import Readout  # noqa: E402
from mmgnn.models.skip import ModalitySkip  # noqa: E402

__all__ = [
    "ConvBlock",
    "GNNBranch",
    "ModalitySkip",
    "ModelOutput",
    "MultimodalGNN",
    "Readout",
    "convs",
    "count_parameters",
    "fusion",
    "hidden_dim_for_budget",
    "pad_tokens",
]
