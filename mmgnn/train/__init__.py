"""Training: the loop (stages, AdamW, warm-up + cosine, checkpoints), evaluation and the job."""
from mmgnn.config import TrainerConfig
from mmgnn.train.checkpoint import CheckpointError, UnsafeCheckpointError, load_checkpoint
from mmgnn.train.stages import Stage
from mmgnn.train.trainer import FitResult, NonFiniteLossError, Trainer, seed_everything

__all__ = [
    "CheckpointError",
    "FitResult",
    "NonFiniteLossError",
    "Stage",
    "Trainer",
    "TrainerConfig",
    "UnsafeCheckpointError",
    "load_checkpoint",
    "seed_everything",
]
