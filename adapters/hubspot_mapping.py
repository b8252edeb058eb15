"""How an activity becomes a HubSpot engagement (CRM v3 objects).

=====================  ==============  ==========================================
Enginy type            object          association type ids (contact, company)
=====================  ==============  ==========================================
EMAIL                  emails          198, 186
LINKEDIN, _INMAIL,     communications  81, 87
_CONNECTION
=====================  ==============  ==========================================

E-mails keep the body as HTML (``hs_email_html``) and as readable text
(``hs_email_text``). LinkedIn activities become communications on the
``LINKEDIN_MESSAGE`` channel whose rich-text body opens with what happened
("LinkedIn InMail received"), then the subject, then the message.

An activity without a direction is filed as outbound e-mail: the team's own
campaign traffic is by far the common case. ``hs_timestamp`` is always the event
time, never the time of the write.
"""

from __future__ import annotations

import html
import re
from typing import Any

from adapters.text import cut, html_body, label, plain_text
from bridge.errors import Problem
from bridge.models import Activity, ActivityType, Direction, format_time

#: HubSpot's limit on a string property value.
MAX_PROPERTY = 65_536

EMAILS = "emails"
COMMUNICATIONS = "communications"

#: object -> (contact association type id, company association type id)
ASSOCIATION_TYPES = {EMAILS: (198, 186), COMMUNICATIONS: (81, 87)}

_HUBSPOT_ID = re.compile(r"^[0-9]{1,20}$")


def object_type(activity: Activity) -> str:
    """The HubSpot object an activity becomes."""
    return EMAILS if activity.type is ActivityType.EMAIL else COMMUNICATIONS


def check(activity: Activity) -> list[Problem]:
    """HubSpot record and owner ids are numbers; anything else cannot match."""
    fields = {
        "contactId": activity.contact_id,
        "companyId": activity.company_id,
        "ownerId": activity.owner_id,
    }
    return [
        Problem(name, "is not a HubSpot id (digits only)")
        for name, value in fields.items()
        if value is not None and not _HUBSPOT_ID.match(value)
    ]


def properties(activity: Activity, dedupe_property: str = "") -> dict[str, str]:
    """The object's properties, every value a string within HubSpot's limit."""
    if object_type(activity) == EMAILS:
        props = _email_properties(activity)
    else:
        props = _communication_properties(activity)
    props["hs_timestamp"] = format_time(activity.occurred_at)
    if activity.owner_id is not None:
        props["hubspot_owner_id"] = activity.owner_id
    if dedupe_property:
        props[dedupe_property] = activity.key_hash
    return {name: cut(value, MAX_PROPERTY) for name, value in props.items()}


def _email_properties(activity: Activity) -> dict[str, str]:
    inbound = activity.direction is Direction.INBOUND
    props = {
        "hs_email_direction": "INCOMING_EMAIL" if inbound else "EMAIL",
        "hs_email_status": "SENT",
    }
    if activity.subject is not None:
        props["hs_email_subject"] = activity.subject
    if activity.body is not None:
        props["hs_email_html"] = html_body(activity.body)
        props["hs_email_text"] = plain_text(activity.body)
    return props


def _communication_properties(activity: Activity) -> dict[str, str]:
    paragraphs = [f"<p><strong>{html.escape(label(activity))}</strong></p>"]
    if activity.subject:
        paragraphs.append(f"<p>{html.escape(activity.subject)}</p>")
    if activity.body:
        paragraphs.append(f"<p>{html_body(activity.body)}</p>")
    return {
        "hs_communication_channel_type": "LINKEDIN_MESSAGE",
        "hs_communication_logged_from": "CRM",
        "hs_communication_body": "".join(paragraphs),
    }


def associations(activity: Activity) -> list[dict[str, Any]]:
    """Inline associations to the contact and the company, when given."""
    contact_type, company_type = ASSOCIATION_TYPES[object_type(activity)]
    targets = [(activity.contact_id, contact_type), (activity.company_id, company_type)]
    return [
        {
            "to": {"id": target},
            "types": [
                {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": kind}
            ],
        }
        for target, kind in targets
        if target is not None
    ]


def create_input(activity: Activity, dedupe_property: str = "") -> dict[str, Any]:
    """The body of a single create."""
    return {
        "properties": properties(activity, dedupe_property),
        "associations": associations(activity),
    }


def batch_input(activity: Activity, dedupe_property: str = "") -> dict[str, Any]:
    """One input of a batch create; the trace id ties its result or error to it."""
    return {
        **create_input(activity, dedupe_property),
        "objectWriteTraceId": activity.key_hash,
    }
