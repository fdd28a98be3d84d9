"""Hydra search-path plugin: the folders in ``$MMGNN_CONFIG_PATH`` add config options."""
