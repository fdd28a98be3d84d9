"""Models: GNN branches, skips, readouts, fusion metamodels and the assembled MultimodalGNN."""

from mmgnn.models import convs, fusion
from mmgnn.models.branch import ConvBlock, GNNBranch
from mmgnn.models.budget import hidden_dim_for_budget
from mmgnn.models.multimodal import ModelOutput, MultimodalGNN, count_parameters, pad_tokens
from mmgnn.models.encoding import NodeEncoder
from mmgnn.models.readout import QueryReadout, Readout
from mmgnn.models.skip import ModalitySkip

__all__ = [
    "ConvBlock",
    "GNNBranch",
    "ModalitySkip",
    "ModelOutput",
    "NodeEncoder",
    "QueryReadout",
    "MultimodalGNN",
    "Readout",
    "convs",
    "count_parameters",
    "fusion",
    "hidden_dim_for_budget",
    "pad_tokens",
]
