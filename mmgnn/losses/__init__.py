"""Training losses: modality alignment (cosine, InfoNCE, hard-negative InfoNCE) and the objective."""
from mmgnn.losses.alignment import CosineAlignment, HardNegativeInfoNCE, InfoNCE
from mmgnn.losses.objective import MultimodalObjective
from mmgnn.losses.queue import EmbeddingQueue

__all__ = [
    "CosineAlignment",
    "EmbeddingQueue",
    "HardNegativeInfoNCE",
    "InfoNCE",
    "MultimodalObjective",
]
