"""Analysis over many runs: ablation reports and benchmarks (``python -m experiments.<name>``)."""
import mmgnn  # noqa: F401  (sets DGLBACKEND before any experiment imports DGL)
