"""mmgnn: multimodal representation learning with graph neural networks.

Flow: ``mmgnn.data`` (datasets, graphs, batches) -> ``mmgnn.models`` (branches, skips,
fusion) -> ``mmgnn.losses`` -> ``mmgnn.train`` -> ``mmgnn.metrics`` -> ``mmgnn.tracking``.
"""
import os

os.environ.setdefault("DGLBACKEND", "pytorch")

__version__ = "0.1.0"
