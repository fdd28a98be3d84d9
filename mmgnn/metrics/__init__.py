"""Evaluation metrics: pure functions on numpy or torch arrays."""
from mmgnn.metrics.classification import accuracy, classification_metrics, macro_f1, predictions
from mmgnn.metrics.evaluate import (
    is_fusion_metric,
    metric_key_part,
    metrics_table,
    monitored_key,
    monitored_value,
    multimodal_metrics,
    robustness_auc,
)
from mmgnn.metrics.retrieval import (
    average_precision,
    label_ranks,
    match_ranks,
    mean_average_precision,
    mean_rank,
    median_rank,
    recall_at_k,
    summarize,
)

__all__ = [
    "accuracy",
    "average_precision",
    "classification_metrics",
    "is_fusion_metric",
    "label_ranks",
    "macro_f1",
    "match_ranks",
    "mean_average_precision",
    "mean_rank",
    "median_rank",
    "metric_key_part",
    "metrics_table",
    "monitored_key",
    "monitored_value",
    "multimodal_metrics",
    "predictions",
    "recall_at_k",
    "robustness_auc",
    "summarize",
]
