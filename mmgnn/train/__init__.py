"""Training: the loop (stages, AdamW, warm-up + cosine, checkpoints), evaluation and the job."""
from mmgnn.train.stages import Stage
from mmgnn.train.trainer import FitResult, NonFiniteLossError, Trainer, seed_everything

__all__ = ["FitResult", "NonFiniteLossError", "Stage", "Trainer", "seed_everything"]
