"""glibc's malloc tuned for a training loop: freed activations stay in the process for reuse.

A training step frees and allocates the same activation buffers every step. With glibc's
defaults a buffer above the mmap threshold (128 KiB at start, raised by glibc as such buffers
are freed, up to 32 MiB) gets fresh ``mmap`` pages, and free memory at the top of the heap is
handed back to the OS above the trim threshold; the next step then touches new pages again,
each a minor page fault that zero-fills 4 KiB. On ``experiments/bench_step.py``'s model (B=256,
2 threads) a forward pass with autograd took 24,000-31,000 such faults (95-108 ms); with both
thresholds set, 1-130 (67-70 ms). The price: the process keeps its peak resident memory until
it exits.
The same as ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=2147483647`` in the
environment, applied from inside the run (``train.keep_freed_memory``).

A later job of the same process (a sequential multirun) with ``train.keep_freed_memory=false``
calls :func:`restore_malloc_defaults`: both thresholds go back to glibc's initial 128 KiB. glibc's
dynamic raising of the mmap threshold stays off once a threshold was set (mallopt(3)), so such a
process is as a fresh one only up to that adjustment.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # the upper limit mallopt(3) documents for 64-bit systems
TRIM_THRESHOLD_MAX = (1 << 31) - 1  # mallopt takes a C int
GLIBC_DEFAULT_THRESHOLD = 128 << 10  # DEFAULT_MMAP_THRESHOLD_MIN and DEFAULT_TRIM_THRESHOLD
_kept = False  # whether keep_freed_memory changed this process's thresholds


def _mallopt():
    """glibc's ``(gnu_get_libc_version, mallopt)``, or ``None`` under another C library."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        version, mallopt = libc.gnu_get_libc_version, libc.mallopt  # only glibc has the first
    except (OSError, TypeError, AttributeError):
        return None
    version.restype = ctypes.c_char_p
    return version, mallopt


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD_MAX, trim_threshold: int = TRIM_THRESHOLD_MAX) -> bool:
    """Serve buffers up to ``mmap_threshold`` bytes from the heap and keep up to
    ``trim_threshold`` bytes of free heap instead of returning them to the OS (glibc's
    ``mallopt``). Returns True when applied; False, changing nothing, where the C library is
    not glibc (macOS, musl) or refuses the values.

    Raises ``ValueError`` for a threshold outside ``0 .. 2**31 - 1`` (mallopt takes a C int).
    """
    for what, value in (("mmap_threshold", mmap_threshold), ("trim_threshold", trim_threshold)):
        if not 0 <= value <= TRIM_THRESHOLD_MAX:
            raise ValueError(f"keep_freed_memory: {what}={value} is outside 0..{TRIM_THRESHOLD_MAX}")
    global _kept
    glibc = _mallopt()
    if glibc is None:
        return False
    version, mallopt = glibc
    applied = mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1 and mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1
    if applied:
        _kept = True
        log.info("glibc %s malloc keeps freed memory (mmap threshold %d B, trim threshold %d B)",
                 version().decode(), mmap_threshold, trim_threshold)
    return applied


def restore_malloc_defaults() -> bool:
    """Undo :func:`keep_freed_memory` in this process: both thresholds back to glibc's initial
    128 KiB. Returns True when it changed them; False (a no-op) when this process never kept
    freed memory or the C library is not glibc."""
    global _kept
    glibc = _mallopt()
    if not _kept or glibc is None:
        return False
    _, mallopt = glibc
    restored = (mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT_THRESHOLD) == 1
                and mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT_THRESHOLD) == 1)
    _kept = not restored
    if restored:
        log.info("glibc malloc thresholds restored to %d B (train.keep_freed_memory=false)",
                 GLIBC_DEFAULT_THRESHOLD)
    return restored
