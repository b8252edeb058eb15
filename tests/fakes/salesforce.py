"""A fake of the Salesforce REST API and OAuth token endpoint, for Tasks.

Served over TLS by ``tests.fakes.server.serve`` and driven through the real
``simple-salesforce`` and ``requests``, it checks what the bridge depends on:

* OAuth 2.0 token endpoint: client-credentials grant (form fields or HTTP Basic)
  and JWT bearer grant (RS256, ``iss``/``sub``/``aud``/``exp`` verified); the
  error bodies use the OAuth ``error``/``error_description`` shape;
* every ``/services/data/vNN.N`` call needs a live bearer token (401
  ``INVALID_SESSION_ID``), counts against a daily API limit reported in
  ``Sforce-Limit-Info`` (403 ``REQUEST_LIMIT_EXCEEDED`` once spent) and,
  optionally, against a concurrent-request limit;
* Task create, upsert and read by external id, sObject Collections create and
  upsert (200-record cap, ``allOrNone`` roll-back, duplicate keys in one
  request), ``/limits``;
* Task field rules (see ``salesforce_validation``): unknown fields, JSON types,
  lengths, restricted picklists, id shape, references to seeded records, the
  Lead-with-WhatId integrity rule, TaskSubtype being create-only; a body that
  fails to deserialize fails a whole collection request, a record that fails to
  save fails only itself; 15-character ids are stored as 18.

Tests steer it through its attributes: ``next_replies`` (canned answers for the
next data requests), ``expire_tokens()``, the seeded ``contact_ids``,
``lead_ids``, ``account_ids`` and ``user_ids``, and read ``tasks``, ``calls``,
``api_used`` and ``token_requests``.

Where it is only an approximation:

* only Tasks are stored; Contacts, Leads, Accounts and Users are seeded ids that
  Tasks may point at, and other sObject types or resources answer 404;
* the concurrency limit counts every request in flight (``transaction_seconds``
  stands in for the work); Salesforce counts only requests running over 20 s;
* error messages follow Salesforce's wording but never echo submitted values,
  and some codes are the closest documented ones rather than verified answers
  (a bad date is a JSON_PARSER_ERROR, a missing external id MISSING_ARGUMENT);
* standard Task fields outside the supported list are reported as unknown;
  external id values match case-sensitively; an existing id of the wrong
  object type is INVALID_CROSS_REFERENCE_KEY, where Salesforce may answer
  FIELD_INTEGRITY_EXCEPTION; Priority accepts any value, like an unrestricted
  picklist;
* a request without a valid token is neither counted nor given a usage header;
  OAuth errors are ``invalid_client`` or ``invalid_grant`` only (Salesforce also
  has ``invalid_client_id``), and the JWT ``exp`` is not held to three minutes;
* before API 46.0 an upsert that updates answers 204 and the collection upsert
  does not exist, as in Salesforce; other version differences are not modelled.
"""

from __future__ import annotations

import collections
import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from tests.fakes.salesforce_oauth import ConnectedApp
from tests.fakes.salesforce_tasks import Call, TaskStore
from tests.fakes.salesforce_validation import (
    NOT_FOUND,
    TASK_PRIORITIES,
    TASK_STATUSES,
    TASK_SUBTYPES,
    Directory,
    RequestRejected,
    SfError,
    TaskRules,
    make_id,
    refusal,
    to_18,
)
from tests.fakes.server import Reply, Request

ORG_ID = to_18("00D000000000001")
DEFAULT_TOKEN = "00D000000000001!test-token"
TOKEN_PATH = "/services/oauth2/token"

_DATA_PATH = re.compile(r"/services/data/v(?P<version>\d+\.\d+)(?P<rest>/.*)?")
_INVALID_SESSION = SfError("INVALID_SESSION_ID", "Session expired or invalid")
_TOTAL_LIMIT = SfError("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.")
_CONCURRENT_LIMIT = SfError(
    "REQUEST_LIMIT_EXCEEDED", "ConcurrentPerOrgLongTxn Limit exceeded."
)
_SERVER_ERRORS = (
    refusal(
        500,
        SfError(
            "UNKNOWN_EXCEPTION",
            "An unexpected error occurred. Please include this ErrorId if you"
            " contact support: 1234567890-12345 (-987654321)",
        ),
    ),
    # What a load balancer in front of the instance sends: no JSON at all.
    Reply(502),
    refusal(
        503,
        SfError(
            "SERVER_UNAVAILABLE",
            "The server is temporarily unable to service your request."
            " Please try again later.",
        ),
    ),
)


