"""Delivery: the only caller of adapters.

An activity is delivered by a *cycle*: a task that submits it to its lane and
retries passing failures (tenacity: exponential backoff with jitter, honouring
Retry-After) for at most ``[crm] deadline_seconds``. One cycle runs per key at a
time; every request for that key awaits the same cycle. A cycle that ends
undelivered leaves its row pending with a later ``next_attempt_at``, for the
outbox worker to start another; a rejected activity becomes a dead letter.

A *lane* gathers activities bound for one CRM object. Whenever the throttle
grants a slot, everything queued in the lane (up to the adapter's batch size)
leaves in one call, so batches form by themselves while the rate limit holds work
back, and a lone activity at low load leaves at once.
"""

from __future__ import annotations

import asyncio
import collections
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
    wait_exponential_jitter,
)

from adapters.base import Adapter
from bridge.errors import CrmError, CrmInDoubt, CrmRejected, CrmUnavailable
from bridge.journal import Journal, Store
from bridge.models import Activity
from bridge.throttle import Throttle

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class _Item:
    activity: Activity
    in_doubt: bool
    future: asyncio.Future[str]


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
    started: float = field(default_factory=time.monotonic)
    tries: int = 0


class Lane:
    """Activities bound for one CRM object, sent together when a slot frees."""

    def __init__(self, name: str, delivery: Delivery) -> None:
        self.name = name
        self._delivery = delivery
        self._queue: collections.deque[_Item] = collections.deque()
        self._ready = asyncio.Event()
        self._sends: set[asyncio.Task[None]] = set()
        self._task = asyncio.create_task(self._run(), name=f"lane-{name}")

    def submit(self, activity: Activity, in_doubt: bool) -> asyncio.Future[str]:
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(activity, in_doubt, future))
        self._ready.set()
        return future

    async def close(self, grace: float) -> None:
        self._task.cancel()
        if self._sends:
            await asyncio.wait(self._sends, timeout=grace)

    async def _run(self) -> None:
        throttle = self._delivery.throttle
        while True:
            await self._ready.wait()
            await throttle.acquire()
            batch = self._take()
            if not batch:
                throttle.release()
                continue
            send = asyncio.create_task(self._send(batch))
            self._sends.add(send)
            send.add_done_callback(self._sends.discard)

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        limit = self._delivery.adapter.batch_size
        while self._queue and len(batch) < limit:
            item = self._queue.popleft()
            if not item.future.done():
                batch.append(item)
        if not self._queue:
            self._ready.clear()
        return batch

    async def _send(self, batch: list[_Item]) -> None:
        delivery = self._delivery
        try:
            results = await delivery.send(self.name, batch)
        except asyncio.CancelledError:
            for item in batch:
                item.future.cancel()
            raise
        except Exception as error:
            # Only the journal fails this way; the call never left.
            log.error("%s: journal write failed (%s)", self.name, type(error).__name__)
            unrecorded = CrmUnavailable(
                "The journal could not be written.",
                backend=delivery.adapter.name,
                operation="journal",
                code=type(error).__name__,
            )
            results = [unrecorded] * len(batch)
        finally:
            delivery.throttle.release()
        _settle(batch, results)


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

    def running(self, key: str) -> bool:
        return key in self._cycles

    def start(
        self, activity: Activity, in_doubt: bool = False, attempts: int = 0
    ) -> asyncio.Task[str] | None:
        """The cycle delivering ``activity``: the running one, a new one, or None
        when too many are in memory (the journal keeps the activity meanwhile)."""
        running = self._cycles.get(activity.key)
        if running is not None:
            return running
        if not self.free:
            return None
        cycle = _Cycle(activity, in_doubt, attempts)
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

    async def send(self, lane: str, batch: Sequence[_Item]) -> list[str | CrmError]:
        """One call for ``batch``: journal first, CRM next, journal again.

        Items an earlier call may have written are looked up first when the
        adapter can; those found are not sent again.
        """
        results: dict[str, str | CrmError] = {}
        if self.adapter.can_find and any(item.in_doubt for item in batch):
            doubtful = [item.activity for item in batch if item.in_doubt]
            results.update(await self._find(lane, doubtful))
        outgoing = [i.activity for i in batch if i.activity.key_hash not in results]
        if outgoing:
            await self._mark_sending(outgoing)
            sent = await self._call(lane, outgoing)
            results.update(zip((a.key_hash for a in outgoing), sent, strict=True))

        delivered = [
            (item.activity.key, result)
            for item in batch
            if isinstance(result := results[item.activity.key_hash], str)
        ]
        in_doubt = [
            item.activity.key
            for item in batch
            if isinstance(results[item.activity.key_hash], CrmInDoubt)
        ]
        if delivered or in_doubt:
            now = time.time()
            await self.journal.run(lambda store: store.record(delivered, in_doubt, now))
        return [results[item.activity.key_hash] for item in batch]

    async def _mark_sending(self, activities: Sequence[Activity]) -> None:
        keys = [activity.key for activity in activities]
        resends = not self.adapter.idempotent
        lease, now = self.timing.lease, time.time()
        await self.journal.run(
            lambda store: store.mark_sending(keys, now, lease, resends)
        )

    async def _call(
        self, lane: str, activities: Sequence[Activity]
    ) -> list[str | CrmError]:
        try:
            sent = await self._in_thread(self.adapter.send, lane, activities)
        except CrmError as error:
            self.throttle.penalize(error)
            return [error] * len(activities)
        except Exception as error:
            # Adapters translate every vendor error; this is a defect, and the
            # request may have left.
            log.error("%s: unexpected %s from the adapter", lane, type(error).__name__)
            lost = CrmInDoubt(
                "The adapter failed unexpectedly.",
                backend=self.adapter.name,
                operation="send",
                code=type(error).__name__,
            )
            return [lost] * len(activities)
        self.throttle.observe(sent.limits)
        return sent.results

    async def _find(
        self, lane: str, activities: Sequence[Activity]
    ) -> dict[str, str | CrmError]:
        await self.throttle.pace()
        try:
            found = await self._in_thread(self.adapter.find, lane, activities)
        except CrmError as error:
            self.throttle.penalize(error)
            log.warning("%s: lookup before resend failed: %s", lane, error.reason)
            return {}
        if found:
            log.info(
                "%s: %d in-doubt activities found already written", lane, len(found)
            )
        return dict(found)

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, *args)

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
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(CrmUnavailable),
            stop=stop_before_delay(self.timing.deadline),
            wait=self._wait,
            before_sleep=_log_retry,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._attempt(cycle)
        raise AssertionError("tenacity ended without an outcome")

    async def _attempt(self, cycle: _Cycle) -> str:
        cycle.tries += 1
        lane = self._lane(cycle.activity)
        try:
            return await lane.submit(cycle.activity, cycle.in_doubt)
        except CrmInDoubt:
            cycle.in_doubt = True
            raise

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        wait = _BACKOFF(state)
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


_BACKOFF = wait_exponential_jitter(multiplier=0.2, max=5.0, jitter=0.5)


def _settle(batch: Sequence[_Item], results: Sequence[str | BaseException]) -> None:
    for item, result in zip(batch, results, strict=True):
        if item.future.done():
            continue
        if isinstance(result, str):
            item.future.set_result(result)
        else:
            item.future.set_exception(result)


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    reason = error.reason if isinstance(error, CrmError) else type(error).__name__
    wait = state.next_action.sleep if state.next_action else 0.0
    log.warning("retrying in %.2fs after %s", wait, reason)
