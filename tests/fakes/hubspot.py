"""A fake of HubSpot's CRM v3 API for the "emails" and "communications" objects.

Served by :func:`tests.fakes.server.serve`, it answers the official
``hubspot-api-client`` SDK over real HTTP on three endpoints per object type:

* ``POST /crm/v3/objects/{type}``: create one object (201);
* ``POST /crm/v3/objects/{type}/batch/create``: create 1 to 100 objects, in
  all-or-nothing mode (400 if any input is invalid) or, when every input has a
  distinct ``objectWriteTraceId``, in multi-status mode (201, or 207 listing the
  failed inputs by trace id); results come back in reverse input order because
  HubSpot promises no order and callers must match them by trace id;
* ``POST /crm/v3/objects/{type}/search``: ``EQ``/``IN`` filters, eventually
  consistent after ``search_delay`` seconds.

What it checks: bearer tokens; property names, option sets, required
properties, value types and lengths, timestamps, owner ids (see
:mod:`tests.fakes.hubspot_validation`); association categories, type ids and
targets; batch and search bounds (see :mod:`tests.fakes.hubspot_search`); the
ten-secondly rolling, daily and search-per-second rate limits, with HubSpot's
rate-limit headers (see :mod:`tests.fakes.hubspot_limits`). Answers carry every
field the SDK's response models mark as required, although the SDK (v12) only
enforces that when ``client_side_validation`` is switched on.

Where it only approximates HubSpot: the error codes and messages beyond the
documented ones are the fake's choice; messages never echo property values
(HubSpot's sometimes do); all answers carry the rate-limit headers, search
answers included; rejected requests do not use up rate-limit quota; unknown
routes and object types get a JSON 404; objects are never archived, updated
or read back by id; ``hs_createdate`` and ``hs_lastmodifieddate`` are the same.
"""

from __future__ import annotations

import collections
import copy
import itertools
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from tests.fakes.hubspot_limits import RateLimits
from tests.fakes.hubspot_search import SearchError, parse_search
from tests.fakes.hubspot_validation import (
    OBJECT_TYPES,
    SYSTEM_PROPERTIES,
    Checked,
    Problem,
    Validator,
    describe,
    summary,
)
from tests.fakes.server import Reply, Request

DEFAULT_TOKEN = "pat-na1-test"
FIRST_ID = 50_000_000_001
MAX_BATCH_INPUTS = 100

_ROUTE = re.compile(
    r"/crm/v3/objects/(?P<type>[^/]+)(?P<action>/batch/create|/search)?"
)
_SERVER_ERRORS = {
    500: "Internal error",
    502: "Bad gateway",
    503: "Service unavailable",
    504: "Gateway timeout",
}
_AUTH_MESSAGE = (
    "Authentication credentials not found. This API supports OAuth 2.0 "
    "authentication and you can find more details at "
    "https://developers.hubspot.com/docs/methods/auth/oauth-overview"
)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _error(status: int, message: str, category: str, **extra: Any) -> Reply:
    body = {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
        **extra,
    }
    return Reply(status, body)


def _invalid(problems: list[Problem], message: str) -> Reply:
    details = [problem.detail() for problem in problems]
    return _error(400, message, "VALIDATION_ERROR", errors=details)


