"""HubSpot's rate limits as the fake models them, with their headers and 429s.

Three limits: the ten-secondly rolling limit over all authenticated requests,
a daily limit (reset at midnight UTC) and the search endpoints' own limit per
second. A refused request uses up no quota; that is the fake's choice, HubSpot
does not document it.
"""

from __future__ import annotations

import collections
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime

from tests.fakes.server import Reply

# What HubSpot grants a private app on a Free or Starter account.
DEFAULT_TEN_SECONDLY_MAX = 100
RATE_LIMIT_GROUP = "privateapp-fake"


def rate_limited(policy: str, limit_name: str) -> Reply:
    """HubSpot's 429 body; unlike other errors it has errorType, not category."""
    body = {
        "status": "error",
        "message": f"You have reached your {limit_name} limit.",
        "errorType": "RATE_LIMIT",
        "correlationId": str(uuid.uuid4()),
        "policyName": policy,
        "groupName": RATE_LIMIT_GROUP,
    }
    return Reply(429, body)


class RollingWindow:
    """Counts events over the last ``seconds``, as HubSpot's rolling limits do."""

    def __init__(self, limit: int, seconds: float, clock: Callable[[], float]) -> None:
        self.limit = limit
        self._seconds = seconds
        self._clock = clock
        self._events: collections.deque[float] = collections.deque()

    def remaining(self) -> int:
        """How many more events fit in the window now."""
        horizon = self._clock() - self._seconds
        while self._events and self._events[0] <= horizon:
            self._events.popleft()
        return max(0, self.limit - len(self._events))

    def add(self) -> None:
        """Count one event now."""
        self._events.append(self._clock())


class RateLimits:
    """The fake's three limits; ``None`` switches one off. Not thread-safe."""

    def __init__(
        self,
        requests_per_10s: int | None,
        daily_limit: int | None,
        search_per_second: int | None,
        clock: Callable[[], float],
    ) -> None:
        self._window = _rolling(requests_per_10s, 10.0, clock)
        self._searches = _rolling(search_per_second, 1.0, clock)
        self._daily_limit = daily_limit
        self._day = date.min
        self._used_today = 0

    def charge(self, *, search: bool) -> Reply | None:
        """The 429 if a limit is spent; else count the request against each."""
        self._roll_day()
        if self._daily_limit is not None and self._used_today >= self._daily_limit:
            return rate_limited("DAILY", "daily")
        if self._window is not None and not self._window.remaining():
            return rate_limited("TEN_SECONDLY_ROLLING", "ten_secondly_rolling")
        searches = self._searches if search else None
        if searches is not None and not searches.remaining():
            return rate_limited("SECONDLY", "secondly")
        self._used_today += 1
        for window in (self._window, searches):
            if window is not None:
                window.add()
        return None

    def headers(self) -> dict[str, str]:
        """HubSpot's X-HubSpot-RateLimit-* headers for the limits that are on."""
        headers: dict[str, str] = {}
        if self._window is not None:
            headers["X-HubSpot-RateLimit-Max"] = str(self._window.limit)
            headers["X-HubSpot-RateLimit-Remaining"] = str(self._window.remaining())
            headers["X-HubSpot-RateLimit-Interval-Milliseconds"] = "10000"
        if self._daily_limit is not None:
            self._roll_day()
            remaining = max(0, self._daily_limit - self._used_today)
            headers["X-HubSpot-RateLimit-Daily"] = str(self._daily_limit)
            headers["X-HubSpot-RateLimit-Daily-Remaining"] = str(remaining)
        return headers

    def exhausted(self) -> Reply:
        """The ten-secondly 429 with the headers of a spent window."""
        reply = rate_limited("TEN_SECONDLY_ROLLING", "ten_secondly_rolling")
        limit = DEFAULT_TEN_SECONDLY_MAX if self._window is None else self._window.limit
        reply.headers = self.headers() | {
            "X-HubSpot-RateLimit-Max": str(limit),
            "X-HubSpot-RateLimit-Remaining": "0",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        }
        return reply

    def _roll_day(self) -> None:
        today = datetime.now(UTC).date()
        if today != self._day:
            self._day, self._used_today = today, 0


def _rolling(
    limit: int | None, seconds: float, clock: Callable[[], float]
) -> RollingWindow | None:
    return None if limit is None else RollingWindow(limit, seconds, clock)
