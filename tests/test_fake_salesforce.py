"""The Salesforce fake answers like the real API, seen through simple-salesforce.

Every test talks HTTPS to a served fake with the real SDK (or ``requests`` for
the token endpoint), so status codes, error bodies and headers are checked in
the form the bridge will meet them.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import datetime as dt
import hashlib
import hmac
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol, cast
from unittest import mock

import jwt
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
    SalesforceResourceNotFound,
)
from simple_salesforce.util import Usage

from tests.fakes.salesforce import DEFAULT_TOKEN, ORG_ID, TOKEN_PATH, FakeSalesforce
from tests.fakes.server import Faults, Reply, serve
from tests.fakes.tls import TlsMaterial, build_tls

KEY = "Enginy_Key__c"
CLIENT_ID = "3MVG9-test-client"
CLIENT_SECRET = "test-secret"
USERNAME = "bridge@example.com"
AUDIENCE = "https://login.salesforce.com"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
CONCURRENT = "ConcurrentPerOrgLongTxn Limit exceeded."


@dataclass
class Org:
    """A served fake, the HTTPS session trusting it, and the statuses it sent."""

    fake: FakeSalesforce
    base_url: str
    session: requests.Session
    statuses: list[int] = field(default_factory=list)

    def client(self, token: str = DEFAULT_TOKEN) -> Salesforce:
        """A simple-salesforce client on this org, as the bridge builds one."""
        return Salesforce(
            instance_url=self.base_url,
            session_id=token,
            session=self.session,
            version="62.0",
        )

    def request_token(self, form: dict[str, str]) -> requests.Response:
        """POST a form to the token endpoint."""
        return self.session.post(self.base_url + TOKEN_PATH, data=form, timeout=5)

    def record_status(self, response: requests.Response, *_: Any, **__: Any) -> None:
        """A requests response hook: remember the status the SDK got."""
        self.statuses.append(response.status_code)


class Launch(Protocol):
    """Serve a fake (with optional faults) for the rest of the test."""

    def __call__(self, fake: FakeSalesforce, faults: Faults | None = None) -> Org: ...


@dataclass(frozen=True)
class RsaKey:
    """A JWT signing key pair, PEM-encoded."""

    private_pem: bytes
    public_pem: bytes


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsMaterial:
    return build_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="session")
def rsa_key() -> RsaKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return RsaKey(private_pem, public_pem)


@pytest.fixture
def launch(tls: TlsMaterial) -> Iterator[Launch]:
    with contextlib.ExitStack() as stack:

        def start(fake: FakeSalesforce, faults: Faults | None = None) -> Org:
            base_url = stack.enter_context(serve(fake, faults, tls.server_context))
            fake.base_url = base_url
            session = stack.enter_context(requests.Session())
            session.verify = str(tls.ca_path)
            # REQUESTS_CA_BUNDLE in the environment would override Session.verify.
            session.trust_env = False
            org = Org(fake, base_url, session)
            session.hooks["response"].append(org.record_status)
            return org

        yield start


@pytest.fixture
def org(launch: Launch) -> Org:
    return launch(FakeSalesforce(external_id_field=KEY))


def content(error: SalesforceError) -> Any:
    """The error's body; annotated as bytes upstream, it holds parsed JSON."""
    return cast(Any, error.content)


def task(**fields: Any) -> dict[str, Any]:
    """A Task record as sObject Collections want it."""
    return {"attributes": {"type": "Task"}, **fields}


def assertion(private_pem: bytes, audience: str = AUDIENCE) -> str:
    """A signed JWT bearer assertion for the default connected app and user."""
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)
    claims = {"iss": CLIENT_ID, "sub": USERNAME, "aud": audience, "exp": expires}
    return jwt.encode(claims, private_pem, algorithm="RS256")


def test_token_client_credentials_grants_a_working_token(org: Org) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }

    response = org.request_token(form)
    body = response.json()
    created = org.client(body["access_token"]).restful(
        "sobjects/Task/", method="POST", json={"Subject": "Intro call"}
    )

    identity = f"https://login.salesforce.com/id/{ORG_ID}/{org.fake.user_ids[0]}"
    digest = hmac.new(
        CLIENT_SECRET.encode(),
        (identity + body["issued_at"]).encode(),
        hashlib.sha256,
    ).digest()
    assert response.status_code == 200
    assert body == {
        "access_token": mock.ANY,
        "instance_url": org.base_url,
        "id": identity,
        "token_type": "Bearer",
        "issued_at": mock.ANY,
        "signature": base64.b64encode(digest).decode(),
    }
    assert created == {"id": mock.ANY, "success": True, "errors": []}
    assert (org.fake.token_requests, org.fake.api_used) == (1, 1)