class FakeHubSpot:
    """HubSpot's engagement endpoints for "emails" and "communications".

    All state is guarded by one lock, so tests may read ``objects``, ``calls``
    and :meth:`created` while the server threads answer requests. ``clock``
    (monotonic seconds) drives the rate-limit windows and search visibility, so
    a test can move time forward instead of sleeping.
    """

    def __init__(
        self,
        *,
        tokens: set[str] | None = None,
        requests_per_10s: int | None = None,
        daily_limit: int | None = None,
        search_per_second: int | None = 5,
        search_delay: float = 0.0,
        custom_properties: set[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tokens = {DEFAULT_TOKEN} if tokens is None else set(tokens)
        self.search_delay = search_delay
        self.throttle_retry_after: int | None = None
        self.rate_limited = 0
        self.custom_properties = set(custom_properties or ())
        self.contacts = {"101", "102", "103"}
        self.companies = {"201", "202"}
        self.owners = {"301", "302"}
        self.next_replies: collections.deque[Reply] = collections.deque()
        self.objects: dict[str, dict[str, dict[str, Any]]] = {
            object_type: {} for object_type in OBJECT_TYPES
        }
        self.calls: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._clock = clock
        self._ids = itertools.count(FIRST_ID)
        self._born: dict[str, float] = {}
        self._limits = RateLimits(
            requests_per_10s, daily_limit, search_per_second, clock
        )
        self._server_errors = itertools.cycle(_SERVER_ERRORS)
        known = {"contacts": self.contacts, "companies": self.companies}
        self._validator = Validator(
            self.custom_properties, known | {"owners": self.owners}
        )

    # -- test helpers --------------------------------------------------------

    def add_contact(self, contact_id: str) -> None:
        """Make a contact id exist, as an association target."""
        with self._lock:
            self.contacts.add(contact_id)

    def add_company(self, company_id: str) -> None:
        """Make a company id exist, as an association target."""
        with self._lock:
            self.companies.add(company_id)

    def add_owner(self, owner_id: str) -> None:
        """Make an owner id valid for ``hubspot_owner_id``."""
        with self._lock:
            self.owners.add(owner_id)

    def created(self, object_type: str) -> list[dict[str, Any]]:
        """Copies of the stored records of one type, oldest first."""
        with self._lock:
            records = self.objects[object_type].values()
            return [copy.deepcopy(record) for record in records]

    # -- the Fake protocol ---------------------------------------------------

    def handle(self, request: Request) -> Reply:
        """Answer one API request."""
        with self._lock:
            self.calls[f"{request.method} {request.path}"] += 1
            reply = self._answer(request)
            headers = self._limits.headers() | reply.headers
            return Reply(reply.status, reply.body, headers)

    def throttled(self) -> Reply:
        """The ten-secondly 429, with the headers of an exhausted window, and a
        ``Retry-After`` when ``throttle_retry_after`` is set (HubSpot sends one
        only sometimes)."""
        with self._lock:
            reply = self._limits.exhausted()
        if self.throttle_retry_after is not None:
            reply.headers["Retry-After"] = str(self.throttle_retry_after)
        return reply

    def server_error(self) -> Reply:
        """A 500, 502, 503 or 504 in turn, with HubSpot's JSON error body."""
        with self._lock:
            status = next(self._server_errors)
            reply = _error(status, _SERVER_ERRORS[status], "INTERNAL_ERROR")
            return Reply(reply.status, reply.body, self._limits.headers())

    # -- request flow --------------------------------------------------------

    def _answer(self, request: Request) -> Reply:
        if not self._authorized(request):
            return _error(401, _AUTH_MESSAGE, "INVALID_AUTHENTICATION")
        if self.next_replies:
            return self.next_replies.popleft()
        route = _ROUTE.fullmatch(request.path) if request.method == "POST" else None
        action = route["action"] if route else None
        limited = self._limits.charge(search=action == "/search")
        if limited is not None:
            self.rate_limited += 1
            return limited
        if route is None:
            message = f"No endpoint for {request.method} {request.path}."
            return _error(404, message, "OBJECT_NOT_FOUND")
        object_type = route["type"]
        if object_type not in OBJECT_TYPES:
            message = f"Unable to infer object type from: {object_type}"
            return _error(404, message, "OBJECT_NOT_FOUND")
        return self._dispatch(object_type, action, request)

    def _authorized(self, request: Request) -> bool:
        value = request.header("Authorization") or ""
        scheme, _, token = value.partition(" ")
        return scheme == "Bearer" and token in self.tokens

    def _dispatch(
        self, object_type: str, action: str | None, request: Request
    ) -> Reply:
        try:
            body = request.json()
        except ValueError:
            return _error(
                400, "Invalid input JSON: the body is not JSON.", "VALIDATION_ERROR"
            )
        if not isinstance(body, dict):
            return _error(
                400, "Invalid input JSON: expected an object.", "VALIDATION_ERROR"
            )
        if action == "/batch/create":
            return self._create_batch(object_type, body)
        if action == "/search":
            return self._search(object_type, body)
        return self._create_one(object_type, body)

    # -- endpoints -----------------------------------------------------------

    def _create_one(self, object_type: str, body: dict[str, Any]) -> Reply:
        checked = self._validator.check(object_type, body)
        if checked.problems:
            return _invalid(checked.problems, summary(checked.problems))
        return Reply(201, _public(self._store(object_type, checked)))

    def _create_batch(self, object_type: str, body: dict[str, Any]) -> Reply:
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not 1 <= len(inputs) <= MAX_BATCH_INPUTS:
            message = f"inputs must hold between 1 and {MAX_BATCH_INPUTS} items."
            problem = Problem("INVALID_BATCH_SIZE", message, "inputs")
            return _invalid([problem], message)
        started = _now_iso()
        checked = [self._validator.check(object_type, item) for item in inputs]
        trace_ids = _distinct_trace_ids(inputs)
        if trace_ids is not None:
            return self._create_multi_status(object_type, checked, trace_ids, started)
        invalid = [(index, item) for index, item in enumerate(checked) if item.problems]
        if invalid:
            # All or nothing: one bad input refuses the batch, as HubSpot does.
            problems = [problem for _, item in invalid for problem in item.problems]
            parts = [describe(item.problems, f"inputs[{i}].") for i, item in invalid]
            return _invalid(problems, "Input was not valid: " + "; ".join(parts))
        results = [
            _public(self._store(object_type, item), _trace_id(raw))
            for item, raw in zip(checked, inputs, strict=True)
        ]
        return Reply(201, _batch_body(results, started))

    def _create_multi_status(
        self,
        object_type: str,
        checked: list[Checked],
        trace_ids: list[str],
        started: str,
    ) -> Reply:
        results: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for item, trace_id in zip(checked, trace_ids, strict=True):
            if item.problems:
                errors.append(_input_error(item.problems, trace_id))
            else:
                record = self._store(object_type, item)
                results.append(_public(record, trace_id))
        body = _batch_body(results, started)
        if not errors:
            return Reply(201, body)
        return Reply(207, body | {"numErrors": len(errors), "errors": errors})

    def _search(self, object_type: str, body: dict[str, Any]) -> Reply:
        try:
            search = parse_search(body, self._validator.searchable(object_type))
        except SearchError as error:
            detail = {"message": error.message, "code": error.code}
            return _error(400, error.message, "VALIDATION_ERROR", errors=[detail])
        horizon = self._clock() - self.search_delay
        visible = [
            record
            for record in self.objects[object_type].values()
            if self._born[record["id"]] <= horizon
        ]
        found = [r for r in visible if search.matches(_all_properties(r))]
        end = search.offset + search.limit
        page = [_public(r, names=search.properties) for r in found[search.offset : end]]
        answer: dict[str, Any] = {"total": len(found), "results": page}
        if end < len(found):
            answer["paging"] = {"next": {"after": str(end)}}
        return Reply(200, answer)

    # -- records -------------------------------------------------------------

    def _store(self, object_type: str, checked: Checked) -> dict[str, Any]:
        object_id = str(next(self._ids))
        record = {
            "id": object_id,
            "properties": dict(checked.properties),
            "associations": list(checked.associations),
            "createdAt": _now_iso(),
        }
        self.objects[object_type][object_id] = record
        self._born[object_id] = self._clock()
        return record


def _public(
    record: dict[str, Any],
    trace_id: str | None = None,
    names: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The SimplePublicObject JSON of a record.

    With ``names`` (a search), only those and the system properties are
    returned, unset ones as null, as HubSpot does.
    """
    properties = _all_properties(record)
    if names is not None:
        wanted = sorted(set(names) | SYSTEM_PROPERTIES)
        properties = {name: properties.get(name) for name in wanted}
    public = {
        "id": record["id"],
        "properties": properties,
        "createdAt": record["createdAt"],
        "updatedAt": record["createdAt"],
        "archived": False,
    }
    if trace_id is not None:
        public["objectWriteTraceId"] = trace_id
    return public


def _all_properties(record: dict[str, Any]) -> dict[str, str | None]:
    return {
        **record["properties"],
        "hs_object_id": record["id"],
        "hs_createdate": record["createdAt"],
        "hs_lastmodifieddate": record["createdAt"],
    }


def _trace_id(item: Any) -> str | None:
    trace_id = item.get("objectWriteTraceId") if isinstance(item, dict) else None
    return trace_id if isinstance(trace_id, str) and trace_id else None


def _distinct_trace_ids(inputs: list[Any]) -> list[str] | None:
    """Every input's trace id if all are present and distinct, else None."""
    trace_ids = [_trace_id(item) for item in inputs]
    present = [trace_id for trace_id in trace_ids if trace_id is not None]
    if len(present) != len(inputs) or len(set(present)) != len(present):
        return None
    return present


def _batch_body(results: list[dict[str, Any]], started: str) -> dict[str, Any]:
    return {
        "status": "COMPLETE",
        # Reversed on purpose: callers must match results by objectWriteTraceId.
        "results": results[::-1],
        "startedAt": started,
        "completedAt": _now_iso(),
    }


def _input_error(problems: list[Problem], trace_id: str) -> dict[str, Any]:
    """One entry of a 207's ``errors``; the SDK's StandardError needs ``links``."""
    return {
        "status": "error",
        "category": "VALIDATION_ERROR",
        "message": summary(problems),
        "context": {"objectWriteTraceId": [trace_id]},
        "errors": [problem.detail() for problem in problems],
        "links": {},
    }
