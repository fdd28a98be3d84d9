"""The PNG plots every tracked run logs are written and are real images."""
import numpy as np

from mmgnn.tracking import plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_every_plot_writes_a_png(tmp_path):
    history = [{"epoch": e, "train/total": 1.0 / (e + 1), "train/align": 0.5, "lr": 1e-3,
                "val/retrieval/mean_recall": 0.1 * e} for e in range(4)]
    rng = np.random.default_rng(0)
    q = rng.normal(size=(40, 8))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    gates = rng.uniform(size=(40, 3))
    present = rng.uniform(size=(40, 3)) > 0.2
    paths = [
        plots.learning_curves(history, "val/retrieval/mean_recall", tmp_path / "curves.png"),
        plots.similarity_matrix(q, q, ("text", "image"), tmp_path / "sim.png"),
        plots.gate_distribution(gates, present, ("text", "image", "audio"), tmp_path / "gates.png"),
    ]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000