def test_token_client_credentials_accepts_http_basic(org: Org) -> None:
    response = org.session.post(
        org.base_url + TOKEN_PATH,
        data={"grant_type": "client_credentials"},
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=5,
    )

    assert response.status_code == 200
    assert response.json()["access_token"] in org.fake.tokens


def test_token_bad_secret_is_invalid_client(org: Org) -> None:
    form = {
        "grant_type": "client_credentials",
        "client_id": CLIENT_ID,
        "client_secret": "wrong",
    }

    response = org.request_token(form)

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_client",
        "error_description": "invalid client credentials",
    }
    assert org.fake.tokens == {DEFAULT_TOKEN}


def test_token_jwt_bearer_grants_a_working_token(
    launch: Launch, rsa_key: RsaKey
) -> None:
    org = launch(FakeSalesforce(jwt_public_key=rsa_key.public_pem))
    form = {"grant_type": JWT_GRANT, "assertion": assertion(rsa_key.private_pem)}

    response = org.request_token(form)
    limits = org.client(response.json()["access_token"]).limits()

    assert response.status_code == 200
    assert response.json()["instance_url"] == org.base_url
    assert limits == {"DailyApiRequests": {"Max": 15000, "Remaining": 14999}}


def test_token_jwt_bearer_wrong_audience_is_invalid_grant(
    launch: Launch, rsa_key: RsaKey
) -> None:
    org = launch(FakeSalesforce(jwt_public_key=rsa_key.public_pem))
    signed = assertion(rsa_key.private_pem, audience="https://test.salesforce.com")

    response = org.request_token({"grant_type": JWT_GRANT, "assertion": signed})

    assert response.status_code == 400
    assert response.json() == {
        "error": "invalid_grant",
        "error_description": "audience is invalid",
    }


def test_create_task_stores_fields_with_defaults(org: Org) -> None:
    fake = org.fake
    fields = {
        "Subject": "Email: intro",
        "Description": "Hello Ada",
        "ActivityDate": "2025-03-14",
        "Status": "Completed",
        "TaskSubtype": "Email",
        "WhoId": fake.contact_ids[0][:15],
        "WhatId": fake.account_ids[0],
    }

    result: Any = org.client().restful("sobjects/Task/", method="POST", json=fields)

    assert result == {"id": mock.ANY, "success": True, "errors": []}
    assert org.statuses == [201]
    assert fake.tasks == {
        result["id"]: {
            **fields,
            "WhoId": fake.contact_ids[0],
            "Priority": "Normal",
            "OwnerId": fake.user_ids[0],
            "CreatedDate": mock.ANY,
        }
    }


def test_create_task_lead_with_what_id_is_field_integrity_exception(org: Org) -> None:
    fields = {"WhoId": org.fake.lead_ids[0], "WhatId": org.fake.account_ids[0]}

    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().restful("sobjects/Task/", method="POST", json=fields)

    assert caught.value.status == 400
    assert content(caught.value) == [
        {
            "message": "Related To ID: a task whose Name ID is a lead cannot be"
            " related to another record",
            "errorCode": "FIELD_INTEGRITY_EXCEPTION",
            "fields": ["WhatId"],
        }
    ]
    assert org.fake.tasks == {}


def test_create_task_unknown_who_id_is_invalid_cross_reference(org: Org) -> None:
    fields = {"Subject": "Call", "WhoId": "0035g00000ZZZZZAAA"}

    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().restful("sobjects/Task/", method="POST", json=fields)

    assert caught.value.status == 400
    assert content(caught.value) == [
        {
            "message": "Name ID: invalid cross reference id",
            "errorCode": "INVALID_CROSS_REFERENCE_KEY",
            "fields": ["WhoId"],
        }
    ]


