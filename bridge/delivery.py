"""Delivery: the only caller of adapters.

An activity is delivered by a *cycle*: a task that submits it to its lane and
retries passing failures (tenacity: exponential backoff with jitter, honouring
Retry-After) for at most ``[crm] deadline_seconds``. One cycle runs per key at a
time; every request for that key awaits the same cycle. A cycle that ends
undelivered leaves its row pending with a later ``next_attempt_at``, for the
outbox worker to start another; a rejected activity becomes a dead letter.

Cycles submit to lanes (``bridge.lanes``), which batch what is queued.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_before_delay,
)

from adapters.base import Adapter, Sent
from bridge.errors import CrmError, CrmInDoubt, CrmRejected, CrmUnavailable
from bridge.journal import Journal
from bridge.lanes import Item, Lane
from bridge.models import Activity
from bridge.store import Store
from bridge.throttle import Throttle

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class Timing:
    """How long things may take, from ``[crm]`` and ``[outbox]``."""

    deadline: float
    lease: float
    backoff_max: float
    find_settle: float = 0.0


@dataclass
class _Cycle:
    """One delivery cycle's memory of the activity's history."""

    activity: Activity
    in_doubt: bool
    attempts: int
    marked: bool = False
    started: float = field(default_factory=time.monotonic)
    tries: int = 0


class Delivery:
    """Cycles, lanes and the thread pool that runs the adapter."""

    def __init__(
        self,
        adapter: Adapter,
        journal: Journal,
        throttle: Throttle,
        timing: Timing,
        max_in_memory: int,
        workers: int,
    ) -> None:
        self.adapter = adapter
        self.journal = journal
        self.throttle = throttle
        self.timing = timing
        self._max_in_memory = max_in_memory
        self._executor = ThreadPoolExecutor(workers, thread_name_prefix="crm")
        self._lanes: dict[str, Lane] = {}
        self._cycles: dict[str, asyncio.Task[str]] = {}

    @property
    def free(self) -> int:
        """How many more cycles may start."""
        return max(0, self._max_in_memory - len(self._cycles))

    def start(
        self,
        activity: Activity,
        in_doubt: bool = False,
        attempts: int = 0,
        marked: bool = False,
    ) -> asyncio.Task[str] | None:
        """The cycle delivering ``activity``: the running one, a new one, or None
        when too many are in memory (the journal keeps the activity meanwhile).

        ``marked``: the journal row was claimed as ``sending``, which stands for
        the first call's mark.
        """
        running = self._cycles.get(activity.key)
        if running is not None:
            return running
        if not self.free:
            return None
        cycle = _Cycle(activity, in_doubt, attempts, marked)
        task = asyncio.create_task(self._cycle(cycle))
        self._cycles[activity.key] = task
        task.add_done_callback(lambda done: self._forget(activity.key, done))
        return task

    async def close(self, grace: float) -> None:
        """Let calls in flight finish for up to ``grace`` seconds, then stop."""
        for lane in self._lanes.values():
            await lane.close(grace)
        for task in list(self._cycles.values()):
            task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def send(self, lane: str, batch: Sequence[Item]) -> list[str | CrmError]:
        """One call for ``batch``: journal first, CRM next, journal again.

        Items an earlier call may have written are looked up first when the
        adapter can; those found are not sent again.
        """
        results: dict[str, str | CrmError] = {}
        if self.adapter.can_find and any(item.in_doubt for item in batch):
            doubtful = [item.activity for item in batch if item.in_doubt]
            results.update(await self._find(lane, doubtful))
        outgoing = [i for i in batch if i.activity.key_hash not in results]
        if outgoing:
            sent, failure = await self._in_thread(self._send_recorded, lane, outgoing)
            if failure is not None:
                self.throttle.penalize(failure)
            else:
                self.throttle.observe(sent.limits)
            hashes = (item.activity.key_hash for item in outgoing)
            results.update(zip(hashes, sent.results, strict=True))
        return [results[item.activity.key_hash] for item in batch]

    def _send_recorded(
        self, lane: str, items: Sequence[Item]
    ) -> tuple[Sent, CrmError | None]:
        """On a worker thread: record the call leaving, make it, record the ids.

        All three happen on this thread, one after the other: nothing leaves
        before it is committed as leaving, and the answer is committed as soon
        as it arrives.
        """
        activities = [item.activity for item in items]
        keys = [item.activity.key for item in items if not item.marked]
        resends, lease = not self.adapter.idempotent, self.timing.lease
        now = time.time()
        if keys:
            self.journal.call(
                lambda store: store.mark_sending(keys, now, lease, resends)
            )

        failure: CrmError | None = None
        try:
            sent = self.adapter.send(lane, activities)
        except CrmError as error:
            failure = error
            sent = Sent([error] * len(activities), error.limits)
        except Exception as error:
            # Adapters translate every vendor error; this is a defect, and the
            # request may have left.
            log.error("%s: unexpected %s from the adapter", lane, type(error).__name__)
            failure = self._lost("send", error)
            sent = Sent([failure] * len(activities))

        try:
            self._record(activities, sent.results)
        except Exception as error:
            # The CRM may hold what the journal could not record.
            log.error("%s: answer not recorded (%s)", lane, type(error).__name__)
            lost = self._lost("journal", error)
            sent = Sent([lost] * len(activities), sent.limits)
        return sent, failure

    def _lost(self, operation: str, error: Exception) -> CrmInDoubt:
        """A call that may have left, whose outcome the bridge does not hold."""
        return CrmInDoubt(
            "The outcome of the call is unknown.",
            backend=self.adapter.name,
            operation=operation,
            code=type(error).__name__,
        )

    def _record(
        self, activities: Sequence[Activity], results: Sequence[str | CrmError]
    ) -> None:
        delivered = [
            (activity.key, result)
            for activity, result in zip(activities, results, strict=True)
            if isinstance(result, str)
        ]
        in_doubt = [
            activity.key
            for activity, result in zip(activities, results, strict=True)
            if isinstance(result, CrmInDoubt)
        ]
        if delivered or in_doubt:
            now = time.time()
            self.journal.call(lambda store: store.record(delivered, in_doubt, now))

    async def _find(
        self, lane: str, activities: Sequence[Activity]
    ) -> dict[str, str | CrmError]:
        """Look in-doubt activities up; those found are recorded as delivered.

        When the lookup fails, none of them is sent blindly: each gets the
        lookup's error, as a passing one, and its cycle tries again later.
        """
        await self.throttle.pace()
        try:
            found = await self._in_thread(self.adapter.find, lane, activities)
        except CrmError as error:
            self.throttle.penalize(error)
            log.warning("%s: lookup before resend failed: %s", lane, error.reason)
            failed = CrmUnavailable(
                "The lookup before a resend failed.",
                backend=error.backend,
                operation=error.operation,
                status=error.status,
                code=error.code,
                retry_after=error.retry_after,
            )
            return dict.fromkeys((a.key_hash for a in activities), failed)
        if not found:
            return {}
        log.info("%s: %d in-doubt activities found already written", lane, len(found))
        pairs = [(a.key, found[a.key_hash]) for a in activities if a.key_hash in found]
        now = time.time()
        await self.journal.run(lambda store: store.record(pairs, [], now))
        return dict(found)

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """Run ``function`` on the CRM thread pool; its outcome comes back by
        ``call_soon_threadsafe``, cheaper than run_in_executor's future chain."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def work() -> None:
            try:
                result = function(*args)
            except BaseException as error:  # handed to the awaiting coroutine
                loop.call_soon_threadsafe(_fail, future, error)
            else:
                loop.call_soon_threadsafe(_succeed, future, result)

        self._executor.submit(work)
        return await future

    def _lane(self, activity: Activity) -> Lane:
        name = self.adapter.lane(activity)
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = Lane(name, self)
        return lane

    async def _cycle(self, cycle: _Cycle) -> str:
        try:
            crm_id = await self._retrying(cycle)
        except CrmRejected as error:
            await self._give_up(cycle, error)
            raise
        except CrmError as error:
            await self._postpone(cycle, error)
            raise
        log.info(
            "delivered backend=%s type=%s crm_id=%s attempts=%d ms=%d key=%s",
            self.adapter.name,
            cycle.activity.type.value,
            crm_id,
            cycle.attempts + cycle.tries,
            (time.monotonic() - cycle.started) * 1000,
            cycle.activity.short_hash,
        )
        return crm_id

    async def _retrying(self, cycle: _Cycle) -> str:
        """The first attempt goes straight out; passing trouble hands the rest of
        the cycle to tenacity, within what is left of the deadline."""
        try:
            return await self._attempt(cycle)
        except CrmUnavailable as error:
            pause = self._pause(error, 1)
            left = self.timing.deadline - (time.monotonic() - cycle.started)
            if pause >= left:
                raise
            log.warning("retrying in %.2fs after %s", pause, error.reason)
        await asyncio.sleep(pause)

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(CrmUnavailable),
            stop=stop_before_delay(left - pause),
            wait=lambda state: self._pause(_error_of(state), state.attempt_number + 1),
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(cycle)
        raise AssertionError("tenacity ended without an outcome")

    async def _attempt(self, cycle: _Cycle) -> str:
        cycle.tries += 1
        marked, cycle.marked = cycle.marked, False
        lane = self._lane(cycle.activity)
        try:
            return await lane.submit(cycle.activity, cycle.in_doubt, marked)
        except CrmInDoubt:
            cycle.in_doubt = True
            raise

    def _pause(self, error: BaseException | None, attempt: int) -> float:
        """Exponential backoff with jitter, at least what the CRM asked for."""
        wait: float = min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** (attempt - 1))
        wait += random.uniform(0, BACKOFF_JITTER)  # noqa: S311
        if isinstance(error, CrmError) and error.retry_after:
            wait = max(wait, error.retry_after)
        if isinstance(error, CrmInDoubt) and self.adapter.can_find:
            # Give the CRM's search index time to show what was written.
            wait = max(wait, self.timing.find_settle)
        return wait

    async def _give_up(self, cycle: _Cycle, error: CrmError) -> None:
        key, reason = cycle.activity.key, error.reason
        await self.journal.run(lambda store: store.mark_dead(key, reason, time.time()))
        log.error(
            "rejected backend=%s type=%s reason=%s key=%s",
            self.adapter.name,
            cycle.activity.type.value,
            reason,
            cycle.activity.short_hash,
        )

    async def _postpone(self, cycle: _Cycle, error: CrmError) -> None:
        delay = self.backoff(cycle.attempts + cycle.tries)
        if error.retry_after:
            delay = max(delay, error.retry_after)
        key, reason, in_doubt = cycle.activity.key, error.reason, cycle.in_doubt
        now = time.time()

        def postpone(store: Store) -> None:
            store.mark_failed(key, reason, now + delay, in_doubt, now)

        await self.journal.run(postpone)
        log.warning(
            "not delivered yet backend=%s reason=%s retry_in=%.0fs key=%s",
            self.adapter.name,
            reason,
            delay,
            cycle.activity.short_hash,
        )

    def backoff(self, attempts: int) -> float:
        """Capped, jittered wait before the next cycle."""
        ceiling = min(self.timing.backoff_max, 2.0 ** min(attempts, 30))
        return max(1.0, random.uniform(ceiling / 2, ceiling))  # noqa: S311

    def _forget(self, key: str, task: asyncio.Task[str]) -> None:
        self._cycles.pop(key, None)
        if not task.cancelled():
            task.exception()


#: Retries inside a cycle: 0.2 s, doubling, at most 5 s, plus up to 0.5 s.
BACKOFF_FIRST = 0.2
BACKOFF_MAX = 5.0
BACKOFF_JITTER = 0.5


def _error_of(state: RetryCallState) -> BaseException | None:
    return state.outcome.exception() if state.outcome else None


def _succeed(future: asyncio.Future[T], result: T) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(error)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    reason = error.reason if isinstance(error, CrmError) else type(error).__name__
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("retrying in %.2fs after %s", wait, reason)
