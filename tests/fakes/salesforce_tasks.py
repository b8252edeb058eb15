"""The Task resources of the fake Salesforce API: single records and collections.

``TaskStore`` answers already authenticated, metered and routed requests; the
caller holds the fake's lock around every call, so nothing here locks.

Saving is planned before it is applied: every record of a collection is checked
first, so ``allOrNone`` can refuse the lot without undoing anything, which is
what Salesforce's roll-back looks like from outside.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from tests.fakes.salesforce_validation import (
    NOT_FOUND,
    Directory,
    RequestRejected,
    SfError,
    TaskRules,
    make_id,
    parser_error,
    refusal,
)
from tests.fakes.server import Reply, Request

MAX_COLLECTION = 200

_ROLLED_BACK = SfError(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was"
    " using AllOrNone header",
)


@dataclass(frozen=True)
class Call:
    """One routed /services/data request: the request, API version, path fields."""

    request: Request
    version: str
    params: dict[str, str]

    @property
    def at_least_46(self) -> bool:
        """Whether upserts report ``created`` and collections can upsert."""
        major, minor = self.version.split(".")
        return (int(major), int(minor)) >= (46, 0)


@dataclass
class Outcome:
    """What saving one record would do: store ``values`` or fail with ``errors``.

    ``target`` is the id of the Task an upsert updates, ``None`` for an insert.
    """

    values: dict[str, Any] = field(default_factory=dict)
    errors: list[SfError] = field(default_factory=list)
    target: str | None = None


def _fail(code: str, message: str, name: str) -> Outcome:
    return Outcome(errors=[SfError(code, message, (name,))])


class TaskStore:
    """The stored Tasks and the endpoints that read and write them."""

    def __init__(self, rules: TaskRules, directory: Directory) -> None:
        self.rules = rules
        self.directory = directory
        self.tasks: dict[str, dict[str, Any]] = {}
        self._serial = itertools.count(1)

    @property
    def key_field(self) -> str | None:
        """The Task External ID field, if the org has one."""
        return self.rules.external_id_field

    def create(self, call: Call) -> Reply:
        """POST sobjects/Task: 201 with the new id, or 400 with the errors."""
        outcome = self._plan_create(self.rules.parse(object_body(call)))
        if outcome.errors:
            return refusal(400, *outcome.errors)
        task_id, _ = self._apply(outcome)
        return Reply(201, {"id": task_id, "success": True, "errors": []})

    def upsert(self, call: Call) -> Reply:
        """PATCH sobjects/Task/{field}/{value}: 201 created, 200 updated."""
        name, key = call.params["field"], unquote(call.params["value"])
        if name != self.key_field:
            return refusal(404, NOT_FOUND)
        values = self.rules.parse(object_body(call))
        if values.get(name, key) != key:
            message = f"{self.rules.label(name)}: value differs from the URL's"
            return refusal(400, SfError("INVALID_FIELD", message, (name,)))
        matches = self._matching(key)
        if len(matches) > 1:
            return _several(call, matches)
        outcome = self._plan_upsert({**values, name: key}, matches)
        if outcome.errors:
            return refusal(400, *outcome.errors)
        task_id, created = self._apply(outcome)
        if not created and not call.at_least_46:
            return Reply(204)
        body = {"id": task_id, "success": True, "errors": [], "created": created}
        return Reply(201 if created else 200, body)

    def get(self, call: Call) -> Reply:
        """GET sobjects/Task/{field}/{value}: the record, every field listed."""
        name, key = call.params["field"], unquote(call.params["value"])
        matches = self._matching(key) if name == self.key_field else []
        if len(matches) > 1:
            return _several(call, matches)
        if not matches:
            return refusal(404, NOT_FOUND)
        task_id = matches[0]
        url = f"/services/data/v{call.version}/sobjects/Task/{task_id}"
        attributes = {"type": "Task", "url": url}
        fields = {**dict.fromkeys(self.rules.fields), **self.tasks[task_id]}
        return Reply(200, {"attributes": attributes, "Id": task_id, **fields})

    def create_collection(self, call: Call) -> Reply:
        """POST composite/sobjects: 200 with one SaveResult per record."""
        all_or_none, records = self._collection_body(call)
        outcomes = [self._plan_create(record) for record in records]
        return self._commit(outcomes, all_or_none, upsert=False)

    def upsert_collection(self, call: Call) -> Reply:
        """PATCH composite/sobjects/Task/{field}: one UpsertResult per record."""
        name = call.params["field"]
        if name != self.key_field or not call.at_least_46:
            return refusal(404, NOT_FOUND)
        all_or_none, records = self._collection_body(call)
        counts = collections.Counter(record.get(name) for record in records)
        outcomes = []
        for record in records:
            key = record.get(name)
            if key is None:
                message = f"{self.rules.label(name)} not specified in an upsert call"
                outcomes.append(_fail("MISSING_ARGUMENT", message, name))
            elif counts[key] > 1:
                message = "Duplicate external id specified"
                outcomes.append(_fail("DUPLICATE_EXTERNAL_ID", message, name))
            else:
                outcomes.append(self._plan_upsert(record, self._matching(key)))
        return self._commit(outcomes, all_or_none, upsert=True)

    def _plan_create(self, values: Mapping[str, Any]) -> Outcome:
        if "Id" in values:
            message = "cannot specify Id in an insert call"
            return _fail("INVALID_FIELD_FOR_INSERT_UPDATE", message, "Id")
        stored, errors = self.rules.check(values, None, self.directory)
        return Outcome(stored, errors)

    def _plan_upsert(self, values: Mapping[str, Any], matches: list[str]) -> Outcome:
        if "Id" in values:
            message = "Id may not be set in an upsert by external id"
            return _fail("INVALID_FIELD", message, "Id")
        if len(matches) > 1:
            message = "more than one record found for external id field"
            return _fail("DUPLICATE_EXTERNAL_ID", message, self.key_field or "")
        target = matches[0] if matches else None
        existing = self.tasks[target] if target else None
        stored, errors = self.rules.check(values, existing, self.directory)
        return Outcome(stored, errors, target)

    def _commit(
        self, outcomes: list[Outcome], all_or_none: bool, *, upsert: bool
    ) -> Reply:
        if all_or_none and any(outcome.errors for outcome in outcomes):
            return Reply(200, [_failure(o.errors or [_ROLLED_BACK]) for o in outcomes])
        results = []
        for outcome in outcomes:
            if outcome.errors:
                results.append(_failure(outcome.errors))
                continue
            task_id, created = self._apply(outcome)
            result: dict[str, Any] = {"id": task_id, "success": True, "errors": []}
            if upsert:
                result["created"] = created
            results.append(result)
        return Reply(200, results)

    def _apply(self, outcome: Outcome) -> tuple[str, bool]:
        if outcome.target is not None:
            self.tasks[outcome.target].update(outcome.values)
            return outcome.target, False
        task_id = make_id("00T", next(self._serial))
        created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000+0000")
        self.tasks[task_id] = {**outcome.values, "CreatedDate": created}
        return task_id, True

    def _matching(self, key: str) -> list[str]:
        name = self.key_field
        if name is None:
            return []
        return [
            task_id for task_id, task in self.tasks.items() if task.get(name) == key
        ]

    def _collection_body(self, call: Call) -> tuple[bool, list[dict[str, Any]]]:
        body = object_body(call)
        records, all_or_none = body.get("records"), body.get("allOrNone", False)
        if not isinstance(records, list) or not isinstance(all_or_none, bool):
            raise parser_error("Cannot deserialize the request: no records list")
        if len(records) > MAX_COLLECTION:
            message = (
                "record limit reached. cannot submit more than"
                f" {MAX_COLLECTION} records into this call"
            )
            raise RequestRejected(SfError("EXCEEDED_ID_LIMIT", message))
        return all_or_none, [self._collection_record(record) for record in records]

    def _collection_record(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise parser_error("Cannot deserialize an sObject from a non-object value")
        attributes = record.get("attributes")
        kind = attributes.get("type") if isinstance(attributes, dict) else None
        if kind is None:
            message = "Must send a concrete entity type."
            raise RequestRejected(SfError("INVALID_TYPE", message))
        if kind != "Task":
            message = f"sObject type '{kind}' is not supported."
            raise RequestRejected(SfError("INVALID_TYPE", message))
        return self.rules.parse(record)


def object_body(call: Call) -> dict[str, Any]:
    """The JSON object in the request body, or a JSON_PARSER_ERROR rejection."""
    try:
        body = call.request.json()
    except ValueError:
        raise parser_error("Unexpected character in the request body") from None
    if not isinstance(body, dict):
        raise parser_error("Cannot deserialize an sObject from a non-object value")
    return body


def _several(call: Call, matches: list[str]) -> Reply:
    # Salesforce answers an ambiguous external id with 300 and the candidates.
    prefix = f"/services/data/v{call.version}/sobjects/Task/"
    return Reply(300, [prefix + task_id for task_id in matches])


def _failure(errors: list[SfError]) -> dict[str, Any]:
    return {"success": False, "errors": [error.result() for error in errors]}
