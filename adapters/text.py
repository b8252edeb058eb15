"""Text shaping shared by the adapters: HTML to plain text, labels, field limits."""

from __future__ import annotations

import html
import re

from inscriptis import get_text
from inscriptis.css_profiles import CSS_PROFILES
from inscriptis.model.config import ParserConfig

from bridge.models import Activity, ActivityType, Direction

_TAG = re.compile(r"<(?:[a-zA-Z][a-zA-Z0-9]*|/[a-zA-Z][a-zA-Z0-9]*|!--)[^>]*>")
_CONFIG = ParserConfig(css=CSS_PROFILES["strict"], display_links=True)
_ELLIPSIS = "…"

_KINDS = {
    ActivityType.EMAIL: ("Email", "sent", "received"),
    ActivityType.LINKEDIN: ("LinkedIn message", "sent", "received"),
    ActivityType.LINKEDIN_INMAIL: ("LinkedIn InMail", "sent", "received"),
    ActivityType.LINKEDIN_CONNECTION: (
        "LinkedIn connection request",
        "sent",
        "accepted",
    ),
}


def looks_like_html(text: str) -> bool:
    """True when ``text`` carries markup, as e-mails from Enginy may."""
    return _TAG.search(text) is not None


def plain_text(text: str) -> str:
    """Readable plain text: HTML laid out (paragraphs, lists, links), else as is."""
    if not looks_like_html(text):
        return text
    lines = get_text(text, _CONFIG).splitlines()
    return "\n".join(line.rstrip() for line in lines).strip()


def html_body(text: str) -> str:
    """HTML for rich-text fields: markup kept, plain text escaped with line breaks."""
    if looks_like_html(text):
        return text
    return html.escape(text).replace("\n", "<br>")


def label(activity: Activity) -> str:
    """What happened, in words: "LinkedIn InMail received", "Email sent"."""
    kind, sent, received = _KINDS[activity.type]
    if activity.direction is None:
        return kind
    return f"{kind} {sent if activity.direction is Direction.OUTBOUND else received}"


def cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` characters, an ellipsis marking a cut."""
    if len(text) <= limit:
        return text
    return text[: limit - len(_ELLIPSIS)] + _ELLIPSIS
