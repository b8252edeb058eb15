"""Every error the bridge raises, in one tree.

::

    BridgeError
    ├── ConfigError              start-up stops with a one-line reason
    ├── RequestError             answered to Enginy as 4xx; nothing reaches a CRM
    │   ├── InvalidRequest       400, with per-field details
    │   └── PayloadTooLarge      413
    └── CrmError                 raised by adapters, translated from vendor errors
        ├── CrmRejected          the CRM refused this activity (validation): 422
        ├── CrmAuthError         the CRM refused our credentials: kept, retried later
        ├── CrmQuotaExhausted    a daily quota is spent: work is held until it resets
        └── CrmUnavailable       passing trouble, retried with backoff
            ├── CrmThrottled     a rate limit answered 429 (or the vendor's equivalent)
            └── CrmInDoubt       the request may have been applied: the answer was lost

Messages never carry vendor response text, tokens or personal data: adapters build
them from status codes, error codes and field names only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bridge.models import Limits


class BridgeError(Exception):
    """Base class of every error raised by crm-bridge."""


class ConfigError(BridgeError):
    """The configuration file or the environment cannot be used."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a request: where, and what."""

    field: str
    problem: str


class RequestError(BridgeError):
    """A request the bridge refuses before any CRM is involved."""

    status = 400
    error = "invalid_request"

    def __init__(self, message: str, details: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []


class InvalidRequest(RequestError):
    """The body or its fields do not follow the contract."""


class PayloadTooLarge(RequestError):
    """The body is larger than ``[server] max_body_bytes``."""

    status = 413
    error = "payload_too_large"


class CrmError(BridgeError):
    """A CRM call failed; raised by adapters only.

    ``status`` is the HTTP status the CRM answered (0 when no answer came),
    ``code`` the CRM's own error code or category, ``operation`` what was being
    done, and ``fields`` the names of the fields the CRM complained about.
    ``retry_after`` is how long the CRM asked us to wait, and ``limits`` the
    rate-limit facts its answer carried.
    """

    def __init__(
        self,
        message: str,
        *,
        backend: str,
        operation: str,
        status: int = 0,
        code: str = "",
        fields: tuple[str, ...] = (),
        retry_after: float | None = None,
        limits: Limits | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.backend = backend
        self.operation = operation
        self.status = status
        self.code = code
        self.fields = fields
        self.retry_after = retry_after
        self.limits = limits

    @property
    def reason(self) -> str:
        """A short description safe to store and log: no vendor text."""
        parts = [self.backend, self.operation, str(self.status or "no answer")]
        if self.code:
            parts.append(self.code)
        if self.fields:
            parts.append(",".join(self.fields))
        return " ".join(parts)


class CrmRejected(CrmError):
    """The CRM refused the activity itself; sending it again cannot help."""


class CrmAuthError(CrmError):
    """The CRM refused the bridge's credentials or their scopes."""


class CrmQuotaExhausted(CrmError):
    """A daily API quota is used up; ``retry_after`` says when it is expected back."""


class CrmUnavailable(CrmError):
    """Passing trouble: a 5xx, a lost connection, a lock. Worth retrying."""


class CrmThrottled(CrmUnavailable):
    """A rate limit was hit; ``code`` carries the policy name when the CRM gives one."""


class CrmInDoubt(CrmUnavailable):
    """The request left the bridge but its answer did not come back.

    The CRM may or may not have written the object, so a plain resend can
    duplicate it.
    """
