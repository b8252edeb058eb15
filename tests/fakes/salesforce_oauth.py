"""The OAuth 2.0 grants the fake Salesforce token endpoint accepts.

``ConnectedApp`` holds one connected app's credentials and decides whether a
token request is granted; issuing and remembering the token is left to
``FakeSalesforce``, which owns the lock.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import jwt

from tests.fakes.server import Request

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_INVALID_CLIENT = ("invalid_client", "invalid client credentials")
_INVALID_ASSERTION = ("invalid_grant", "invalid assertion")


@dataclass(frozen=True)
class ConnectedApp:
    """A connected app: client credentials and, optionally, a JWT signing key."""

    client_id: str
    client_secret: str
    jwt_public_key: bytes | None
    jwt_username: str
    jwt_audience: str

    def refusal(self, request: Request) -> tuple[str, str] | None:
        """``(error, error_description)`` if the grant fails, else ``None``."""
        form = _form(request)
        grant = form.get("grant_type")
        if grant == "client_credentials":
            return self._check_client(form, request.header("authorization"))
        if grant == JWT_BEARER_GRANT:
            return self._check_assertion(form.get("assertion"))
        return ("unsupported_grant_type", "grant type not supported")

    def answer(self, token: str, instance_url: str, user_id: str, org_id: str) -> Any:
        """The success body for a newly issued ``token``."""
        identity = f"https://login.salesforce.com/id/{org_id}/{user_id}"
        issued_at = str(int(time.time() * 1000))
        digest = hmac.new(
            self.client_secret.encode(),
            (identity + issued_at).encode(),
            hashlib.sha256,
        ).digest()
        return {
            "access_token": token,
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(digest).decode(),
        }

    def _check_client(
        self, form: dict[str, str], authorization: str | None
    ) -> tuple[str, str] | None:
        client_id, secret = _basic(authorization) or (
            form.get("client_id"),
            form.get("client_secret"),
        )
        if client_id != self.client_id or secret is None:
            return _INVALID_CLIENT
        if not secrets.compare_digest(secret.encode(), self.client_secret.encode()):
            return _INVALID_CLIENT
        return None

    def _check_assertion(self, assertion: str | None) -> tuple[str, str] | None:
        if not assertion or self.jwt_public_key is None:
            return _INVALID_ASSERTION
        try:
            claims = jwt.decode(
                assertion,
                self.jwt_public_key,
                algorithms=["RS256"],
                audience=self.jwt_audience,
                issuer=self.client_id,
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.InvalidAudienceError:
            return ("invalid_grant", "audience is invalid")
        except jwt.ExpiredSignatureError:
            return ("invalid_grant", "expired authorization code")
        except jwt.InvalidIssuerError:
            return _INVALID_CLIENT
        except jwt.InvalidTokenError:
            return _INVALID_ASSERTION
        if claims["sub"] != self.jwt_username:
            return _INVALID_ASSERTION
        return None


def _form(request: Request) -> dict[str, str]:
    # Salesforce reads only form bodies; anything else looks like no grant at all.
    content_type = request.header("content-type") or ""
    if not content_type.startswith("application/x-www-form-urlencoded"):
        return {}
    fields = parse_qs(request.body.decode("utf-8", "replace"))
    return {name: values[0] for name, values in fields.items()}


def _basic(authorization: str | None) -> tuple[str, str] | None:
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote(client_id), unquote(secret)) if sep else None
