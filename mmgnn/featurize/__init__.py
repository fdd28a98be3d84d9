"""Raw files -> a dataset folder: ``python -m mmgnn.featurize --manifest items.csv --out DIR``.

Text through the bundled pretrained MiniLM (one node per token), images as a grid of patches,
audio as log-mel frames; see :func:`featurize` and ``python -m mmgnn.featurize --help``.
"""
from mmgnn.featurize.audio import AudioFeaturizer
from mmgnn.featurize.base import Featurizer
from mmgnn.featurize.build import INFO_FILE, SKIPPED_FILE, default_cache, featurize
from mmgnn.featurize.image import ImageFeaturizer
from mmgnn.featurize.manifest import FeaturizeError, ItemError, read_manifest
from mmgnn.featurize.text import TextFeaturizer

__all__ = [
    "AudioFeaturizer", "Featurizer", "FeaturizeError", "ImageFeaturizer", "INFO_FILE", "ItemError",
    "SKIPPED_FILE", "TextFeaturizer", "default_cache", "featurize", "read_manifest",
]
