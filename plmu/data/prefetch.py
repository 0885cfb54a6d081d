"""Batches made on a background thread while the model trains on the previous ones.

A split's batches are made on the training thread by default: psMNIST's augmentation (an affine warp of every
image) and the text tasks' collation (padding, masks) then add to every step. :func:`prefetch` makes them ``depth``
batches ahead on one background thread. torch's kernels release the GIL, so the two overlap on a second core, and
the thread runs its torch ops on one intra-op thread, so it never starts a second team of the training's threads.

Nothing about the batches changes: each split draws its batches from the epoch's seed and the batch number alone
(:class:`plmu.data.splits.Split`), never from the global generator, so the thread makes the same batches in the same
order. An error while making a batch is raised in the training thread, at that batch; leaving the loop early
(an early stop, max_steps, Ctrl-C) stops the thread.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import Generic, TypeVar

import torch

T = TypeVar("T")
_END = object()


class prefetch(Generic[T]):  # noqa: N801  (used like a function: ``with prefetch(batches) as ahead: ...``)
    """Iterate ``items`` with up to ``depth`` of them made ahead on a background thread; ``depth`` 0 iterates them
    on the calling thread. Use it as a context manager, so that the thread stops when the loop is left."""

    def __init__(self, items: Iterable[T], depth: int = 2) -> None:
        self._items = iter(items)
        self._threaded = depth > 0
        if self._threaded:
            self._queue: queue.Queue = queue.Queue(maxsize=depth)
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._produce, name="plmu-prefetch", daemon=True)
            self._thread.start()

    def _put(self, entry: tuple) -> bool:
        """Put ``entry`` unless asked to stop; False if stopped."""
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self) -> None:
        torch.set_num_threads(1)  # this thread's own setting: the training thread keeps its count
        try:
            for item in self._items:
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as error:  # raised again in the consumer, at the batch that failed
            self._put((_END, error))

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        if not self._threaded:
            return next(self._items)
        item, error = self._queue.get()
        if item is _END:
            self._queue.put((_END, error))  # a second next() ends (or fails) the same way
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the thread (it finishes the batch it is making) and drop what it made ahead."""
        if not self._threaded:
            return
        self._stop.set()
        self._thread.join()
        while not self._queue.empty():
            self._queue.get_nowait()

    def __enter__(self) -> prefetch[T]:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()