def test_create_task_malformed_owner_id_is_malformed_id(org: Org) -> None:
    fields = {"Subject": "Call", "OwnerId": "user-42"}

    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().restful("sobjects/Task/", method="POST", json=fields)

    assert caught.value.status == 400
    assert content(caught.value) == [
        {
            "message": "Assigned To ID: id value of incorrect type",
            "errorCode": "MALFORMED_ID",
            "fields": ["OwnerId"],
        }
    ]


def test_create_task_bad_status_is_restricted_picklist_error(org: Org) -> None:
    fields = {"Subject": "Call", "Status": "Done"}

    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().restful("sobjects/Task/", method="POST", json=fields)

    assert caught.value.status == 400
    assert content(caught.value) == [
        {
            "message": "Status: bad value for restricted picklist field",
            "errorCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
            "fields": ["Status"],
        }
    ]


def test_create_task_long_subject_is_string_too_long(org: Org) -> None:
    fields = {"Subject": "x" * 256}

    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().restful("sobjects/Task/", method="POST", json=fields)

    assert caught.value.status == 400
    assert content(caught.value) == [
        {
            "message": "Subject: data value too large (max length=255)",
            "errorCode": "STRING_TOO_LONG",
            "fields": ["Subject"],
        }
    ]


def test_create_task_unknown_field_is_invalid_field(org: Org) -> None:
    fields = {"Subject": "Call", "Campaign__c": "spring"}

    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().restful("sobjects/Task/", method="POST", json=fields)

    assert caught.value.status == 400
    assert content(caught.value) == [
        {
            "message": "No such column 'Campaign__c' on sobject of type Task",
            "errorCode": "INVALID_FIELD",
        }
    ]


def test_create_task_number_for_text_is_json_parser_error(org: Org) -> None:
    fields = {"Subject": 42}

    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().restful("sobjects/Task/", method="POST", json=fields)

    assert caught.value.status == 400
    assert content(caught.value) == [
        {
            "message": "Cannot deserialize instance of string from"
            " VALUE_NUMBER_INT value for field Subject",
            "errorCode": "JSON_PARSER_ERROR",
        }
    ]


def test_session_expired_token_is_invalid_session_id(org: Org) -> None:
    org.fake.expire_tokens()

    with pytest.raises(SalesforceExpiredSession) as caught:
        org.client().limits()

    assert caught.value.status == 401
    assert content(caught.value) == [
        {"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}
    ]
    assert org.fake.api_used == 0


def test_upsert_creates_then_updates_the_same_task(org: Org) -> None:
    sf = org.client()
    path = f"sobjects/Task/{KEY}/act-1"

    first: Any = sf.restful(path, method="PATCH", json={"Subject": "Sent"})
    second: Any = sf.restful(path, method="PATCH", json={"Subject": "Replied"})

    task_id = first["id"]
    assert first == {"id": task_id, "success": True, "errors": [], "created": True}
    assert second == {"id": task_id, "success": True, "errors": [], "created": False}
    assert org.statuses == [201, 200]
    assert org.fake.tasks[task_id]["Subject"] == "Replied"
    assert list(org.fake.tasks) == [task_id]
    assert org.fake.calls == {
        "PATCH /services/data/vXX.X/sobjects/Task/{field}/{value}": 2
    }


def test_upsert_update_with_task_subtype_is_not_updateable(org: Org) -> None:
    sf = org.client()
    path = f"sobjects/Task/{KEY}/act-1"
    sf.restful(path, method="PATCH", json={"TaskSubtype": "Email"})

    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful(path, method="PATCH", json={"TaskSubtype": "Call"})

    assert caught.value.status == 400
    assert content(caught.value) == [
        {
            "message": "Unable to create/update fields: TaskSubtype. Please check"
            " the security settings of this field and verify that it is"
            " read/write for your profile or permission set.",
            "errorCode": "INVALID_FIELD_FOR_INSERT_UPDATE",
            "fields": ["TaskSubtype"],
        }
    ]


def test_upsert_on_a_field_that_is_not_external_is_not_found(org: Org) -> None:
    with pytest.raises(SalesforceResourceNotFound) as caught:
        org.client().restful(
            "sobjects/Task/Subject/act-1", method="PATCH", json={"Status": "Completed"}
        )

    assert caught.value.status == 404
    assert content(caught.value) == [
        {"message": "The requested resource does not exist", "errorCode": "NOT_FOUND"}
    ]
    assert org.fake.tasks == {}


def test_get_by_external_id_lists_every_field(org: Org) -> None:
    sf = org.client()
    created: Any = sf.restful(f"sobjects/Task/{KEY}/act-1", method="PATCH", json={})

    record: Any = sf.restful(f"sobjects/Task/{KEY}/act-1")

    task_id = created["id"]
    assert record == {
        "attributes": {
            "type": "Task",
            "url": f"/services/data/v62.0/sobjects/Task/{task_id}",
        },
        "Id": task_id,
        "Subject": None,
        "Description": None,
        "ActivityDate": None,
        "Status": "Not Started",
        "Priority": "Normal",
        "TaskSubtype": None,
        "WhoId": None,
        "WhatId": None,
        "OwnerId": org.fake.user_ids[0],
        KEY: "act-1",
        "CreatedDate": mock.ANY,
    }


def test_collection_create_partial_success_keeps_input_order(org: Org) -> None:
    records = [
        task(Subject="first", WhoId=org.fake.contact_ids[0]),
        task(Subject="second", Status="Done"),
        task(Subject="third"),
    ]
    body = {"allOrNone": False, "records": records}

    results: Any = org.client().restful("composite/sobjects", method="POST", json=body)

    assert results == [
        {"id": mock.ANY, "success": True, "errors": []},
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    "message": "Status: bad value for restricted picklist field",
                    "fields": ["Status"],
                }
            ],
        },
        {"id": mock.ANY, "success": True, "errors": []},
    ]
    stored = {task_id: task["Subject"] for task_id, task in org.fake.tasks.items()}
    assert stored == {results[0]["id"]: "first", results[2]["id"]: "third"}