class FakeSalesforce:
    """An in-memory Salesforce org that stores Tasks; see the module docstring.

    The keyword arguments configure the connected app (``client_id``,
    ``client_secret``, ``jwt_*``), the live access ``tokens``, the daily API
    allowance (``daily_api_limit``, ``api_used``), the concurrent-request limit
    (``max_concurrency``; ``transaction_seconds`` is how long each data request
    holds its slot before it is processed), the Task External ID field and the
    picklist values.

    All state is guarded by ``lock``; take it to read ``tasks``, ``calls``,
    ``api_used`` or ``token_requests`` while requests may still be running.
    Set ``base_url`` once served: the token endpoint answers it as instance_url.
    """

    def __init__(
        self,
        *,
        client_id: str = "3MVG9-test-client",
        client_secret: str = "test-secret",  # noqa: S107
        jwt_public_key: bytes | None = None,
        jwt_username: str = "bridge@example.com",
        jwt_audience: str = "https://login.salesforce.com",
        tokens: set[str] | None = None,
        daily_api_limit: int = 15000,
        api_used: int = 0,
        max_concurrency: int | None = None,
        transaction_seconds: float = 0.0,
        external_id_field: str | None = None,
        task_statuses: Iterable[str] = TASK_STATUSES,
        task_subtypes: Iterable[str] = TASK_SUBTYPES,
        task_priorities: Iterable[str] = TASK_PRIORITIES,
    ) -> None:
        self.app = ConnectedApp(
            client_id, client_secret, jwt_public_key, jwt_username, jwt_audience
        )
        self.tokens = {DEFAULT_TOKEN} if tokens is None else set(tokens)
        self.daily_api_limit = daily_api_limit
        self.api_used = api_used
        self.max_concurrency = max_concurrency
        self.transaction_seconds = transaction_seconds
        self.base_url = "https://127.0.0.1"
        self.contact_ids = [make_id("003", n, "CoNtA") for n in range(1, 4)]
        self.lead_ids = [make_id("00Q", n, "LeAdS") for n in range(1, 3)]
        self.account_ids = [make_id("001", n, "AcCtS") for n in range(1, 3)]
        self.user_ids = [make_id("005", n, "UsErS") for n in range(1, 3)]
        directory = Directory(
            self.contact_ids, self.lead_ids, self.account_ids, self.user_ids
        )
        rules = TaskRules(
            external_id_field,
            frozenset(task_statuses),
            frozenset(task_subtypes),
            frozenset(task_priorities),
        )
        self.store = TaskStore(rules, directory)
        self.tasks = self.store.tasks
        self.next_replies: collections.deque[Reply] = collections.deque()
        self.calls: collections.Counter[str] = collections.Counter()
        self.token_requests = 0
        self.lock = threading.Lock()
        self._in_flight = 0
        self._seed_serial = itertools.count(10)
        self._server_errors = itertools.cycle(_SERVER_ERRORS)

    @property
    def external_id_field(self) -> str | None:
        """The Task External ID field upserts may use, if any."""
        return self.store.rules.external_id_field

    @property
    def rules(self) -> TaskRules:
        """The Task field rules: picklist values, lengths, the external id."""
        return self.store.rules

    def expire_tokens(self) -> None:
        """Invalidate every access token issued or seeded so far."""
        with self.lock:
            self.tokens.clear()

    def add_contact(self) -> str:
        """Seed one more Contact; return its id."""
        return self._seed(self.contact_ids, "003", "CoNtA")

    def add_lead(self) -> str:
        """Seed one more Lead; return its id."""
        return self._seed(self.lead_ids, "00Q", "LeAdS")

    def add_account(self) -> str:
        """Seed one more Account; return its id."""
        return self._seed(self.account_ids, "001", "AcCtS")

    def add_user(self) -> str:
        """Seed one more User; return its id."""
        return self._seed(self.user_ids, "005", "UsErS")

    def throttled(self) -> Reply:
        """The concurrent-request refusal, the limit callers may retry."""
        return refusal(403, _CONCURRENT_LIMIT)

    def server_error(self) -> Reply:
        """A 500, 502 or 503, in rotation."""
        with self.lock:
            reply = next(self._server_errors)
        return Reply(reply.status, reply.body, dict(reply.headers))

    def handle(self, request: Request) -> Reply:
        """Answer one request as Salesforce would."""
        if request.path == TOKEN_PATH and request.method == "POST":
            self._count(f"POST {TOKEN_PATH}")
            return self._token(request)
        found = _DATA_PATH.fullmatch(request.path)
        if found is None:
            self._count(f"{request.method} {request.path}")
            return refusal(404, NOT_FOUND)
        rest = found["rest"] or "/"
        route, params, allowed = _route(request.method, rest)
        template = route.template if route else rest
        self._count(f"{request.method} /services/data/vXX.X{template}")
        if not self._authorized(request):
            return refusal(401, _INVALID_SESSION)
        call = Call(request, found["version"], params)
        return self._with_usage(self._metered(call, route, allowed))

    def _seed(self, ids: list[str], prefix: str, tag: str) -> str:
        with self.lock:
            new_id = make_id(prefix, next(self._seed_serial), tag)
            ids.append(new_id)
        return new_id

    def _count(self, key: str) -> None:
        with self.lock:
            self.calls[key] += 1

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = (request.header("authorization") or "").partition(" ")
        with self.lock:
            return scheme.lower() in ("bearer", "oauth") and token in self.tokens

    def _metered(self, call: Call, route: _Route | None, allowed: list[str]) -> Reply:
        with self.lock:
            canned = self.next_replies.popleft() if self.next_replies else None
            exhausted = self.api_used >= self.daily_api_limit
            if not exhausted:
                self.api_used += 1
        if canned is not None:
            return Reply(canned.status, canned.body, dict(canned.headers))
        if exhausted:
            return refusal(403, _TOTAL_LIMIT)
        if route is None:
            return _no_route(call, allowed)
        return self._in_slot(call, route)

    def _in_slot(self, call: Call, route: _Route) -> Reply:
        with self.lock:
            limit = self.max_concurrency
            if limit is not None and self._in_flight >= limit:
                return refusal(403, _CONCURRENT_LIMIT)
            self._in_flight += 1
        try:
            # Waiting here, not in Faults.latency, keeps the slot taken meanwhile.
            time.sleep(self.transaction_seconds)
            with self.lock:
                return route.action(self, call)
        except RequestRejected as rejected:
            return refusal(400, rejected.error)
        finally:
            with self.lock:
                self._in_flight -= 1

    def _with_usage(self, reply: Reply) -> Reply:
        with self.lock:
            usage = f"api-usage={self.api_used}/{self.daily_api_limit}"
        headers = {**reply.headers, "Sforce-Limit-Info": usage}
        return Reply(reply.status, reply.body, headers)

    def _token(self, request: Request) -> Reply:
        with self.lock:
            self.token_requests += 1
        refused = self.app.refusal(request)
        if refused is not None:
            error, description = refused
            return Reply(400, {"error": error, "error_description": description})
        token = f"{ORG_ID[:15]}!{secrets.token_urlsafe(32)}"
        with self.lock:
            self.tokens.add(token)
        body = self.app.answer(token, self.base_url, self.user_ids[0], ORG_ID)
        return Reply(200, body)

    def _limits(self, call: Call) -> Reply:
        remaining = self.daily_api_limit - self.api_used
        limits = {"Max": self.daily_api_limit, "Remaining": remaining}
        return Reply(200, {"DailyApiRequests": limits})


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    template: str
    action: Callable[[FakeSalesforce, Call], Reply]


