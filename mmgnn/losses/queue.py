"""A FIFO queue of past embeddings: extra negatives for the contrastive losses.

MoCo (He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR
2020) and ALBEF (Li et al., "Align before Fuse", NeurIPS 2021) keep the keys of recent batches
in a queue so that every anchor is contrasted with many more negatives than one batch holds.
Here the queue keeps, per modality, the detached L2-normalised embeddings of the last ``size``
items together with which modalities they had and their labels and groups, so a loss can
leave out entries lacking a modality and treat queued same-label entries as positives.
"""
from __future__ import annotations

import torch


class EmbeddingQueue:
    """The last ``size`` items' embeddings of every modality, oldest overwritten first.

    Not an ``nn.Module``: its contents are training state rebuilt within a few steps, so they
    are kept out of ``state_dict`` (checkpoints) and live on the device of the last batch.

    Args:
        size: number of items kept; must be a multiple of the batch size (checked on the
            first :meth:`enqueue`, as MoCo requires; a smaller last batch of an epoch wraps).
        dim: embedding width ``D``.
        modalities: modality names, the column order of ``present``.

    >>> queue = EmbeddingQueue(size=4, dim=2, modalities=["text", "image"])
    >>> batch = {"text": torch.eye(2), "image": torch.eye(2)}
    >>> queue.enqueue(batch, torch.tensor([[True, True], [True, False]]), torch.tensor([3, 5]))
    >>> len(queue), queue.entries("image")[1].tolist(), queue.entries("image")[2].tolist()
    (2, [True, False], [3, 5])
    >>> for _ in range(2):  # full after 4 items: the oldest are overwritten
    ...     queue.enqueue(batch, torch.ones(2, 2, dtype=torch.bool))
    >>> len(queue), queue.entries("text")[2].tolist()
    (4, [-1, -1, -1, -1])
    """

    def __init__(self, size: int, dim: int, modalities: tuple[str, ...] | list[str]) -> None:
        if size <= 0:
            raise ValueError(f"queue size must be positive, got {size}")
        self.size, self.dim, self.modalities = int(size), int(dim), tuple(modalities)
        self.embeddings = {m: torch.zeros(self.size, self.dim) for m in self.modalities}
        self.present = torch.zeros(self.size, len(self.modalities), dtype=torch.bool)
        self.labels = torch.full((self.size,), -1, dtype=torch.int64)
        self.groups = torch.full((self.size,), -1, dtype=torch.int64)
        self.batch_size: int | None = None
        self.ptr = 0  # next slot to write
        self.filled = 0  # slots holding an item: always the first ``filled`` ones

    def __len__(self) -> int:
        return self.filled

    @torch.no_grad()
    def enqueue(
        self,
        embeddings: dict[str, torch.Tensor],
        present: torch.Tensor,
        labels: torch.Tensor | None = None,
        groups: torch.Tensor | None = None,
    ) -> None:
        """Append a batch, overwriting the oldest entries once full.

        Args:
            embeddings: modality -> ``[B, D]`` (stored detached, as given).
            present: bool ``[B, M]`` in ``modalities`` order.
            labels: int64 ``[B]`` or None (stored as -1: no label).
            groups: int64 ``[B]`` or None (stored as -1: no group).
        """
        if tuple(embeddings) != self.modalities:
            raise ValueError(
                f"queue holds modalities {self.modalities}, got a batch of {tuple(embeddings)}"
            )
        b = int(present.shape[0])
        if self.batch_size is None:
            if b == 0 or self.size % b != 0:
                raise ValueError(
                    f"queue_size={self.size} must be a multiple of the batch size, but the "
                    f"first batch has {b} items; choose queue_size = k * batch_size"
                )
            self.batch_size = b
        if b > self.size:
            raise ValueError(f"a batch of {b} items does not fit a queue of {self.size}")
        device = present.device
        if self.present.device != device:
            self._to(device)
        slots = (self.ptr + torch.arange(b, device=device)) % self.size
        for m, e in embeddings.items():
            self.embeddings[m][slots] = e.detach().to(self.embeddings[m].dtype)
        self.present[slots] = present
        self.labels[slots] = -1 if labels is None else labels.to(torch.int64)
        self.groups[slots] = -1 if groups is None else groups.to(torch.int64)
        self.ptr = (self.ptr + b) % self.size
        self.filled = min(self.size, self.filled + b)

    def entries(
        self, modality: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The filled entries of one modality.

        Returns:
            ``(embeddings [Q, D], present bool [Q], labels int64 [Q], groups int64 [Q])``
            with ``Q = len(self)``; label/group -1 means none was given.
        """
        n = self.filled
        col = self.modalities.index(modality)
        return (
            self.embeddings[modality][:n],
            self.present[:n, col],
            self.labels[:n],
            self.groups[:n],
        )

    def _to(self, device: torch.device) -> None:
        self.embeddings = {m: e.to(device) for m, e in self.embeddings.items()}
        self.present = self.present.to(device)
        self.labels = self.labels.to(device)
        self.groups = self.groups.to(device)