def test_collection_create_all_or_none_creates_nothing(org: Org) -> None:
    records = [task(Subject="first"), task(Subject="second", Status="Done")]
    body = {"allOrNone": True, "records": records}

    results: Any = org.client().restful("composite/sobjects", method="POST", json=body)

    assert results == [
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                    "message": "Record rolled back because not all records were"
                    " valid and the request was using AllOrNone header",
                    "fields": [],
                }
            ],
        },
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
                    "message": "Status: bad value for restricted picklist field",
                    "fields": ["Status"],
                }
            ],
        },
    ]
    assert org.fake.tasks == {}


def test_collection_unknown_field_rejects_the_whole_request(org: Org) -> None:
    body = {"records": [task(Subject="ok"), task(Campaign__c="spring")]}

    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().restful("composite/sobjects", method="POST", json=body)

    assert caught.value.status == 400
    assert content(caught.value) == [
        {
            "message": "No such column 'Campaign__c' on sobject of type Task",
            "errorCode": "INVALID_FIELD",
        }
    ]
    assert org.fake.tasks == {}


def test_collection_over_200_records_is_exceeded_id_limit(org: Org) -> None:
    body = {"records": [task(Subject=f"call {n}") for n in range(201)]}

    with pytest.raises(SalesforceMalformedRequest) as caught:
        org.client().restful("composite/sobjects", method="POST", json=body)

    assert caught.value.status == 400
    assert content(caught.value) == [
        {
            "message": "record limit reached. cannot submit more than 200 records"
            " into this call",
            "errorCode": "EXCEEDED_ID_LIMIT",
        }
    ]
    assert org.fake.tasks == {}


def test_collection_upsert_fails_duplicate_keys_only(org: Org) -> None:
    sf = org.client()
    existing: Any = sf.restful(f"sobjects/Task/{KEY}/k2", method="PATCH", json={})
    records = [
        task(**{KEY: "k1", "Subject": "a"}),
        task(**{KEY: "k2", "Subject": "b"}),
        task(**{KEY: "k1", "Subject": "c"}),
    ]

    results: Any = sf.restful(
        f"composite/sobjects/Task/{KEY}",
        method="PATCH",
        json={"allOrNone": False, "records": records},
    )

    duplicate = {
        "success": False,
        "errors": [
            {
                "statusCode": "DUPLICATE_EXTERNAL_ID",
                "message": "Duplicate external id specified",
                "fields": [KEY],
            }
        ],
    }
    updated = {"id": existing["id"], "success": True, "errors": [], "created": False}
    assert results == [duplicate, updated, duplicate]
    assert org.fake.tasks[existing["id"]]["Subject"] == "b"
    assert len(org.fake.tasks) == 1


