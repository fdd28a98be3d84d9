"""PNG plots logged with every run: learning curves, a test similarity matrix, gates."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np


def learning_curves(history: list[dict[str, float]], monitor: str, path: Path) -> Path:
    """Training loss terms, the monitored validation metric and the learning rate per epoch."""
    epochs = [h["epoch"] + 1 for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for key in sorted({k for h in history for k in h if k.startswith("train/")}):
        axes[0].plot(epochs, [h.get(key, np.nan) for h in history], marker="o", label=key[6:])
    axes[0].set_title("training loss")
    axes[0].legend(fontsize=8)
    axes[1].plot(epochs, [h.get(monitor, np.nan) for h in history], marker="o", color="C2")
    axes[1].set_title(monitor)
    axes[2].plot(epochs, [h.get("lr", np.nan) for h in history], marker="o", color="C3")
    axes[2].set_title("learning rate (end of epoch)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def similarity_matrix(
    query: np.ndarray, gallery: np.ndarray, names: tuple[str, str], path: Path, n: int = 32
) -> Path:
    """Cosine similarities of the first ``n`` test items' embeddings (``[n, D]`` each)."""
    q, g = query[:n], gallery[:n]
    sim = q @ g.T
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    image = ax.imshow(sim, cmap="viridis", vmin=-1, vmax=1)
    ax.set_xlabel(f"{names[1]} (test item)")
    ax.set_ylabel(f"{names[0]} (test item)")
    ax.set_title(f"cosine similarity {names[0]} -> {names[1]}")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gate_distribution(
    gates: np.ndarray, present: np.ndarray, modalities: tuple[str, ...], path: Path
) -> Path:
    """Box plot of each modality's gate over the test items that have the modality."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    data = [gates[present[:, j], j] for j in range(len(modalities))]
    ax.boxplot(data, tick_labels=list(modalities))
    ax.set_ylabel("gate / attention mass")
    ax.set_title("fusion gates per modality (test)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
