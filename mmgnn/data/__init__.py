"""Datasets (folder contract, synthetic), validation, standardisation, graphs and batches."""
from mmgnn.data.batch import MultimodalBatch, MultimodalCollator, batch_modality
from mmgnn.data.dataset import SPLITS, ModalityData, MultimodalDataset
from mmgnn.data.folder import DatasetError, load_folder, write_folder
from mmgnn.data.graphs import GraphSpec, ModalityGraphs, build_graphs, graph_specs_from_config
from mmgnn.data.normalize import Standardizer
from mmgnn.data.pipeline import PreparedData, prepare_data, subset_dataset
from mmgnn.data.splits import stratified_split
from mmgnn.data.synthetic import make_synthetic

__all__ = [
    "SPLITS",
    "DatasetError",
    "GraphSpec",
    "ModalityData",
    "ModalityGraphs",
    "MultimodalBatch",
    "MultimodalCollator",
    "MultimodalDataset",
    "PreparedData",
    "Standardizer",
    "batch_modality",
    "build_graphs",
    "graph_specs_from_config",
    "load_folder",
    "make_synthetic",
    "prepare_data",
    "stratified_split",
    "subset_dataset",
    "write_folder",
]
