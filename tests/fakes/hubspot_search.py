"""Search requests of the fake HubSpot API: parsing, limits and matching.

Only the ``EQ`` and ``IN`` operators are understood. Any other operator, a
full-text ``query`` or a filter on an unknown property is refused with a 400
rather than silently ignored, so a caller relying on more than the fake models
finds out in its tests. ``sorts`` is ignored: results come in creation order.
Matching is exact and case-sensitive, whereas HubSpot folds case for some
property types.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

MAX_GROUPS = 5
MAX_FILTERS_PER_GROUP = 6
MAX_FILTERS = 18
MAX_IN_VALUES = 100
MAX_LIMIT = 200
DEFAULT_LIMIT = 10


class SearchError(ValueError):
    """A search body HubSpot would answer with 400."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Filter:
    """One ``EQ`` or ``IN`` filter; ``EQ`` is kept as a one-value ``IN``."""

    property_name: str
    values: frozenset[str]

    def matches(self, properties: Mapping[str, str | None]) -> bool:
        """Whether the property is set to one of the values."""
        return properties.get(self.property_name) in self.values


@dataclass(frozen=True)
class Search:
    """A parsed search body."""

    groups: tuple[tuple[Filter, ...], ...]
    properties: tuple[str, ...]
    limit: int
    offset: int

    def matches(self, properties: Mapping[str, str | None]) -> bool:
        """Groups are ORed, the filters of a group ANDed; no group matches all."""
        if not self.groups:
            return True
        return any(all(f.matches(properties) for f in group) for group in self.groups)


def parse_search(body: dict[str, Any], searchable: AbstractSet[str]) -> Search:
    """Parse and bound-check a search body; raise :class:`SearchError`."""
    if body.get("query"):
        raise SearchError(
            "UNSUPPORTED", "Full-text query is not supported by the fake."
        )
    # The SDK's models send absent fields as missing, dict bodies may send null.
    groups = _parse_groups(body.get("filterGroups") or [], searchable)
    properties = body.get("properties") or []
    if not isinstance(properties, list) or not all(
        isinstance(name, str) for name in properties
    ):
        raise SearchError("INVALID_SEARCH", "properties must be a list of strings.")
    wanted = tuple(name for name in properties if name in searchable)
    return Search(groups, wanted, _parse_limit(body), _parse_after(body))


def _parse_groups(
    raw: Any, searchable: AbstractSet[str]
) -> tuple[tuple[Filter, ...], ...]:
    if not isinstance(raw, list):
        raise SearchError("INVALID_SEARCH", "filterGroups must be a list.")
    if len(raw) > MAX_GROUPS:
        message = f"At most {MAX_GROUPS} filterGroups are allowed."
        raise SearchError("TOO_MANY_FILTER_GROUPS", message)
    groups = tuple(_parse_group(group, searchable) for group in raw)
    if sum(len(group) for group in groups) > MAX_FILTERS:
        message = f"At most {MAX_FILTERS} filters are allowed in all."
        raise SearchError("TOO_MANY_FILTERS", message)
    return groups


def _parse_group(raw: Any, searchable: AbstractSet[str]) -> tuple[Filter, ...]:
    filters = raw.get("filters") if isinstance(raw, dict) else None
    if not isinstance(filters, list):
        raise SearchError("INVALID_SEARCH", "Each filter group needs a filters list.")
    if len(filters) > MAX_FILTERS_PER_GROUP:
        message = f"At most {MAX_FILTERS_PER_GROUP} filters are allowed per group."
        raise SearchError("TOO_MANY_FILTERS", message)
    return tuple(_parse_filter(item, searchable) for item in filters)


def _parse_filter(raw: Any, searchable: AbstractSet[str]) -> Filter:
    if not isinstance(raw, dict):
        raise SearchError("INVALID_SEARCH", "A filter must be an object.")
    name = raw.get("propertyName")
    if not isinstance(name, str) or name not in searchable:
        message = f"Property {name} does not exist or cannot be searched."
        raise SearchError("PROPERTY_DOESNT_EXIST", message)
    operator = raw.get("operator")
    if operator == "EQ":
        return Filter(name, frozenset({_scalar(raw.get("value"), name)}))
    if operator == "IN":
        return Filter(name, _parse_in_values(raw.get("values"), name))
    message = f"Operator {operator} is not supported by the fake."
    raise SearchError("INVALID_OPERATOR", message)


def _parse_in_values(raw: Any, name: str) -> frozenset[str]:
    if not isinstance(raw, list) or not raw:
        raise SearchError("INVALID_SEARCH", f"IN on {name} needs a values list.")
    if len(raw) > MAX_IN_VALUES:
        message = f"IN on {name} allows at most {MAX_IN_VALUES} values."
        raise SearchError("TOO_MANY_VALUES", message)
    return frozenset(_scalar(value, name) for value in raw)


def _scalar(value: Any, name: str) -> str:
    # HubSpot compares on the string form; the SDK always sends strings anyway.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SearchError("INVALID_SEARCH", f"Filter on {name} needs a scalar value.")
    return str(value)


def _parse_limit(body: dict[str, Any]) -> int:
    limit = body.get("limit")
    if limit is None:
        return DEFAULT_LIMIT
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise SearchError("INVALID_LIMIT", "limit must be an integer.")
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError("INVALID_LIMIT", f"limit must be between 1 and {MAX_LIMIT}.")
    return limit


def _parse_after(body: dict[str, Any]) -> int:
    after = body.get("after")
    if after is None:
        return 0
    if isinstance(after, str) and after.isascii() and after.isdigit():
        return int(after)
    raise SearchError("INVALID_SEARCH", "after must be a paging token from a result.")
