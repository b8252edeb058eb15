"""The journal: the service's way to the store, with group commits.

Operations from the event loop queue to a single writer thread, which runs every
operation waiting at that moment inside one transaction (a group commit), so a
burst of requests costs one commit, not one each. CRM worker threads commit their
own operations directly, under the same lock, so that the write before a call, the
call and the write after it follow each other on one thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from bridge.store import Store

T = TypeVar("T")


@dataclass
class _Job:
    """An operation, its outcome, and how to hand the outcome to its caller."""

    operation: Callable[[Store], Any]
    hand_over: Callable[[_Job], None]
    value: Any = None
    error: Exception | None = None


class Journal:
    """Runs ``Store`` operations on one thread, committing concurrent ones together.

    ``run`` is for coroutines on the event loop; ``call`` for the worker threads
    that make CRM calls, so that a write, the call and the next write follow each
    other on one thread.
    """

    def __init__(self, store: Store, max_group: int = 512) -> None:
        self.store = store
        self._max_group = max_group
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        # One connection, used by the journal thread and by CRM worker threads.
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._work, name="journal", daemon=True)
        self._thread.start()

    async def run(self, operation: Callable[[Store], T]) -> T:
        """Run ``operation`` in the next group commit and return its result."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def hand_over(job: _Job) -> None:
            # A closed loop has nobody waiting any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, job.value, job.error)

        self._jobs.put(_Job(operation, hand_over))
        return await future

    def call(self, operation: Callable[[Store], T]) -> T:
        """``run`` for a thread other than the event loop's: commits ``operation``
        on the calling thread, so that a CRM call and the writes around it need
        no hand-over to another thread."""
        with self._lock, self.store.transaction():
            return operation(self.store)

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()
        # A CRM worker thread may still be recording a late answer.
        with self._lock:
            self.store.close()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            group = [job]
            while len(group) < self._max_group:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._commit(group)
                    return
                group.append(job)
            self._commit(group)

    def _commit(self, group: list[_Job]) -> None:
        try:
            with self._lock, self.store.transaction():
                for job in group:
                    try:
                        with self.store.savepoint():
                            job.value = job.operation(self.store)
                    except Exception as failure:
                        job.error = failure
        except Exception as commit_failure:
            # Nothing of the group is on disk: every caller learns it.
            for job in group:
                job.error = commit_failure
        for job in group:
            job.hand_over(job)


def _settle(future: asyncio.Future[Any], value: Any, error: Exception | None) -> None:
    # A caller that stopped waiting still had its operation committed.
    if future.cancelled():
        return
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(error)
