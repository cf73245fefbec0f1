"""TLS for the front door's public ports, with asyncio's and grpc.aio's own TLS, from one certificate and key.

Both files are read and checked once, before anything listens, so a wrong path, a key that does not
match the certificate or a file that is not PEM is one line naming the flag, never a traceback from the
event loop. Triton's own ports behind the front door are loopback only and stay plain.

Clients trust the server with the CA file that signed its certificate (``--tls-ca``); tritonclient takes
it as ``ssl_options={"ca_certs": CA}`` (HTTP) or ``root_certificates=CA`` (gRPC).
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path


class TlsError(ValueError):
    """A certificate or key that cannot serve: one line naming the option."""


@dataclass(frozen=True)
class TlsFiles:
    """A PEM certificate chain and its private key (``serve --tls-cert --tls-key``)."""

    cert: Path
    key: Path

    @classmethod
    def of(cls, cert: str | os.PathLike | None, key: str | os.PathLike | None) -> "TlsFiles | None":
        """Both or neither: one alone is an error naming the other."""
        if cert is None and key is None:
            return None
        if cert is None or key is None:
            raise TlsError("--tls-cert and --tls-key go together: give both (the certificate and its key), "
                           "or neither")
        files = cls(Path(cert), Path(key))
        files.server_context()  # read and matched now, before anything listens
        return files

    def server_context(self) -> ssl.SSLContext:
        """The HTTPS side's context: TLS 1.2 or later, this certificate and key."""
        for flag, path in (("--tls-cert", self.cert), ("--tls-key", self.key)):
            if not path.is_file():
                raise TlsError(f"{flag} {path}: no such file")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert, self.key)
        except ssl.SSLError as e:
            raise TlsError(f"--tls-cert {self.cert} / --tls-key {self.key}: not a PEM certificate and its "
                           f"matching private key ({e.reason or e})") from None
        except OSError as e:
            raise TlsError(f"--tls-cert {self.cert} / --tls-key {self.key}: cannot be read ({e.strerror})") from None
        return context

    def grpc_credentials(self):
        """The gRPC side's server credentials from the same files."""
        import grpc

        return grpc.ssl_server_credentials([(self.key.read_bytes(), self.cert.read_bytes())])