def _task_route(
    method: str, pattern: str, template: str, action: Callable[[TaskStore, Call], Reply]
) -> _Route:
    return _Route(
        method,
        re.compile(pattern),
        template,
        lambda fake, call: action(fake.store, call),
    )


_TASK_BY_KEY = r"/sobjects/Task/(?P<field>[^/]+)/(?P<value>[^/]+)/?"
_ROUTES = (
    _task_route("POST", r"/sobjects/Task/?", "/sobjects/Task", TaskStore.create),
    _task_route(
        "PATCH", _TASK_BY_KEY, "/sobjects/Task/{field}/{value}", TaskStore.upsert
    ),
    _task_route("GET", _TASK_BY_KEY, "/sobjects/Task/{field}/{value}", TaskStore.get),
    _task_route(
        "POST",
        r"/composite/sobjects/?",
        "/composite/sobjects",
        TaskStore.create_collection,
    ),
    _task_route(
        "PATCH",
        r"/composite/sobjects/Task/(?P<field>[^/]+)/?",
        "/composite/sobjects/Task/{field}",
        TaskStore.upsert_collection,
    ),
    _Route("GET", re.compile(r"/limits/?"), "/limits", FakeSalesforce._limits),
)


def _route(method: str, rest: str) -> tuple[_Route | None, dict[str, str], list[str]]:
    """The route for ``rest``, its path fields, and the methods the path allows."""
    allowed = []
    for route in _ROUTES:
        found = route.pattern.fullmatch(rest)
        if found is None:
            continue
        if route.method == method:
            return route, found.groupdict(), []
        allowed.append(route.method)
    return None, {}, allowed


def _no_route(call: Call, allowed: list[str]) -> Reply:
    if not allowed:
        return refusal(404, NOT_FOUND)
    message = (
        f"HTTP Method '{call.request.method}' not allowed."
        f" Allowed are {','.join(allowed)}"
    )
    return refusal(405, SfError("METHOD_NOT_ALLOWED", message))
