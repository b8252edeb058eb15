"""The interface every CRM adapter implements, and the choice between them.

An adapter turns activities into one CRM call and the CRM's answer into ids or
errors. It is synchronous (both vendor SDKs are) and thread-safe: the delivery
layer calls it from a small thread pool, never from the event loop. It retries
nothing and sleeps never; timing, retries and throttling belong to delivery.

Every vendor exception is translated into a ``bridge.errors.CrmError`` in one
function per adapter, so nothing above the adapters sees vendor types or text.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from bridge.errors import CrmError, Problem
from bridge.models import Activity, Limits


@dataclass
class Sent:
    """The outcome of one CRM call: per activity, in order, an id or an error."""

    results: list[str | CrmError]
    limits: Limits | None = None


class Adapter(ABC):
    """One CRM behind the bridge."""

    name: ClassVar[str]
    #: Writes are keyed on the idempotency key: a resend can never duplicate.
    idempotent: bool = False
    #: ``find`` can look activities up by their key in the CRM.
    can_find: bool = False
    #: The most activities one call may carry.
    batch_size: int = 1

    def lane(self, activity: Activity) -> str:
        """The CRM object the activity becomes; only activities of one lane share
        a call."""
        return self.name

    def check(self, activity: Activity) -> list[Problem]:
        """Problems this CRM would certainly reject, found without calling it."""
        return []

    @abstractmethod
    def send(self, lane: str, activities: Sequence[Activity]) -> Sent:
        """Write ``activities`` (all of ``lane``) in one call.

        Raises ``CrmError`` when the call as a whole fails; an error that concerns
        one activity only comes back in its place in ``Sent.results``.
        """

    def find(self, lane: str, activities: Sequence[Activity]) -> dict[str, str]:
        """Map key hashes of activities already in the CRM to their ids."""
        return {}

    @abstractmethod
    def probe(self) -> None:
        """Make one cheap authenticated call; raise ``CrmError`` if it fails."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""
