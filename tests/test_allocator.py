"""mmgnn.train.allocator: with glibc, a buffer above malloc's initial mmap threshold comes from
the heap (kept for reuse) once freed memory is kept; without it, from its own mmap."""
import subprocess
import sys

import pytest

from mmgnn.train.allocator import keep_freed_memory, restore_malloc_defaults

PROBE = """
import ctypes, sys
import torch
from mmgnn.train.allocator import keep_freed_memory
libc = ctypes.CDLL("libc.so.6")
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                  "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] in ("keep", "keep-then-restore") else False
if sys.argv[1] == "keep-then-restore":  # a later job of the process with keep_freed_memory=false
    from mmgnn.train.allocator import restore_malloc_defaults
    applied = not restore_malloc_defaults()
before = libc.mallinfo2().hblks
buffer = torch.empty(30 << 18)  # 30 MiB: above any mmap threshold glibc reached while importing
print(applied, libc.mallinfo2().hblks - before)
"""


def glibc_with_mallinfo2() -> bool:
    import ctypes

    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not glibc_with_mallinfo2(), reason="needs glibc >= 2.33 (mallinfo2)")
def test_kept_memory_serves_a_large_buffer_from_the_heap_instead_of_mmap():
    def mmapped_chunks(mode):
        out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
        applied, chunks = out.stdout.split()
        return applied, int(chunks)

    assert mmapped_chunks("default") == ("False", 1)
    assert mmapped_chunks("keep") == ("True", 0)
    assert mmapped_chunks("keep-then-restore") == ("False", 1)  # mmap again, as by default


def test_restoring_without_keeping_first_changes_nothing():
    assert restore_malloc_defaults() is False


def test_thresholds_a_c_int_cannot_hold_are_refused_before_calling_glibc():
    with pytest.raises(ValueError, match="mmap_threshold=-1"):
        keep_freed_memory(mmap_threshold=-1)
    with pytest.raises(ValueError, match="trim_threshold"):
        keep_freed_memory(trim_threshold=1 << 40)
