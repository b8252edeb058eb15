"""Getting and keeping a Salesforce access token, and the HTTP session for it.

Three ways in, chosen by ``[salesforce] auth``:

* ``access_token``: another component owns the token (``SALESFORCE_ACCESS_TOKEN``
  with ``[salesforce] instance_url``); an expired one cannot be renewed here.
* ``client_credentials``: the OAuth client-credentials flow of a connected app,
  against the org's My Domain (``[salesforce] domain``).
* ``jwt``: the OAuth JWT bearer flow, signing with ``SALESFORCE_PRIVATE_KEY_FILE``.

simple-salesforce's own login helpers hard-code ``*.salesforce.com`` and, for
passwords, the SOAP login being retired, so the token requests are made here.
"""

from __future__ import annotations

import http.cookiejar
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import requests
from pydantic import SecretStr

from bridge.config import SalesforceSettings, Secrets
from bridge.errors import CrmAuthError, CrmError, CrmUnavailable

_JWT_LIFETIME = 180


class CrmSession(requests.Session):
    """A session that always applies a timeout and, when configured, a CA bundle.

    ``verify`` is passed per request because requests lets ``REQUESTS_CA_BUNDLE``
    from the environment override a session's own ``verify``.
    """

    def __init__(self, timeouts: tuple[float, float], ca_bundle: Path | None) -> None:
        super().__init__()
        # Bearer tokens only: Salesforce's cookies (BrowserId and the like) are
        # of no use to an API client, and keeping them costs time per request.
        self.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
        self._timeouts = timeouts
        self._ca_bundle = str(ca_bundle) if ca_bundle else None

    def request(
        self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", self._timeouts)
        if self._ca_bundle is not None:
            kwargs["verify"] = self._ca_bundle
        return super().request(method, url, *args, **kwargs)


@dataclass(frozen=True)
class Login:
    """An access token and the instance it is good for."""

    token: str
    instance_url: str


class Authenticator:
    """Obtains access tokens the configured way."""

    def __init__(
        self, settings: SalesforceSettings, secrets: Secrets, session: requests.Session
    ) -> None:
        self._settings = settings
        self._secrets = secrets
        self._session = session

    @property
    def can_renew(self) -> bool:
        """Whether an expired token can be replaced without an operator."""
        return self._settings.auth != "access_token"

    def login(self) -> Login:
        """A fresh token; raise ``CrmError`` when the org refuses or is unreachable."""
        if self._settings.auth == "access_token":
            token = _required(self._secrets.salesforce_access_token, "access token")
            return Login(token, self._settings.instance_url)
        if self._settings.auth == "client_credentials":
            form = self._client_credentials()
        else:
            form = self._jwt_bearer()
        return self._token_request(form)

    def _client_credentials(self) -> dict[str, str]:
        secrets = self._secrets
        return {
            "grant_type": "client_credentials",
            "client_id": _required(secrets.salesforce_consumer_key, "consumer key"),
            "client_secret": _required(
                secrets.salesforce_consumer_secret, "consumer secret"
            ),
        }

    def _jwt_bearer(self) -> dict[str, str]:
        key_file = self._secrets.salesforce_private_key_file
        if key_file is None:
            raise _refused("private key file is not set")
        claims = {
            "iss": _required(self._secrets.salesforce_consumer_key, "consumer key"),
            "sub": self._settings.username,
            "aud": self._settings.audience,
            "exp": int(time.time()) + _JWT_LIFETIME,
        }
        assertion = jwt.encode(claims, key_file.read_bytes(), algorithm="RS256")
        return {
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
            "assertion": assertion,
        }

    def _token_request(self, form: dict[str, str]) -> Login:
        url = f"{self._settings.login_url}/services/oauth2/token"
        try:
            answer = self._session.post(url, data=form)
            body = answer.json()
        except (requests.RequestException, ValueError) as error:
            raise _unreachable(error) from None
        if answer.status_code >= 500 or not isinstance(body, dict):
            raise _unreachable(None, answer.status_code)
        if answer.status_code != 200 or "access_token" not in body:
            raise _refused(
                "refused the credentials",
                status=answer.status_code,
                code=str(body.get("error", "")),
            )
        instance_url = self._settings.instance_url or str(body["instance_url"])
        return Login(str(body["access_token"]), instance_url)


def _required(value: SecretStr | None, name: str) -> str:
    if value is None:
        raise _refused(f"{name} is not set")
    return value.get_secret_value()


def _refused(what: str, status: int = 0, code: str = "") -> CrmError:
    return CrmAuthError(
        f"Salesforce login: {what}.",
        backend="salesforce",
        operation="login",
        status=status,
        code=code,
    )


def _unreachable(error: Exception | None, status: int = 0) -> CrmError:
    return CrmUnavailable(
        "Salesforce's login service could not be reached.",
        backend="salesforce",
        operation="login",
        status=status,
        code=type(error).__name__ if error else "",
    )
