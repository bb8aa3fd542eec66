"""Host memory for CPU training: keep freed memory for the next step instead of handing it back to the OS.

glibc's malloc serves large blocks (a ResNet activation at batch 16 and 224 px is 13-51 MB)
with `mmap` and returns them with `munmap` when they are freed, so every training step maps
its activations afresh and the kernel zeroes and page-faults them in again: on a 2-core
machine that was 60-85 thousand page faults and a tenth of the CPU time per ResNet-18 step,
spent in the kernel. Taking every block from the heap and never trimming it makes the
second step reuse the first one's pages: the model-only step ran 13% faster and hf_resnet's
training 14% faster (docs/benchmarks.md), with the same peak memory (1.90 vs 1.86 GB). It is
what "preload jemalloc or tcmalloc" achieves in CPU tuning guides, without a preload.

The settings are process-wide, so they hold only while training runs and are put back
afterwards, and the kept memory is returned to the OS then (`malloc_trim`). Other C
libraries (musl, macOS, Windows) are left alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

#: mallopt parameters (glibc's malloc.h) and glibc's documented defaults, which `reused_host_memory` puts back.
#: The mmap threshold is not touched: it keeps whatever value glibc's own adjustment had reached.
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4
GLIBC_DEFAULTS = {M_TRIM_THRESHOLD: 128 * 1024, M_MMAP_MAX: 65536}
#: Trim threshold while training: never give the top of the heap back (mallopt takes an int).
NEVER_TRIM = 2**31 - 1


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


@contextmanager
def reused_host_memory(enabled: bool = True) -> Iterator[bool]:
    """While inside, freed memory stays in the process for reuse (glibc only); yields whether that is in effect."""
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    applied = libc.mallopt(M_MMAP_MAX, 0) == 1 and libc.mallopt(M_TRIM_THRESHOLD, NEVER_TRIM) == 1
    if not applied:
        logger.info("glibc refused the malloc settings; host memory is allocated as usual")
    try:
        yield applied
    finally:
        for parameter, value in GLIBC_DEFAULTS.items():
            libc.mallopt(parameter, value)
        libc.malloc_trim(0)
