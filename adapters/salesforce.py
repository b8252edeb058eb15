"""Salesforce, through ``simple-salesforce`` over its REST API.

One activity is one call (create, or upsert on the external id field); several
go out as one sObject Collections call of up to 200 records, answered per record
in order. Every request carries a timeout and the configured CA bundle through
``CrmSession``. An expired session (401 ``INVALID_SESSION_ID``) is renewed once,
under a lock so that concurrent calls share one new token, and the call repeated.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import requests
import urllib3
from simple_salesforce import exceptions as sf_errors
from simple_salesforce.api import Salesforce

from adapters import salesforce_mapping as mapping
from adapters.base import Adapter, Sent
from adapters.salesforce_auth import Authenticator, CrmSession
from bridge.config import SalesforceSettings, Secrets
from bridge.errors import (
    CrmAuthError,
    CrmError,
    CrmInDoubt,
    CrmQuotaExhausted,
    CrmRejected,
    CrmThrottled,
    CrmUnavailable,
    Problem,
)
from bridge.models import Activity, Limits

# simple-salesforce logs request details at DEBUG; keep them out of the logs.
logging.getLogger("simple_salesforce").setLevel(logging.WARNING)

T = TypeVar("T")
LANE = "Task"
#: How long to hold work after the daily API quota ran out before trying again.
QUOTA_RECHECK_SECONDS = 300.0
#: Errors that say "try again" even though they come as a 400 or 403.
_PASSING = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE"}
_ACCESS = ("INSUFFICIENT_ACCESS", "CANNOT_INSERT_UPDATE_ACTIVATE_ENTITY")


class SalesforceAdapter(Adapter):
    """Writes completed Tasks into one Salesforce org."""

    name = "salesforce"

    def __init__(
        self,
        settings: SalesforceSettings,
        secrets: Secrets,
        timeouts: tuple[float, float],
    ) -> None:
        self.batch_size = settings.batch_size
        self.idempotent = bool(settings.external_id_field)
        self._settings = settings
        self._field = settings.external_id_field
        self._session = CrmSession(timeouts, settings.ca_bundle)
        self._auth = Authenticator(settings, secrets, self._session)
        self._lock = threading.Lock()
        self._client: Salesforce | None = None
        self._generation = 0

    def lane(self, activity: Activity) -> str:
        return LANE

    def check(self, activity: Activity) -> list[Problem]:
        return mapping.check(activity)

    def send(self, lane: str, activities: Sequence[Activity]) -> Sent:
        """Create (or upsert) the activities' Tasks in one call."""
        records = [mapping.task(a, self._settings) for a in activities]
        if len(records) == 1:
            results = [self._call(lambda sf: self._write_one(sf, records[0]))]
        else:
            results = self._call(lambda sf: self._write_many(sf, records))
        return Sent(results, self._limits())

    def probe(self) -> None:
        """Read the org's limits: proves the token and API access."""
        self._call(lambda sf: sf.limits())

    def close(self) -> None:
        self._session.close()

    def _write_one(self, sf: Salesforce, record: dict[str, Any]) -> str | CrmError:
        if not self._field:
            created = sf.restful("sobjects/Task/", method="POST", json=record)
            return str(_fields(created)["id"])
        key = record[self._field]
        body = {name: value for name, value in record.items() if name != self._field}
        try:
            answer = sf.restful(
                f"sobjects/Task/{self._field}/{key}", method="PATCH", json=body
            )
        except sf_errors.SalesforceMalformedRequest as error:
            if _code(error.content)[0] != "INVALID_FIELD_FOR_INSERT_UPDATE":
                raise
            # The Task exists already (TaskSubtype cannot be updated): use it.
            answer = None
        return str(answer["id"]) if answer else self._id_by_key(sf, key)

    def _write_many(
        self, sf: Salesforce, records: list[dict[str, Any]]
    ) -> list[str | CrmError]:
        envelope = {
            "allOrNone": False,
            "records": [{"attributes": {"type": "Task"}, **r} for r in records],
        }
        if self._field:
            path, method = f"composite/sobjects/Task/{self._field}", "PATCH"
        else:
            path, method = "composite/sobjects", "POST"
        answers = sf.restful(path, method=method, json=envelope) or []
        results: list[str | CrmError] = []
        for record, answer in zip(records, answers, strict=True):
            if answer.get("success"):
                results.append(str(answer["id"]))
                continue
            error = _record_error(answer.get("errors") or [])
            if self._field and error.code == "INVALID_FIELD_FOR_INSERT_UPDATE":
                results.append(self._id_by_key(sf, record[self._field]))
            else:
                results.append(error)
        return results

    def _id_by_key(self, sf: Salesforce, key: str) -> str:
        found = sf.restful(
            f"sobjects/Task/{self._field}/{key}", params={"fields": "Id"}
        )
        return str(_fields(found)["Id"])

    def _call(self, operation: Callable[[Salesforce], T]) -> T:
        sf, generation = self._current()
        try:
            try:
                return operation(sf)
            except sf_errors.SalesforceExpiredSession:
                if not self._auth.can_renew:
                    raise
                return operation(self._renew(generation))
        except CrmError:
            raise
        except Exception as error:
            raise translate(error) from None

    def _current(self) -> tuple[Salesforce, int]:
        with self._lock:
            if self._client is None:
                self._log_in()
            assert self._client is not None
            return self._client, self._generation

    def _renew(self, seen: int) -> Salesforce:
        """Log in again, unless another thread already did since ``seen``."""
        with self._lock:
            if self._generation == seen:
                self._log_in()
            assert self._client is not None
            return self._client

    def _log_in(self) -> None:
        login = self._auth.login()
        self._client = Salesforce(
            instance_url=login.instance_url,
            session_id=login.token,
            session=self._session,
            version=self._settings.api_version,
        )
        self._generation += 1

    def _limits(self) -> Limits | None:
        usage = self._client.api_usage.get("api-usage") if self._client else None
        if usage is None:
            return None
        return Limits(used=int(usage.used), limit=int(usage.total))


