"""The contract's shapes: what Enginy sends, what the bridge delivers and answers.

``ActivityRequest`` is the body of ``POST /activities`` exactly as Enginy sends it;
``Activity`` is its normalised form, the one the journal stores and the adapters
map. Normalising decides:

* ``occurredAt`` is read as ISO 8601 only; a time without a zone is UTC; a missing
  one becomes the time of receipt.
* Empty strings in id fields mean "absent".
* The idempotency key is ``type:direction:messageId`` when Enginy gives a
  ``metadata.messageId``, else a hash of the canonical payload (known fields only,
  so an added field in a later Enginy release does not break deduplication).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    ValidationError,
)

from bridge.errors import InvalidRequest, Problem

MAX_MESSAGE_ID = 512


class ActivityType(StrEnum):
    """The kinds of activity Enginy logs."""

    EMAIL = "EMAIL"
    LINKEDIN = "LINKEDIN"
    LINKEDIN_CONNECTION = "LINKEDIN_CONNECTION"
    LINKEDIN_INMAIL = "LINKEDIN_INMAIL"


class Direction(StrEnum):
    """``INBOUND`` comes from the contact, ``OUTBOUND`` from the team."""

    INBOUND = "INBOUND"
    OUTBOUND = "OUTBOUND"


def _iso8601(value: object) -> object:
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("is not an ISO 8601 date-time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _blank_is_none(value: object) -> object:
    return None if value == "" else value


def _number_as_text(value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


IsoDateTime = Annotated[datetime, BeforeValidator(_iso8601)]
OptionalId = Annotated[StrictStr | None, BeforeValidator(_blank_is_none)]
MessageId = Annotated[StrictStr | None, BeforeValidator(_number_as_text)]


class Metadata(BaseModel):
    """``metadata``: the fields Enginy is known to send, and any others."""

    model_config = ConfigDict(extra="allow", frozen=True)

    message_id: MessageId = Field(None, alias="messageId")
    sequence_index: StrictInt | None = Field(None, alias="sequenceIndex")
    sequence_message_count: StrictInt | None = Field(None, alias="sequenceMessageCount")


class ActivityRequest(BaseModel):
    """The body of ``POST /activities``. Unknown fields are accepted and ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: ActivityType
    subject: StrictStr | None = None
    body: StrictStr | None = None
    direction: Direction | None = None
    owner_id: OptionalId = Field(None, alias="ownerId")
    occurred_at: IsoDateTime | None = Field(None, alias="occurredAt")
    contact_id: OptionalId = Field(None, alias="contactId")
    company_id: OptionalId = Field(None, alias="companyId")
    metadata: Metadata | None = None

    @classmethod
    def parse(cls, raw: bytes) -> ActivityRequest:
        """Parse a request body; raise ``InvalidRequest`` naming every bad field."""
        try:
            request = cls.model_validate_json(raw)
        except ValidationError as error:
            raise _invalid(error) from None
        message_id = request.message_id
        if message_id is not None and len(message_id) > MAX_MESSAGE_ID:
            problem = Problem("metadata.messageId", "is longer than 512 characters")
            raise InvalidRequest("metadata.messageId is too long.", [problem])
        return request

    @property
    def message_id(self) -> str | None:
        if self.metadata is None:
            return None
        return self.metadata.message_id or None

    def idempotency_key(self) -> str:
        """``type:direction:messageId``, or a hash of the canonical payload."""
        if self.message_id is not None:
            return f"{self.type}:{self.direction or ''}:{self.message_id}"
        canonical = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
        return "payload:" + hashlib.sha256(text.encode()).hexdigest()

    def normalise(self, received_at: datetime) -> Activity:
        """The activity as it will be delivered, with its key and times fixed."""
        key = self.idempotency_key()
        return Activity(
            key=key,
            key_hash=hash_key(key),
            type=self.type,
            direction=self.direction,
            subject=self.subject,
            body=self.body,
            owner_id=self.owner_id,
            occurred_at=self.occurred_at or received_at,
            contact_id=self.contact_id,
            company_id=self.company_id,
        )


def _invalid(error: ValidationError) -> InvalidRequest:
    items = error.errors(include_url=False, include_input=False, include_context=False)
    details = [
        Problem(
            ".".join(str(part) for part in item["loc"]) or "body",
            item["msg"].removeprefix("Value error, "),
        )
        for item in items
    ]
    if any(item["type"] == "json_invalid" for item in items):
        return InvalidRequest("The body is not valid JSON.", details)
    if any(not item["loc"] for item in items):
        return InvalidRequest("The body must be a JSON object.", details)
    names = ", ".join(dict.fromkeys(problem.field for problem in details))
    return InvalidRequest(f"Invalid fields: {names}.", details)


def hash_key(key: str) -> str:
    """The hex SHA-256 of an idempotency key: safe to log, store and send."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class Activity:
    """One activity ready for delivery. ``occurred_at`` is always aware, in UTC."""

    key: str
    key_hash: str
    type: ActivityType
    direction: Direction | None
    subject: str | None
    body: str | None
    owner_id: str | None
    occurred_at: datetime
    contact_id: str | None
    company_id: str | None

    @property
    def short_hash(self) -> str:
        """Twelve hex digits of the key's hash, for log lines."""
        return self.key_hash[:12]

    def to_json(self) -> str:
        data = {
            "key": self.key,
            "key_hash": self.key_hash,
            "type": self.type.value,
            "direction": self.direction.value if self.direction else None,
            "subject": self.subject,
            "body": self.body,
            "owner_id": self.owner_id,
            "occurred_at": self.occurred_at.isoformat(),
            "contact_id": self.contact_id,
            "company_id": self.company_id,
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Activity:
        data = json.loads(text)
        data["type"] = ActivityType(data["type"])
        if data["direction"] is not None:
            data["direction"] = Direction(data["direction"])
        data["occurred_at"] = datetime.fromisoformat(data["occurred_at"])
        return cls(**data)

    def answer(self, crm_id: str) -> dict[str, Any]:
        """The body of a successful ``POST /activities`` answer."""
        return {
            "id": crm_id,
            "type": self.type.value,
            "subject": self.subject,
            "direction": self.direction.value if self.direction else None,
            "occurredAt": format_time(self.occurred_at),
        }


@dataclass(frozen=True)
class Limits:
    """Rate-limit facts read off a CRM answer; ``None`` where the CRM said nothing.

    HubSpot: ``max`` requests per ``interval`` seconds with ``remaining`` left,
    and ``daily_remaining``. Salesforce: ``used`` of ``limit`` daily API calls.
    """

    max: int | None = None
    remaining: int | None = None
    interval: float | None = None
    daily_remaining: int | None = None
    used: int | None = None
    limit: int | None = None


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, milliseconds only when there are some."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
