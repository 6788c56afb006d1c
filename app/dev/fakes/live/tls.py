"""A throwaway certificate authority for the fake Live server.

google-genai always connects with `wss://` (it rewrites whatever scheme `base_url` has),
so a local stand-in for Gemini must speak TLS. `trustme` makes a CA in memory and a
server certificate for 127.0.0.1/localhost signed by it; clients trust the CA either with
an `ssl.SSLContext` passed as `http_options={"async_client_args": {"ssl": ctx}}` or by
pointing `SSL_CERT_FILE` at the PEM written by `write_ca_pem`.
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path

import trustme

DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")

CA_CERT_FILE = "ca.pem"
CA_KEY_FILE = "ca-key.pem"


class ThrowawayCA:
    """A CA plus one server certificate. Not for anything but local testing."""

    def __init__(self, hosts: Sequence[str] = DEFAULT_HOSTS, ca: trustme.CA | None = None):
        self._ca = ca if ca is not None else trustme.CA(organization_name="voicebot fake Live")
        self._server_cert = self._ca.issue_cert(*hosts)

    @classmethod
    def in_dir(cls, cert_dir: Path, hosts: Sequence[str] = DEFAULT_HOSTS) -> ThrowawayCA:
        """Reuse the CA kept in `cert_dir` (or create and keep one there).

        Keeping the CA lets a developer point SSL_CERT_FILE at one file across restarts
        of `python -m app.dev.fakes.live`. The key is written owner-readable only.
        """
        cert_path, key_path = cert_dir / CA_CERT_FILE, cert_dir / CA_KEY_FILE
        if cert_path.exists() and key_path.exists():
            ca = trustme.CA.from_pem(cert_path.read_bytes(), key_path.read_bytes())
            return cls(hosts, ca)
        made = cls(hosts)
        cert_dir.mkdir(parents=True, exist_ok=True)
        made.write_ca_pem(cert_path)
        key_path.touch(mode=0o600)
        key_path.write_bytes(made._ca.private_key_pem.bytes())
        return made

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate, PEM encoded."""
        return bytes(self._ca.cert_pem.bytes())

    def server_context(self) -> ssl.SSLContext:
        """A server-side context presenting the certificate for the local hosts."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_cert.configure_cert(ctx)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts only this CA (hostname checking stays on)."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        self._ca.configure_trust(ctx)
        return ctx

    def write_ca_pem(self, path: Path) -> Path:
        """Write the CA certificate to `path` (for SSL_CERT_FILE) and return the path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.ca_pem)
        return path
