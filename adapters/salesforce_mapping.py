"""How an activity becomes a completed Salesforce Task.

=============  ==============================================================
field          value
=============  ==============================================================
Subject        the Enginy subject, or what happened ("LinkedIn InMail received")
Description    the body as readable plain text, HTML laid out as text
ActivityDate   the UTC date of ``occurredAt``
Status         ``[salesforce] task_status`` (default ``Completed``)
Priority       ``Normal``
TaskSubtype    ``[salesforce] email_subtype`` / ``linkedin_subtype``
WhoId          ``contactId``: a Contact (003) or a Lead (00Q)
WhatId         ``companyId``: an Account (001); left out with a Lead, which
               Salesforce does not allow next to a WhatId
OwnerId        ``ownerId``: a User (005) or a queue (00G)
=============  ==============================================================

With ``[salesforce] external_id_field`` set, the field carries the hex SHA-256 of
the idempotency key, and every write is an upsert on it.
"""

from __future__ import annotations

import re
from typing import Any

from adapters.text import cut, label, plain_text
from bridge.config import SalesforceSettings
from bridge.errors import Problem
from bridge.models import Activity, ActivityType

MAX_SUBJECT = 255
MAX_DESCRIPTION = 32_000

_ID = re.compile(r"^[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?$")
_PREFIXES = {
    "contactId": (("003", "00Q"), "a Contact (003) or Lead (00Q) id"),
    "companyId": (("001",), "an Account (001) id"),
    "ownerId": (("005", "00G"), "a User (005) or queue (00G) id"),
}


def check(activity: Activity) -> list[Problem]:
    """Ids Salesforce would refuse: wrong length, or the wrong kind of record."""
    values = {
        "contactId": activity.contact_id,
        "companyId": activity.company_id,
        "ownerId": activity.owner_id,
    }
    problems = []
    for name, value in values.items():
        prefixes, expected = _PREFIXES[name]
        if value is not None and not (_ID.match(value) and value.startswith(prefixes)):
            problems.append(Problem(name, f"is not {expected}"))
    return problems


def task(activity: Activity, settings: SalesforceSettings) -> dict[str, Any]:
    """The Task's fields."""
    subtype = (
        settings.email_subtype
        if activity.type is ActivityType.EMAIL
        else settings.linkedin_subtype
    )
    fields: dict[str, Any] = {
        "Subject": cut(activity.subject or label(activity), MAX_SUBJECT),
        "ActivityDate": activity.occurred_at.date().isoformat(),
        "Status": settings.task_status,
        "Priority": "Normal",
        "TaskSubtype": subtype,
    }
    if activity.body:
        fields["Description"] = cut(plain_text(activity.body), MAX_DESCRIPTION)
    if activity.contact_id is not None:
        fields["WhoId"] = activity.contact_id
    if activity.company_id is not None and not is_lead(activity.contact_id):
        fields["WhatId"] = activity.company_id
    if activity.owner_id is not None:
        fields["OwnerId"] = activity.owner_id
    if settings.external_id_field:
        fields[settings.external_id_field] = activity.key_hash
    return fields


def is_lead(record_id: str | None) -> bool:
    return record_id is not None and record_id.startswith("00Q")
