"""The next batches made in a thread while the model trains on this one (`--data_overlap thread`).

Without DataLoader workers the main process decodes and augments between two steps, and the
model's threads wait for it. A worker process overlaps that work but costs a process, copies of
every batch through shared memory, and on a machine with few cores it competes with the model's
threads as an equal. A thread in the training process shares its memory, and its work runs while
the model's operations, which release the GIL, compute; it runs at a lower priority than the
training loop (Linux gives each thread its own nice value), so it takes the cycles the model's
threads leave idle rather than the ones they need.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import torch

#: Added to a data worker's nice value (DataLoader processes and the prefetch thread alike): the training loop wins
#: any contended core (on a CPU it is the model, whose threads all wait for the slowest), while data work still takes
#: every idle one.
DATA_NICENESS = 10
#: Batches made ahead: one to train on next and one in the making; more only holds memory.
AHEAD = 2


#: Held while torch's global generator is seeded for one sample or batch (`seeded`). That generator is one per
#: process: a prefetch thread seeding it for a sample's auto-augment while the training loop seeds it for a batch's
#: mixing, or restores it on a resume, would give each the other's draws. The training loop holds it from the moment
#: it has its batch until its forward pass starts (`ResNetTrainer`), so the prefetch thread draws only meanwhile.
GLOBAL_RNG = threading.RLock()


@contextmanager
def seeded(seed: int | None):
    """Run the block on torch's global generator seeded with `seed` (None: as it is), then put it back."""
    with GLOBAL_RNG, torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        yield


def lower_priority() -> None:
    """Lower the calling thread's priority by `DATA_NICENESS` (Linux: this thread only; elsewhere: where possible)."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DATA_NICENESS)
    except (AttributeError, OSError):  # no setpriority, or not allowed: run at the same priority
        pass


class ThreadPrefetch:
    """Iterate `source` in a background thread, `AHEAD` items ahead; its errors are raised where it is iterated."""

    _END = object()

    def __init__(self, source: Iterator):
        self.source = source
        self._queue: queue.Queue = queue.Queue(maxsize=AHEAD)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._fill, name="hf_resnet-prefetch", daemon=True)
        self._thread.start()

    def _fill(self) -> None:
        lower_priority()
        try:
            for item in self.source:
                if not self._put(item):
                    return
        except BaseException as error:  # raised again in the training loop, with the file it names
            self._put(error)
            return
        self._put(self._END)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self) -> ThreadPrefetch:
        return self

    def __next__(self):
        item = self._queue.get()
        if item is self._END:
            self._queue.put(self._END)  # stays exhausted
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        """Stop making batches (training ended early); the thread ends within a tenth of a second."""
        self._stop.set()
        self._thread.join(timeout=5)
