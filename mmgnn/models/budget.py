"""Parameter budget: the hidden size that gives a model a target parameter count.

GraphGym's budget mode (You et al., NeurIPS 2020, Sec. 5) compares designs at (about) the same
number of parameters by adjusting the hidden size of each design.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from mmgnn.models.multimodal import count_parameters


def hidden_dim_for_budget(
    build: Callable[[int], nn.Module],
    target_params: int,
    low: int = 1,
    high: int = 1024,
    multiple_of: int = 1,
) -> int:
    """The hidden size ``h`` in ``[low, high]``, a multiple of ``multiple_of``, whose model
    ``build(h)`` has the trainable parameter count closest to ``target_params``.

    Binary search, assuming the count grows with ``h`` (true of every branch and fusion here).
    Use ``multiple_of`` for constraints such as GAT's ``hidden % heads == 0``.

    Args:
        build: hidden size -> model (e.g. a ``MultimodalGNN`` whose branch gets ``hidden_dim=h``).
        target_params: the budget.
        low, high: search range (inclusive).
        multiple_of: step of the candidate sizes.
    """
    lo, hi = -(-low // multiple_of), high // multiple_of
    if lo > hi:
        raise ValueError(f"no multiple of {multiple_of} in [{low}, {high}]")

    def params(k: int) -> int:
        return count_parameters(build(k * multiple_of), trainable_only=True)

    # Largest k with params(k) <= target (or lo if even lo is over budget).
    left, right = lo, hi
    while left < right:
        mid = (left + right + 1) // 2
        if params(mid) <= target_params:
            left = mid
        else:
            right = mid - 1
    best = left
    if best < hi and abs(params(best + 1) - target_params) < abs(params(best) - target_params):
        best += 1
    return best * multiple_of
