"""Raw files -> a dataset folder: ``python -m mmgnn.featurize --manifest items.csv --out DIR``.

Text through a pretrained encoder (the bundled MiniLM, one node per token), images as a grid of
patches or the feature map of a pretrained CNN (the bundled EfficientNet-Lite0), audio as
log-mel frames or frames of a pretrained encoder (the bundled CREPE); or any local Hugging Face
folder or TorchScript file. Featurizers save their settings (``featurize.json``) and load from
them (:func:`featurizer_from_settings`, :func:`load_featurizers`). See :func:`featurize` and
``python -m mmgnn.featurize --help``.
"""
from mmgnn.featurize.audio import AudioFeaturizer
from mmgnn.featurize.audio_pretrained import CrepeFeaturizer, HFAudioFeaturizer, TorchScriptAudioFeaturizer
from mmgnn.featurize.base import Featurizer, featurizer_class, featurizer_from_settings, registered
from mmgnn.featurize.build import SKIPPED_FILE, default_cache, featurize
from mmgnn.featurize.image import ImageFeaturizer
from mmgnn.featurize.image_cnn import EfficientNetLiteFeaturizer, HFImageFeaturizer, TorchScriptImageFeaturizer
from mmgnn.featurize.manifest import FeaturizeError, ItemError, read_manifest
from mmgnn.featurize.record import INFO_FILE, load_featurizers, read_info, record_featurize_info
from mmgnn.featurize.text import HFTextFeaturizer, TextFeaturizer

__all__ = [
    "AudioFeaturizer", "CrepeFeaturizer", "EfficientNetLiteFeaturizer", "Featurizer", "FeaturizeError",
    "HFAudioFeaturizer", "HFImageFeaturizer", "HFTextFeaturizer", "ImageFeaturizer", "INFO_FILE", "ItemError",
    "SKIPPED_FILE", "TextFeaturizer", "TorchScriptAudioFeaturizer", "TorchScriptImageFeaturizer", "default_cache",
    "featurize", "featurizer_class", "featurizer_from_settings", "load_featurizers", "read_info", "read_manifest",
    "record_featurize_info", "registered",
]
