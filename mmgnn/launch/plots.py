"""The plots of one run, drawn from its result (the plot functions: :mod:`mmgnn.analysis.plots`).

:func:`run_plots` draws them into a folder and returns the files, which the tracked run logs
(:meth:`mmgnn.tracking.MLflowJobRun.log_result`): tracking records plot files it is given and
draws nothing itself.
"""
from __future__ import annotations

from pathlib import Path

from mmgnn.analysis import plots

LEARNING_CURVES = "learning_curves.png"
SIMILARITY = "similarity_test.png"
GATES = "gates.png"


def run_plots(result, folder: str | Path) -> list[Path]:
    """The learning curves, the test similarity matrix of the first two modalities and, when
    the run trained its fusion, the gates per modality, drawn into ``folder``.

    ``result``: a :class:`mmgnn.train.job.JobResult` (its ``history``, ``monitor`` and the test
    split's ``outputs``); no history (a run reused from an earlier sweep) draws nothing.
    """
    if not result.history:
        return []
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [plots.learning_curves(result.history, result.monitor, folder / LEARNING_CURVES)]
    out = result.outputs
    if out is not None:
        names = tuple(out.embeddings)
        both = out.present[:, 0] & out.present[:, 1]
        paths.append(plots.similarity_matrix(
            out.embeddings[names[0]][both], out.embeddings[names[1]][both],
            (names[0], names[1]), folder / SIMILARITY,
        ))
        if out.gates is not None:  # None when the loss does not train the fusion
            paths.append(plots.gate_distribution(out.gates, out.present, names, folder / GATES))
    return paths
