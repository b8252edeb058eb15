"""HubSpot, through the official ``hubspot-api-client``.

The SDK builds a new API client (and connection pool) on every attribute access,
so the API objects are built once here. Its own retries are turned off: they
never cover POST, and retrying belongs to the delivery layer. Every call carries
a ``(connect, read)`` timeout, without which the SDK would wait for ever.

One activity goes out as a single create; several as a batch create, each input
with its own ``objectWriteTraceId`` so that one bad input comes back as a per-input
error (HTTP 207) instead of failing the batch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import urllib3
from hubspot import HubSpot
from hubspot.crm.objects.communications import exceptions as communications_errors
from hubspot.crm.objects.emails import exceptions as emails_errors

from adapters import hubspot_mapping as mapping
from adapters.base import Adapter, Sent
from bridge.config import HubSpotSettings
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

# The SDK logs whole response bodies at DEBUG: they carry personal data.
logging.getLogger("hubspot").setLevel(logging.WARNING)

#: Every exception class the SDK's two object packages can raise.
SDK_ERRORS: tuple[type[Exception], ...] = (
    emails_errors.OpenApiException,
    communications_errors.OpenApiException,
)
_API_ERRORS = (emails_errors.ApiException, communications_errors.ApiException)

_TEN_SECONDS = 10.0
#: HubSpot's largest search page.
SEARCH_PAGE = 200


class HubSpotAdapter(Adapter):
    """Writes e-mails and communications into one HubSpot account."""

    name = "hubspot"

    def __init__(
        self,
        settings: HubSpotSettings,
        token: str,
        timeouts: tuple[float, float],
    ) -> None:
        self.batch_size = settings.batch_size
        self.can_find = bool(settings.dedupe_property)
        self._dedupe = settings.dedupe_property
        self._zone = ZoneInfo(settings.timezone)
        self._timeouts = timeouts
        client = HubSpot(
            access_token=token,
            host=settings.base_url.rstrip("/"),
            retry=False,
            connection_pool_maxsize=settings.max_concurrency + 2,
        )
        self._apis = {
            mapping.EMAILS: client.crm.objects.emails,
            mapping.COMMUNICATIONS: client.crm.objects.communications,
        }
        self._basic = {lane: api.basic_api for lane, api in self._apis.items()}
        self._batch = {lane: api.batch_api for lane, api in self._apis.items()}
        self._search = {lane: api.search_api for lane, api in self._apis.items()}

    def lane(self, activity: Activity) -> str:
        return mapping.object_type(activity)

    def check(self, activity: Activity) -> list[Problem]:
        return mapping.check(activity)

    def send(self, lane: str, activities: Sequence[Activity]) -> Sent:
        """One create for one activity, a batch create for several."""
        if len(activities) == 1:
            return self._create_one(lane, activities[0])
        return self._create_batch(lane, activities)

    def _create_one(self, lane: str, activity: Activity) -> Sent:
        body = mapping.create_input(activity, self._dedupe)
        created, headers = self._call(
            "create",
            self._basic[lane].create,
            simple_public_object_input_for_create=body,
        )
        return Sent([str(created["id"])], read_limits(headers))

    def _create_batch(self, lane: str, activities: Sequence[Activity]) -> Sent:
        inputs = [mapping.batch_input(a, self._dedupe) for a in activities]
        answer, headers = self._call(
            "batch create",
            self._batch[lane].create,
            batch_input_simple_public_object_batch_input_for_create={"inputs": inputs},
        )
        by_trace: dict[str, str | CrmError] = {
            str(result.get("objectWriteTraceId")): str(result["id"])
            for result in answer.get("results") or []
        }
        for failure in answer.get("errors") or []:
            for trace in (failure.get("context") or {}).get("objectWriteTraceId", []):
                by_trace[trace] = _rejected_input(failure)
        missing = CrmInDoubt(
            "HubSpot answered a batch without this input.",
            backend=self.name,
            operation="batch create",
            status=207,
        )
        results = [by_trace.get(a.key_hash, missing) for a in activities]
        return Sent(results, read_limits(headers))

    def _call(
        self, operation: str, method: Any, **arguments: Any
    ) -> tuple[dict[str, Any], Mapping[str, str]]:
        """Call the SDK for the raw answer: its JSON as a dict, and its headers.

        The SDK's own models are skipped: building them (a date parser per
        timestamp, on every result of a batch) costs more than the rest of the
        bridge's work, and the bridge reads three fields.
        """
        try:
            answer = method(
                _preload_content=False, _request_timeout=self._timeouts, **arguments
            )
            try:
                body = json.loads(answer.data)
            finally:
                answer.release_conn()
        except Exception as error:
            raise self.translate(error, operation) from None
        if not isinstance(body, dict):
            raise CrmInDoubt(
                "HubSpot answered without an object.",
                backend=self.name,
                operation=operation,
                status=int(answer.status),
            )
        return body, answer.headers

    def find(self, lane: str, activities: Sequence[Activity]) -> dict[str, str]:
        """Look activities up by the dedupe property the bridge fills."""
        if not self._dedupe:
            return {}
        return self._search_keys(lane, [a.key_hash for a in activities])

    def _search_keys(self, lane: str, key_hashes: list[str]) -> dict[str, str]:
        """Objects whose dedupe property holds one of ``key_hashes``, every page
        of them (an earlier duplicate can make more objects than keys)."""
        request: dict[str, Any] = {
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": self._dedupe,
                            "operator": "IN",
                            "values": key_hashes,
                        }
                    ]
                }
            ],
            "properties": [self._dedupe],
            "limit": SEARCH_PAGE,
        }
        found: dict[str, str] = {}
        while True:
            page, _ = self._call(
                "search",
                self._search[lane].do_search,
                public_object_search_request=request,
            )
            for result in page.get("results") or []:
                key_hash = (result.get("properties") or {}).get(self._dedupe)
                found.setdefault(str(key_hash), str(result["id"]))
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                return found
            request["after"] = after

    def probe(self) -> None:
        """Read one e-mail (the token and its scope), and search by the dedupe
        property when one is set (it exists on both objects)."""
        try:
            self._basic[mapping.EMAILS].get_page(
                limit=1, _request_timeout=self._timeouts
            )
        except Exception as error:
            raise self.translate(error, "read") from None
        if not self._dedupe:
            return
        for lane in self._search:
            self._search_keys(lane, ["0" * 64])

    def close(self) -> None:
        for api in self._basic.values():
            api.api_client.rest_client.pool_manager.clear()

    def translate(self, error: Exception, operation: str) -> CrmError:
        """The one place where SDK and network exceptions become bridge errors."""
        where: dict[str, Any] = {"backend": self.name, "operation": operation}
        if isinstance(error, _API_ERRORS):
            return self._translate_answer(error, where)
        # Refused, unresolvable or timed out while connecting: nothing was sent.
        if isinstance(error, urllib3.exceptions.ConnectTimeoutError):
            return CrmUnavailable(
                "HubSpot could not be reached.", code=type(error).__name__, **where
            )
        # A read timeout, a dropped connection, an answer the SDK could not
        # parse: the request left, so HubSpot may have written the object.
        return CrmInDoubt(
            "HubSpot's answer was lost.", code=type(error).__name__, **where
        )

    def _translate_answer(self, error: Any, where: dict[str, Any]) -> CrmError:
        status = int(error.status or 0)
        body = _json(error.body)
        limits = read_limits(error.headers or {})
        code = str(body.get("category") or body.get("policyName") or "")
        if status == 0:
            return CrmUnavailable("HubSpot could not be reached.", code="TLS", **where)
        if status == 429:
            return self._throttled(body, error.headers or {}, limits, where)
        if status in (401, 403):
            return CrmAuthError(
                "HubSpot refused the access token or its scopes.",
                status=status,
                code=code,
                **where,
            )
        if status >= 500:
            return CrmInDoubt(
                "HubSpot failed while writing.", status=status, code=code, **where
            )
        codes, fields = _details(body)
        return CrmRejected(
            "HubSpot rejected the activity.",
            status=status,
            code=codes or code,
            fields=fields,
            **where,
        )

    def _throttled(
        self,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        limits: Limits | None,
        where: dict[str, Any],
    ) -> CrmError:
        policy = str(body.get("policyName") or "")
        if policy == "DAILY":
            return CrmQuotaExhausted(
                "HubSpot's daily request limit is spent.",
                status=429,
                code=policy,
                retry_after=self._until_midnight(),
                limits=limits,
                **where,
            )
        wait = _retry_after(headers)
        if wait is None and limits is not None and limits.interval:
            wait = limits.interval
        return CrmThrottled(
            "HubSpot's rate limit was hit.",
            status=429,
            code=policy,
            retry_after=wait if wait is not None else _TEN_SECONDS,
            limits=limits,
            **where,
        )

    def _until_midnight(self) -> float:
        now = datetime.now(self._zone)
        midnight = (now + timedelta(days=1)).replace(
            hour=0, minute=0, second=0, microsecond=0
        )
        return (midnight - now).total_seconds()


def read_limits(headers: Mapping[str, str] | None) -> Limits | None:
    """The ``X-HubSpot-RateLimit-*`` headers, when the answer has them."""
    if not headers:
        return None
    lower = {name.lower(): value for name, value in headers.items()}

    def number(name: str) -> int | None:
        value = lower.get(f"x-hubspot-ratelimit-{name}")
        return int(value) if value and value.isdigit() else None

    interval = number("interval-milliseconds")
    limits = Limits(
        max=number("max"),
        remaining=number("remaining"),
        interval=interval / 1000 if interval else None,
        daily_remaining=number("daily-remaining"),
    )
    return None if limits == Limits() else limits


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


def _json(body: Any) -> dict[str, Any]:
    try:
        parsed = json.loads(body) if body else {}
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _details(body: Mapping[str, Any]) -> tuple[str, tuple[str, ...]]:
    """Error codes and property names of a HubSpot error body: no values."""
    codes: list[str] = []
    fields: list[str] = []
    for detail in body.get("errors") or []:
        if not isinstance(detail, dict):
            continue
        if detail.get("code"):
            codes.append(str(detail["code"]))
        context = detail.get("context")
        if isinstance(context, dict):
            fields.extend(str(name) for name in context.get("propertyName") or [])
    return ",".join(dict.fromkeys(codes)), tuple(dict.fromkeys(fields))


def _rejected_input(failure: Mapping[str, Any]) -> CrmRejected:
    codes, fields = _details(failure)
    return CrmRejected(
        "HubSpot rejected the activity.",
        backend="hubspot",
        operation="batch create",
        status=400,
        code=codes or str(failure.get("category") or ""),
        fields=fields,
    )
