from mmgnn.analysis.plots import gate_distribution, learning_curves, similarity_matrix  # noqa: F401
