"""Input rules of the fake HubSpot engagement objects ("emails", "communications").

The rules are a small, explicit subset of what HubSpot enforces: the property
names, option sets, required properties and association types the bridge uses.
The error codes follow the ones HubSpot reports in ``errors[].code`` where those
are known (``PROPERTY_DOESNT_EXIST``, ``INVALID_OPTION``, ``REQUIRED_PROPERTY``,
...); the rest (``INVALID_ASSOCIATION``, the search codes) are the fake's own.

Messages name properties and ids but never repeat a property value: the values
are personal data, and the real API's habit of echoing them must not leak into
the bridge's logs through the tests.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MAX_VALUE_LENGTH = 65_536
SYSTEM_PROPERTIES = frozenset({"hs_object_id", "hs_createdate", "hs_lastmodifieddate"})

_EPOCH_MILLIS = re.compile(r"[0-9]+")

Association = tuple[str, str, int]
"""(to_object_type, to_id, association_type_id), as stored on a record."""


@dataclass(frozen=True)
class ObjectSchema:
    """The properties and association types one engagement object accepts."""

    name: str
    properties: frozenset[str]
    required: frozenset[str]
    options: Mapping[str, frozenset[str]]
    association_types: Mapping[int, str]


SCHEMAS: dict[str, ObjectSchema] = {
    "emails": ObjectSchema(
        name="emails",
        properties=frozenset(
            {
                "hs_timestamp",
                "hs_email_direction",
                "hs_email_subject",
                "hs_email_html",
                "hs_email_text",
                "hs_email_status",
                "hs_email_headers",
                "hubspot_owner_id",
            }
        ),
        required=frozenset({"hs_timestamp"}),
        options={
            "hs_email_direction": frozenset(
                {"EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL"}
            ),
            "hs_email_status": frozenset(
                {"BOUNCED", "FAILED", "SCHEDULED", "SENDING", "SENT"}
            ),
        },
        association_types={198: "contacts", 186: "companies"},
    ),
    "communications": ObjectSchema(
        name="communications",
        properties=frozenset(
            {
                "hs_timestamp",
                "hs_communication_channel_type",
                "hs_communication_logged_from",
                "hs_communication_body",
                "hubspot_owner_id",
            }
        ),
        required=frozenset({"hs_timestamp", "hs_communication_channel_type"}),
        options={
            "hs_communication_channel_type": frozenset(
                {"SMS", "WHATS_APP", "LINKEDIN_MESSAGE"}
            ),
            "hs_communication_logged_from": frozenset({"CRM"}),
        },
        association_types={81: "contacts", 87: "companies"},
    ),
}

OBJECT_TYPES = tuple(SCHEMAS)


@dataclass(frozen=True)
class Problem:
    """One reason an input is rejected, shaped as a HubSpot error detail."""

    code: str
    message: str
    property_name: str

    def detail(self) -> dict[str, Any]:
        """The ``errors[]`` entry HubSpot puts in a 400 body."""
        return {
            "message": self.message,
            "code": self.code,
            "context": {"propertyName": [self.property_name]},
        }


@dataclass(frozen=True)
class Checked:
    """One input after validation: what to store, or why it cannot be."""

    properties: dict[str, str]
    associations: list[Association]
    problems: list[Problem]


def summary(problems: list[Problem], label: str = "") -> str:
    """A 400 message naming the offending properties, never their values."""
    return "Input was not valid: " + describe(problems, label)


def describe(problems: list[Problem], label: str = "") -> str:
    """``name (CODE)`` for each problem, each name prefixed with ``label``."""
    return "; ".join(f"{label}{p.property_name} ({p.code})" for p in problems)


class Validator:
    """Checks create inputs against :data:`SCHEMAS` and the known record ids.

    ``known`` maps "contacts", "companies" and "owners" to id sets that the
    fake keeps mutating, so ids added later are seen here at once.
    """

    def __init__(
        self, custom_properties: AbstractSet[str], known: Mapping[str, AbstractSet[str]]
    ) -> None:
        self._custom = custom_properties
        self._known = known

    def searchable(self, object_type: str) -> frozenset[str]:
        """Property names a search may filter on or ask for."""
        schema = SCHEMAS[object_type]
        return schema.properties | SYSTEM_PROPERTIES | frozenset(self._custom)

    def check(self, object_type: str, item: Any) -> Checked:
        """Validate one ``{"properties", "associations"}`` input."""
        schema = SCHEMAS[object_type]
        if not isinstance(item, dict):
            problem = Problem("INVALID_INPUT", "An input must be an object.", "input")
            return Checked({}, [], [problem])
        properties = item.get("properties")
        if isinstance(properties, dict):
            problems = self._check_properties(schema, properties)
        else:
            properties = {}
            message = "properties must be an object of strings."
            problems = [Problem("INVALID_PROPERTY_VALUE", message, "properties")]
        associations, wrong = self._check_associations(schema, item.get("associations"))
        return Checked(properties, associations, problems + wrong)

    def _check_properties(
        self, schema: ObjectSchema, properties: dict[str, Any]
    ) -> list[Problem]:
        found = [
            self._check_value(schema, name, value) for name, value in properties.items()
        ]
        problems = [problem for problem in found if problem is not None]
        for name in sorted(schema.required - properties.keys()):
            problems.append(
                Problem("REQUIRED_PROPERTY", f"Property {name} is required.", name)
            )
        return problems

    def _check_value(
        self, schema: ObjectSchema, name: str, value: Any
    ) -> Problem | None:
        if name not in schema.properties and name not in self._custom:
            message = f"Property {name} does not exist on {schema.name}."
            return Problem("PROPERTY_DOESNT_EXIST", message, name)
        if not isinstance(value, str):
            message = f"Property {name} must be a string."
            return Problem("INVALID_PROPERTY_VALUE", message, name)
        if len(value) > MAX_VALUE_LENGTH:
            message = f"Property {name} is longer than {MAX_VALUE_LENGTH} characters."
            return Problem("TOO_LONG", message, name)
        options = schema.options.get(name)
        if options is not None and value not in options:
            allowed = ", ".join(sorted(options))
            message = f"Property {name} is not one of the allowed options: {allowed}."
            return Problem("INVALID_OPTION", message, name)
        if name == "hs_timestamp" and not _is_datetime(value):
            message = f"Property {name} must be epoch milliseconds or ISO 8601."
            return Problem("INVALID_DATETIME", message, name)
        if name == "hubspot_owner_id" and value not in self._known["owners"]:
            message = f"Property {name} does not name a known owner."
            return Problem("INVALID_OWNER_ID", message, name)
        return None

    def _check_associations(
        self, schema: ObjectSchema, raw: Any
    ) -> tuple[list[Association], list[Problem]]:
        if raw is None:
            return [], []
        if not isinstance(raw, list):
            message = "associations must be a list."
            return [], [Problem("INVALID_ASSOCIATION", message, "associations")]
        associations: list[Association] = []
        problems: list[Problem] = []
        for index, item in enumerate(raw):
            found, wrong = self._check_association(schema, index, item)
            associations += found
            problems += wrong
        return associations, problems

    def _check_association(
        self, schema: ObjectSchema, index: int, item: Any
    ) -> tuple[list[Association], list[Problem]]:
        to = item.get("to") if isinstance(item, dict) else None
        to_id = to.get("id") if isinstance(to, dict) else None
        types = item.get("types") if isinstance(item, dict) else None
        if not isinstance(to_id, str) or not isinstance(types, list) or not types:
            message = f"associations[{index}] needs to.id and a non-empty types list."
            return [], [Problem("INVALID_ASSOCIATION", message, "associations")]
        found: list[Association] = []
        problems: list[Problem] = []
        for spec in types:
            type_id = _type_id(spec)
            target = None if type_id is None else schema.association_types.get(type_id)
            if type_id is None or target is None:
                message = (
                    f"associations[{index}]: not a HUBSPOT_DEFINED association "
                    f"type from {schema.name}."
                )
                problems.append(
                    Problem("INVALID_ASSOCIATION_TYPE", message, "associations")
                )
            elif to_id not in self._known[target]:
                message = f"Associated object {to_id} of type {target} not found."
                problems.append(Problem("OBJECT_NOT_FOUND", message, "associations"))
            else:
                found.append((target, to_id, type_id))
        return found, problems


def _type_id(spec: Any) -> int | None:
    """The association type id of a HUBSPOT_DEFINED spec, else None."""
    if (
        not isinstance(spec, dict)
        or spec.get("associationCategory") != "HUBSPOT_DEFINED"
    ):
        return None
    type_id = spec.get("associationTypeId")
    # bool is an int subclass, and True must not pass for type id 1.
    if isinstance(type_id, bool) or not isinstance(type_id, int):
        return None
    return type_id


def _is_datetime(value: str) -> bool:
    if _EPOCH_MILLIS.fullmatch(value):
        return True
    # A bare date parses too, but HubSpot wants a point in time.
    if "T" not in value:
        return False
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return False
    return True
