"""Training losses: modality alignment (cosine, InfoNCE, hard-negative InfoNCE), the objective,
and the interface the trainer drives them through (:mod:`mmgnn.losses.interface`)."""
from mmgnn.losses.alignment import CosineAlignment, HardNegativeInfoNCE, InfoNCE
from mmgnn.losses.interface import TrainableLoss, TrainingObjective
from mmgnn.losses.objective import MultimodalObjective
from mmgnn.losses.queue import EmbeddingQueue

__all__ = [
    "CosineAlignment",
    "EmbeddingQueue",
    "HardNegativeInfoNCE",
    "InfoNCE",
    "MultimodalObjective",
    "TrainableLoss",
    "TrainingObjective",
]