def test_limit_info_header_is_parsed_into_api_usage(launch: Launch) -> None:
    org = launch(FakeSalesforce(daily_api_limit=1000, api_used=100))
    sf = org.client()

    limits = sf.limits()

    assert limits == {"DailyApiRequests": {"Max": 1000, "Remaining": 899}}
    assert sf.api_usage == {"api-usage": Usage(used=101, total=1000)}


def test_daily_limit_exhausted_is_refused(launch: Launch) -> None:
    org = launch(FakeSalesforce(daily_api_limit=2, api_used=1))
    sf = org.client()
    sf.restful("sobjects/Task/", method="POST", json={"Subject": "last one"})

    with pytest.raises(SalesforceRefusedRequest) as caught:
        sf.restful("sobjects/Task/", method="POST", json={"Subject": "one too many"})

    assert caught.value.status == 403
    assert content(caught.value) == [
        {
            "message": "TotalRequests Limit exceeded.",
            "errorCode": "REQUEST_LIMIT_EXCEEDED",
        }
    ]
    assert len(org.fake.tasks) == 1
    assert org.fake.api_used == 2


def test_concurrency_beyond_the_limit_is_refused(launch: Launch) -> None:
    org = launch(FakeSalesforce(max_concurrency=2, transaction_seconds=0.5))
    sf = org.client()
    start = threading.Barrier(4)
    outcomes: list[str] = []

    def call_limits() -> None:
        start.wait()
        try:
            sf.limits()
            outcomes.append("ok")
        except SalesforceRefusedRequest as refused:
            outcomes.append(content(refused)[0]["message"])

    threads = [threading.Thread(target=call_limits) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)

    assert sorted(outcomes) == [CONCURRENT, CONCURRENT, "ok", "ok"]


def test_tls_without_the_ca_bundle_fails_verification(org: Org) -> None:
    url = org.base_url + "/services/data/v62.0/limits/"

    with pytest.raises(requests.exceptions.SSLError):
        requests.get(url, timeout=5)


def test_tls_certificate_also_names_localhost(org: Org) -> None:
    url = org.base_url.replace("127.0.0.1", "localhost") + "/services/data/v62.0/"

    response = org.session.get(url, timeout=5)

    assert response.status_code == 401


def test_next_replies_answer_one_request_then_service_resumes(org: Org) -> None:
    lock_error = [
        {
            "message": "unable to obtain exclusive access to this record",
            "errorCode": "UNABLE_TO_LOCK_ROW",
        }
    ]
    org.fake.next_replies.append(Reply(400, lock_error))
    sf = org.client()

    with pytest.raises(SalesforceMalformedRequest) as caught:
        sf.restful("sobjects/Task/", method="POST", json={"Subject": "Call"})
    retried: Any = sf.restful("sobjects/Task/", method="POST", json={"Subject": "Call"})

    assert content(caught.value) == lock_error
    assert retried == {"id": mock.ANY, "success": True, "errors": []}
    assert list(org.fake.tasks) == [retried["id"]]


def test_throttle_fault_is_the_concurrent_request_limit(launch: Launch) -> None:
    org = launch(FakeSalesforce(), Faults(script=collections.deque(["throttle"])))

    with pytest.raises(SalesforceRefusedRequest) as caught:
        org.client().limits()

    assert caught.value.status == 403
    assert content(caught.value) == [
        {"message": CONCURRENT, "errorCode": "REQUEST_LIMIT_EXCEEDED"}
    ]


def test_error_faults_rotate_through_500_502_503(launch: Launch) -> None:
    faults = Faults(script=collections.deque(["error"] * 3))
    sf = launch(FakeSalesforce(), faults).client()

    answers = [_general_error(sf) for _ in range(3)]

    assert [status for status, _ in answers] == [500, 502, 503]
    assert answers[0][1][0]["errorCode"] == "UNKNOWN_EXCEPTION"
    assert answers[1][1] == ""
    assert answers[2][1][0]["errorCode"] == "SERVER_UNAVAILABLE"


def _general_error(sf: Salesforce) -> tuple[int, Any]:
    with pytest.raises(SalesforceGeneralError) as caught:
        sf.limits()
    return caught.value.status, content(caught.value)