def translate(error: Exception) -> CrmError:
    """The one place where SDK and network exceptions become bridge errors."""
    if isinstance(error, sf_errors.SalesforceError):
        return _translate_answer(error)
    if isinstance(error, requests.RequestException) and _not_sent(error):
        return CrmUnavailable(
            "Salesforce could not be reached.",
            backend="salesforce",
            operation="write",
            code=type(error).__name__,
        )
    # A read timeout, a dropped connection, an unreadable answer: the request
    # left, so Salesforce may have written the Task.
    return CrmInDoubt(
        "Salesforce's answer was lost.",
        backend="salesforce",
        operation="write",
        code=type(error).__name__,
    )


def _translate_answer(error: sf_errors.SalesforceError) -> CrmError:
    status = int(error.status or 0)
    code, message, fields = _code(error.content)
    where: dict[str, Any] = {
        "backend": "salesforce",
        "operation": "write",
        "status": status,
        "code": code,
        "fields": fields,
    }
    if code in _PASSING:
        return CrmUnavailable("Salesforce asked to try again.", **where)
    if code == "REQUEST_LIMIT_EXCEEDED" and "TotalRequests" in message:
        return CrmQuotaExhausted(
            "Salesforce's daily API quota is spent.",
            retry_after=QUOTA_RECHECK_SECONDS,
            **where,
        )
    if code == "REQUEST_LIMIT_EXCEEDED":
        return CrmThrottled("Salesforce's concurrency limit was hit.", **where)
    if status >= 500:
        return CrmInDoubt("Salesforce failed while writing.", **where)
    if status == 401 or (status == 403 and not code.startswith(_ACCESS)):
        return CrmAuthError("Salesforce refused the bridge's session.", **where)
    return CrmRejected("Salesforce rejected the activity.", **where)


def _fields(answer: Any) -> dict[str, Any]:
    if not isinstance(answer, dict):
        raise ValueError("Salesforce answered without a record")
    return answer


def _record_error(errors: list[dict[str, Any]]) -> CrmError:
    first = errors[0] if errors else {}
    code = str(first.get("statusCode") or first.get("errorCode") or "")
    where: dict[str, Any] = {
        "backend": "salesforce",
        "operation": "write",
        "status": 400,
        "code": code,
        "fields": tuple(str(f) for f in first.get("fields") or ()),
    }
    if code in _PASSING:
        return CrmUnavailable("Salesforce asked to try again.", **where)
    return CrmRejected("Salesforce rejected the activity.", **where)


def _code(content: Any) -> tuple[str, str, tuple[str, ...]]:
    """Error code, message (for classifying only) and field names of an answer."""
    first = content[0] if isinstance(content, list) and content else content
    if not isinstance(first, dict):
        return "", "", ()
    fields = tuple(str(name) for name in first.get("fields") or ())
    code = str(first.get("errorCode") or first.get("error") or "")
    return code, str(first.get("message") or ""), fields


def _not_sent(error: requests.RequestException) -> bool:
    """Whether the request certainly never reached Salesforce."""
    if isinstance(error, requests.ConnectTimeout | requests.exceptions.SSLError):
        return True
    if not isinstance(error, requests.ConnectionError):
        return False
    cause = error.args[0] if error.args else None
    reason = getattr(cause, "reason", cause)
    return isinstance(reason, urllib3.exceptions.ConnectTimeoutError)
