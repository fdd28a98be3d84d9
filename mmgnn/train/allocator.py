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
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        gnu_get_libc_version = libc.gnu_get_libc_version  # only glibc has it
        mallopt = libc.mallopt
    except (OSError, TypeError, AttributeError):
        return False
    gnu_get_libc_version.restype = ctypes.c_char_p
    applied = mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1 and mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1
    if applied:
        log.info("glibc %s malloc keeps freed memory (mmap threshold %d B, trim threshold %d B)",
                 gnu_get_libc_version().decode(), mmap_threshold, trim_threshold)
    return applied
