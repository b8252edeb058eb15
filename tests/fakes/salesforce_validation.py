"""Record ids, error shapes and Task field rules for the fake Salesforce API.

Salesforce rejects a bad Task at two stages, and the stage decides the shape of
the answer:

* while deserializing the JSON body (unknown field, wrong JSON type, a date that
  does not parse), the whole request fails with 400, even in an sObject
  Collections request; these errors carry no ``fields`` list;
* while saving (lengths, picklists, ids, references, field integrity), only the
  record fails; a collection request still answers 200 with per-record errors.

``TaskRules.parse`` is the first stage and raises ``RequestRejected``;
``TaskRules.check`` is the second and returns the errors.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tests.fakes.server import Reply

_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ID_SHAPE = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
_DATE_SHAPE = re.compile(r"\d{4}-\d{2}-\d{2}")

TASK_STATUSES = frozenset(
    {"Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"}
)
TASK_SUBTYPES = frozenset({"Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"})
TASK_PRIORITIES = frozenset({"High", "Normal", "Low"})

_LABELS = {
    "Subject": "Subject",
    "Description": "Comments",
    "ActivityDate": "Due Date Only",
    "Status": "Status",
    "Priority": "Priority",
    "TaskSubtype": "Task Subtype",
    "WhoId": "Name ID",
    "WhatId": "Related To ID",
    "OwnerId": "Assigned To ID",
}
_REFERENCES = {"WhoId": ("003", "00Q"), "WhatId": ("001",), "OwnerId": ("005",)}
_REQUIRED = ("Status", "Priority", "OwnerId")
_JSON_TOKENS = {
    int: "VALUE_NUMBER_INT",
    float: "VALUE_NUMBER_FLOAT",
    list: "START_ARRAY",
    dict: "START_OBJECT",
}


def to_18(id15: str) -> str:
    """Append the case-safe suffix that turns a 15-character id into 18."""
    suffix = ""
    for start in range(0, 15, 5):
        chunk = id15[start : start + 5]
        bits = sum(1 << n for n, char in enumerate(chunk) if "A" <= char <= "Z")
        suffix += _CHECKSUM_ALPHABET[bits]
    return id15 + suffix


def make_id(prefix: str, serial: int, tag: str = "") -> str:
    """An 18-character id: 3-character key prefix, pod marker, tag, serial."""
    width = 10 - len(tag)
    return to_18(f"{prefix}5g{tag}{serial:0{width}d}")


@dataclass(frozen=True)
class SfError:
    """One Salesforce error, renderable in the REST or the collection shape."""

    code: str
    message: str
    fields: tuple[str, ...] | None = None

    def rest(self) -> dict[str, Any]:
        """The element of a failed single-record call's error list."""
        body: dict[str, Any] = {"message": self.message, "errorCode": self.code}
        if self.fields is not None:
            body["fields"] = list(self.fields)
        return body

    def result(self) -> dict[str, Any]:
        """The element of a collection result's ``errors`` list."""
        fields = list(self.fields or ())
        return {"statusCode": self.code, "message": self.message, "fields": fields}


NOT_FOUND = SfError("NOT_FOUND", "The requested resource does not exist")


def refusal(status: int, *errors: SfError) -> Reply:
    """A failed call: ``status`` and the errors as Salesforce lists them."""
    return Reply(status, [error.rest() for error in errors])


class RequestRejected(Exception):
    """The whole request fails with 400 and this error."""

    def __init__(self, error: SfError) -> None:
        super().__init__(error.message)
        self.error = error


def parser_error(message: str) -> RequestRejected:
    """A JSON_PARSER_ERROR rejection of the whole request."""
    return RequestRejected(SfError("JSON_PARSER_ERROR", message))


@dataclass(frozen=True)
class Directory:
    """The records a Task may point at, by kind; the lists are shared, not copied."""

    contacts: list[str]
    leads: list[str]
    accounts: list[str]
    users: list[str]

    def find(self, any_id: str) -> str | None:
        """The canonical id for a 15- or 18-character id, if the record exists.

        15-character ids are case-sensitive; 18-character ones are not, since
        their suffix encodes the case of the first fifteen.
        """
        for known in (*self.contacts, *self.leads, *self.accounts, *self.users):
            if len(any_id) == 15 and known[:15] == any_id:
                return known
            if len(any_id) == 18 and known.lower() == any_id.lower():
                return known
        return None


