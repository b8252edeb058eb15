"""Every exception the SDKs and their HTTP stacks raise becomes a bridge error."""

from __future__ import annotations

import inspect
import json
from types import ModuleType
from typing import Any

import pytest
import requests
import urllib3
from hubspot.crm.objects.communications import exceptions as communications_errors
from hubspot.crm.objects.emails import exceptions as emails_errors
from simple_salesforce import exceptions as sf_errors

from adapters import salesforce
from adapters.hubspot import SDK_ERRORS, HubSpotAdapter
from bridge.config import HubSpotSettings
from bridge.errors import (
    CrmAuthError,
    CrmError,
    CrmInDoubt,
    CrmQuotaExhausted,
    CrmRejected,
    CrmThrottled,
    CrmUnavailable,
)

HUBSPOT = HubSpotAdapter(HubSpotSettings(), "token", (1, 1))


def classes(module: ModuleType, base: type[BaseException]) -> list[type[Any]]:
    return [
        value
        for _, value in inspect.getmembers(module, inspect.isclass)
        if issubclass(value, base) and value.__module__ == module.__name__
    ]


class _Answer:
    """The response object an ApiException is built from."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str]):
        self.status = status
        self.reason = "reason"
        self.data = json.dumps(body).encode()
        self._headers = headers

    def getheaders(self) -> dict[str, str]:
        return self._headers


def hubspot_error(cls: type[Any], status: int, body: dict[str, Any]) -> Exception:
    error: Exception
    if not issubclass(
        cls, emails_errors.ApiException | communications_errors.ApiException
    ):
        error = cls("message")
    elif status:
        error = cls(http_resp=_Answer(status, body, {}))
    else:
        error = cls(status=0)
    return error


HUBSPOT_CLASSES = classes(emails_errors, Exception) + classes(
    communications_errors, Exception
)


def test_hubspot_error_tuple_covers_every_sdk_exception() -> None:
    assert HUBSPOT_CLASSES
    assert all(issubclass(cls, SDK_ERRORS) for cls in HUBSPOT_CLASSES)


@pytest.mark.parametrize("cls", HUBSPOT_CLASSES, ids=lambda cls: cls.__name__)
def test_every_hubspot_sdk_exception_is_translated(cls: type[Any]) -> None:
    error = hubspot_error(cls, 500, {"category": "INTERNAL_ERROR"})

    translated = HUBSPOT.translate(error, "create")

    assert type(translated) in (CrmInDoubt, CrmUnavailable)
    assert str(error) not in translated.message


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (0, {}, CrmUnavailable),
        (400, {"category": "VALIDATION_ERROR"}, CrmRejected),
        (401, {"category": "INVALID_AUTHENTICATION"}, CrmAuthError),
        (403, {"category": "MISSING_SCOPES"}, CrmAuthError),
        (404, {"category": "OBJECT_NOT_FOUND"}, CrmRejected),
        (409, {"category": "CONFLICT"}, CrmRejected),
        (429, {"policyName": "TEN_SECONDLY_ROLLING"}, CrmThrottled),
        (429, {"policyName": "DAILY"}, CrmQuotaExhausted),
        (500, {}, CrmInDoubt),
        (502, {}, CrmInDoubt),
        (503, {}, CrmInDoubt),
        (504, {}, CrmInDoubt),
    ],
)
def test_hubspot_answers_map_by_status(
    status: int, body: dict[str, Any], expected: type[CrmError]
) -> None:
    error = hubspot_error(communications_errors.ApiException, status, body)

    translated = HUBSPOT.translate(error, "create")

    assert type(translated) is expected
    assert translated.status == status


URLLIB3_CLASSES = classes(urllib3.exceptions, Exception)


@pytest.mark.parametrize("cls", URLLIB3_CLASSES, ids=lambda cls: cls.__name__)
def test_every_urllib3_exception_is_translated(cls: type[Exception]) -> None:
    error = cls.__new__(cls)

    translated = HUBSPOT.translate(error, "create")

    connect = issubclass(cls, urllib3.exceptions.ConnectTimeoutError)
    assert type(translated) is (CrmUnavailable if connect else CrmInDoubt)


def salesforce_error(cls: type[Any], status: int, content: Any) -> Exception:
    error: Exception
    if cls is sf_errors.SalesforceAuthenticationFailed:
        error = cls("INVALID_LOGIN", "bad credentials")
    elif issubclass(cls, sf_errors.SalesforceError):
        error = cls("https://x/services", status, "Task", content)
    else:
        error = cls("message")
    return error


SALESFORCE_CLASSES = classes(sf_errors, Exception)


@pytest.mark.parametrize("cls", SALESFORCE_CLASSES, ids=lambda cls: cls.__name__)
def test_every_salesforce_sdk_exception_is_translated(cls: type[Any]) -> None:
    error = salesforce_error(cls, 400, [{"errorCode": "X", "message": "m"}])

    translated = salesforce.translate(error)

    assert isinstance(translated, CrmError)
    assert type(translated) is not CrmError


@pytest.mark.parametrize(
    ("cls", "status", "code", "message", "expected"),
    [
        (
            sf_errors.SalesforceMalformedRequest,
            400,
            "REQUIRED_FIELD_MISSING",
            "",
            CrmRejected,
        ),
        (
            sf_errors.SalesforceMalformedRequest,
            400,
            "UNABLE_TO_LOCK_ROW",
            "",
            CrmUnavailable,
        ),
        (
            sf_errors.SalesforceExpiredSession,
            401,
            "INVALID_SESSION_ID",
            "",
            CrmAuthError,
        ),
        (
            sf_errors.SalesforceRefusedRequest,
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "TotalRequests Limit exceeded.",
            CrmQuotaExhausted,
        ),
        (
            sf_errors.SalesforceRefusedRequest,
            403,
            "REQUEST_LIMIT_EXCEEDED",
            "ConcurrentPerOrgLongTxn Limit exceeded.",
            CrmThrottled,
        ),
        (
            sf_errors.SalesforceRefusedRequest,
            403,
            "API_DISABLED_FOR_ORG",
            "",
            CrmAuthError,
        ),
        (
            sf_errors.SalesforceRefusedRequest,
            403,
            "INSUFFICIENT_ACCESS_OR_READONLY",
            "",
            CrmRejected,
        ),
        (sf_errors.SalesforceResourceNotFound, 404, "NOT_FOUND", "", CrmRejected),
        (sf_errors.SalesforceMoreThanOneRecord, 300, "", "", CrmRejected),
        (sf_errors.SalesforceGeneralError, 500, "UNKNOWN_EXCEPTION", "", CrmInDoubt),
        (
            sf_errors.SalesforceGeneralError,
            503,
            "SERVER_UNAVAILABLE",
            "",
            CrmUnavailable,
        ),
    ],
)
def test_salesforce_answers_map_by_code(
    cls: type[Any], status: int, code: str, message: str, expected: type[CrmError]
) -> None:
    error = salesforce_error(cls, status, [{"errorCode": code, "message": message}])

    translated = salesforce.translate(error)

    assert type(translated) is expected
    assert translated.code == code


REQUESTS_CLASSES = classes(requests.exceptions, requests.RequestException)


@pytest.mark.parametrize("cls", REQUESTS_CLASSES, ids=lambda cls: cls.__name__)
def test_every_requests_exception_is_translated(cls: type[Exception]) -> None:
    error = cls.__new__(cls)

    translated = salesforce.translate(error)

    not_sent = issubclass(cls, requests.ConnectTimeout | requests.exceptions.SSLError)
    assert type(translated) is (CrmUnavailable if not_sent else CrmInDoubt)


def test_refused_connection_is_known_not_sent() -> None:
    refused = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    wrapped = urllib3.exceptions.MaxRetryError(None, "/", refused)  # type: ignore[arg-type]

    translated = salesforce.translate(requests.ConnectionError(wrapped))

    assert type(translated) is CrmUnavailable
