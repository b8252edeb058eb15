"""Throwaway TLS material so the fakes are served over real, verified HTTPS.

A private CA from ``trustme`` signs one server certificate for ``127.0.0.1`` and
``localhost``. Clients trust the CA through a PEM bundle on disk (what
``requests`` wants in ``Session.verify``) or through an ``ssl.SSLContext``, never
by turning verification off, so certificate handling in the code under test is
exercised as it is in production.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class TlsMaterial:
    """A CA, a server context holding a certificate it signed, and its bundle."""

    ca: trustme.CA
    server_context: ssl.SSLContext
    ca_path: Path

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this CA."""
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self.ca.configure_trust(context)
        return context


def build_tls(directory: Path) -> TlsMaterial:
    """Create a CA and server certificate; write the CA bundle into ``directory``."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*SERVER_NAMES).configure_cert(server_context)
    ca_path = directory / "ca.pem"
    ca.cert_pem.write_to_path(ca_path)
    return TlsMaterial(ca=ca, server_context=server_context, ca_path=ca_path)
