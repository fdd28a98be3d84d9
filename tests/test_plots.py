"""The PNG plots every tracked run logs are written and are real images."""
import numpy as np
import pandas as pd

from mmgnn.analysis import plots, stats

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


def test_sweep_plots_write_pngs(tmp_path):
    """The report's rank and effect plots live in the same module and write real PNGs."""
    runs = pd.DataFrame({"status": "FINISHED", "fusion": ["concat", "gated", "xattn"] * 2,
                         "seed": ["0"] * 3 + ["1"] * 3,
                         "metrics.test/fused/acc": [0.3, 0.4, 0.9, 0.35, 0.3, 0.95]})
    ranks = stats.group_ranks(runs, ["fusion"], "fusion", "test/fused/acc")
    effects = stats.effects_table(runs, ["fusion"], "test/fused/acc", {"fusion": "concat"})
    paths = [
        plots.plot_ranks(ranks, "fusion", ["concat", "gated", "xattn"], "test/fused/acc",
                         tmp_path / "ranks.png"),
        plots.plot_effects(effects, "fusion", "test/fused/acc", tmp_path / "effects.png"),
    ]
    for path in paths:
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 5000


def test_effect_plot_titles_name_the_interval(tmp_path, monkeypatch):
    """Both panels of the effects plot say which interval their error bars are; a level with
    one run (no interval) still plots."""
    runs = pd.DataFrame({"status": "FINISHED", "fusion": ["concat", "gated"] * 2 + ["xattn"],
                         "seed": ["0", "0", "1", "1", "0"],
                         "metrics.test/fused/acc": [0.3, 0.4, 0.35, 0.5, 0.9]})
    effects = stats.effects_table(runs, ["fusion"], "test/fused/acc", {"fusion": "concat"})
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi: figures.append(fig) or path)
    plots.plot_effects(effects, "fusion", "test/fused/acc", tmp_path / "effects.png")
    titles = [ax.get_title() for ax in figures[0].axes]
    assert titles == ["fusion: marginal mean,\n95% t-interval over runs",
                      "paired difference vs concat,\n95% t-interval over pairs"]
