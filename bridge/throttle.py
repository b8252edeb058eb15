"""When the next CRM call may leave: concurrency, pacing and holds.

Every CRM call takes a slot first. A slot waits for any hold to pass, then for a
free place among ``max_concurrency`` calls, then for the backend's pace:

* HubSpot: a leaky bucket (aiolimiter) sized so that no rolling window of
  ``interval`` seconds ever sees more than ``max`` requests: 90 % of the rate,
  with bursts of 10 % of the limit. The ``X-HubSpot-RateLimit-*`` headers correct
  it: another ``max`` or ``interval`` rebuilds the bucket, and a ``remaining``
  that the calls in flight would use up holds new calls for the time the window
  needs to free that many places. A 429 holds everything for its interval (or the
  rest of the day for the ``DAILY`` policy).
* Salesforce: concurrency alone paces calls; the daily API budget from
  ``Sforce-Limit-Info`` holds new work once ``daily_budget_share`` of it is used.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiolimiter import AsyncLimiter

from bridge.errors import CrmError, CrmQuotaExhausted, CrmThrottled
from bridge.models import Limits

log = logging.getLogger(__name__)


class Throttle:
    """Concurrency and holds; subclasses add pacing and read rate-limit facts."""

    def __init__(self, backend: str, max_concurrency: int) -> None:
        self.backend = backend
        self.in_flight = 0
        self._slots = asyncio.Semaphore(max_concurrency)
        self._held_until = 0.0

    @property
    def held_for(self) -> float:
        """Seconds left on the current hold (0 when none)."""
        return max(0.0, self._held_until - time.monotonic())

    async def acquire(self) -> None:
        """Wait for a slot; pair with ``release``."""
        await self._wait_hold()
        await self._slots.acquire()
        try:
            await self.pace()
        except BaseException:
            self._slots.release()
            raise
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        self._slots.release()

    async def pace(self) -> None:
        """Wait until the rate limit allows one more request."""

    def hold(self, seconds: float, why: str) -> None:
        """Send nothing for ``seconds``; a longer hold in force wins."""
        until = time.monotonic() + seconds
        if until > self._held_until:
            self._held_until = until
            log.warning("%s: holding new calls %.1f s (%s)", self.backend, seconds, why)

    def observe(self, limits: Limits | None) -> None:
        """Read rate-limit facts off an answer."""

    def penalize(self, error: CrmError) -> None:
        """A rate limit or a quota said how long to wait: hold everything as long.

        A limit that names no wait (Salesforce's concurrent-request limit) only
        sends the failed activities back to their own backoff.
        """
        limited = isinstance(error, CrmThrottled | CrmQuotaExhausted)
        if limited and error.retry_after:
            self.hold(error.retry_after, error.code or "rate limit")
        self.observe(error.limits)

    async def _wait_hold(self) -> None:
        while (delay := self._held_until - time.monotonic()) > 0:
            await asyncio.sleep(delay)


class HubSpotThrottle(Throttle):
    """Paces calls under HubSpot's rolling-window limit."""

    def __init__(
        self, requests_per_interval: int, interval: float, max_concurrency: int
    ) -> None:
        super().__init__("hubspot", max_concurrency)
        self._shape = (requests_per_interval, interval)
        self._bucket = _bucket(requests_per_interval, interval)

    async def pace(self) -> None:
        await self._bucket.acquire()

    def observe(self, limits: Limits | None) -> None:
        if limits is None:
            return
        if (
            limits.max
            and limits.interval
            and (limits.max, limits.interval) != (self._shape)
        ):
            log.info(
                "hubspot: the account allows %d requests per %.0f s; pacing to that",
                limits.max,
                limits.interval,
            )
            self._shape = (limits.max, limits.interval)
            self._bucket = _bucket(limits.max, limits.interval)
        maximum, interval = self._shape
        # Observed while the answering call still holds its slot.
        others = self.in_flight - 1
        if limits.remaining is not None and limits.remaining < others:
            short = others - limits.remaining
            self.hold(interval * short / maximum, "few requests left in the window")


class SalesforceThrottle(Throttle):
    """Holds new work when the org's daily API budget is nearly spent."""

    def __init__(
        self, max_concurrency: int, budget_share: float, recheck_seconds: float
    ) -> None:
        super().__init__("salesforce", max_concurrency)
        self._share = budget_share
        self._recheck = recheck_seconds

    def observe(self, limits: Limits | None) -> None:
        if limits is None or not limits.used or not limits.limit:
            return
        if limits.used >= self._share * limits.limit:
            self.hold(self._recheck, f"daily API budget {limits.used}/{limits.limit}")


def _bucket(requests: int, interval: float) -> AsyncLimiter:
    """A bucket whose burst plus steady rate fits ``requests`` per ``interval``."""
    burst = max(1, requests // 10)
    rate = (requests - burst) / interval
    return AsyncLimiter(burst, burst / rate) if rate > 0 else AsyncLimiter(1, interval)