@dataclass(frozen=True)
class TaskRules:
    """Which Task fields exist, and what the save stage accepts in them."""

    external_id_field: str | None = None
    statuses: frozenset[str] = TASK_STATUSES
    subtypes: frozenset[str] = TASK_SUBTYPES
    # Kept for callers that offer the standard values; the API accepts any.
    priorities: frozenset[str] = TASK_PRIORITIES

    @property
    def fields(self) -> tuple[str, ...]:
        """Every writable field, in the order the GET answer lists them."""
        extra = (self.external_id_field,) if self.external_id_field else ()
        return (*_LABELS, *extra)

    @property
    def limits(self) -> dict[str, int]:
        """Maximum lengths of the free-text fields."""
        limits = {"Subject": 255, "Description": 32000, "Priority": 255}
        if self.external_id_field:
            limits[self.external_id_field] = 255
        return limits

    def label(self, name: str) -> str:
        """The field label Salesforce uses in error messages."""
        return _LABELS.get(name) or name.removesuffix("__c").replace("_", " ")

    def parse(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Deserialize one record; drop ``attributes``; raise on the first fault."""
        parsed: dict[str, Any] = {}
        for name, value in record.items():
            if name == "attributes":
                continue
            if name != "Id" and name not in self.fields:
                message = f"No such column '{name}' on sobject of type Task"
                raise RequestRejected(SfError("INVALID_FIELD", message))
            parsed[name] = _parse_value(name, value)
        return parsed

    def check(
        self,
        values: Mapping[str, Any],
        existing: Mapping[str, Any] | None,
        directory: Directory,
    ) -> tuple[dict[str, Any], list[SfError]]:
        """Save-stage checks; return the values to store and any errors.

        ``existing`` is the stored record for an update, ``None`` for an insert.
        """
        errors = [
            *self._not_updateable(values, existing),
            *self._scalar_errors(values),
        ]
        resolved = dict(values)
        for name in _REFERENCES.keys() & values.keys():
            found = self._reference(name, values[name], directory)
            if isinstance(found, SfError):
                errors.append(found)
            else:
                resolved[name] = found
        if errors:
            return {}, errors
        if existing is None:
            resolved = {**self._defaults(directory), **resolved}
        integrity = self._integrity({**(existing or {}), **resolved}, directory)
        return resolved, integrity

    def _not_updateable(
        self, values: Mapping[str, Any], existing: Mapping[str, Any] | None
    ) -> list[SfError]:
        if existing is None or "TaskSubtype" not in values:
            return []
        message = (
            "Unable to create/update fields: TaskSubtype. Please check the security"
            " settings of this field and verify that it is read/write for your"
            " profile or permission set."
        )
        return [SfError("INVALID_FIELD_FOR_INSERT_UPDATE", message, ("TaskSubtype",))]

    def _scalar_errors(self, values: Mapping[str, Any]) -> list[SfError]:
        errors = []
        for name, value in values.items():
            if value is None:
                if name in _REQUIRED:
                    message = f"Required fields are missing: [{name}]"
                    errors.append(SfError("REQUIRED_FIELD_MISSING", message, (name,)))
            elif len(value) > self.limits.get(name, len(value)):
                message = (
                    f"{self.label(name)}: data value too large"
                    f" (max length={self.limits[name]})"
                )
                errors.append(SfError("STRING_TOO_LONG", message, (name,)))
            elif value not in self._picklist(name, value):
                message = f"{self.label(name)}: bad value for restricted picklist field"
                code = "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
                errors.append(SfError(code, message, (name,)))
        return errors

    def _picklist(self, name: str, value: str) -> frozenset[str]:
        # Priority is an unrestricted picklist: the API stores any value.
        restricted = {"Status": self.statuses, "TaskSubtype": self.subtypes}
        return restricted.get(name, frozenset({value}))

    def _reference(
        self, name: str, value: str | None, directory: Directory
    ) -> str | SfError | None:
        if value is None:
            return None
        label = self.label(name)
        if not _ID_SHAPE.fullmatch(value):
            message = f"{label}: id value of incorrect type"
            return SfError("MALFORMED_ID", message, (name,))
        found = directory.find(value)
        if found is None or not found.startswith(_REFERENCES[name]):
            message = f"{label}: invalid cross reference id"
            return SfError("INVALID_CROSS_REFERENCE_KEY", message, (name,))
        return found

    def _defaults(self, directory: Directory) -> dict[str, Any]:
        # The integration user owns what it creates, as the running user would.
        return {
            "Status": "Not Started",
            "Priority": "Normal",
            "OwnerId": directory.users[0],
        }

    def _integrity(
        self, record: Mapping[str, Any], directory: Directory
    ) -> list[SfError]:
        who = record.get("WhoId")
        if who is None or record.get("WhatId") is None or who not in directory.leads:
            return []
        message = (
            "Related To ID: a task whose Name ID is a lead cannot be related"
            " to another record"
        )
        return [SfError("FIELD_INTEGRITY_EXCEPTION", message, ("WhatId",))]


def _parse_value(name: str, value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, str):
        token = _JSON_TOKENS.get(type(value), "VALUE_EMBEDDED_OBJECT")
        if isinstance(value, bool):
            token = "VALUE_TRUE" if value else "VALUE_FALSE"
        raise parser_error(
            f"Cannot deserialize instance of string from {token} value for field {name}"
        )
    if name == "ActivityDate" and not _is_date(value):
        raise parser_error(
            f"Cannot deserialize instance of date from VALUE_STRING value"
            f" for field {name}"
        )
    return value


def _is_date(value: str) -> bool:
    if not _DATE_SHAPE.fullmatch(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True
