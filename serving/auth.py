"""Who may call the front door: bearer tokens from a file, checked in constant time, and a rate per token.

Triton has no authentication of its own (its restricted-API keys guard the admin endpoints, not
inference), so the front door checks every request but the health probes before it reads a body. A
token file holds one ``name:token`` line per client; the name is what logs and limits speak of, the
token is never printed. A request carries ``Authorization: Bearer <token>``, the HTTP header or the
gRPC metadata entry of that name (gRPC keys are lowercase; HTTP header names are not case-sensitive,
so one spelling serves both).

The check costs a few microseconds: the presented token is hashed once (SHA-256) and compared with
``hmac.compare_digest`` against the digest of every known token, without stopping at a match, so
neither the time nor its length tells a client how close a guess came. The file is re-read on demand
(``serve`` does it on SIGHUP): a revoked token stops working with the next request.

    >>> book = TokenBook.from_file("tokens.txt")                        # doctest: +SKIP
    >>> book.name_of("Bearer 3kq...")                                   # doctest: +SKIP
    'alice'
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import stat
import time
from pathlib import Path
from typing import Callable

TOKEN_FILE_ENV = "GANEXPORT_TOKEN_FILE"  # serve: the file of name:token lines
TOKEN_ENV = "GANEXPORT_TOKEN"  # clients (infer, the demo's backend): the token they send
TLS_CA_ENV = "GANEXPORT_TLS_CA"  # clients: the CA file that signed the server's certificate
AUTH_HEADER = "authorization"  # the HTTP header and the gRPC metadata key (gRPC wants it lowercase)
SCHEME = "Bearer"
MIN_TOKEN_CHARS = 16
# RFC 6750's b64token: what a header carries without quoting; names stay plain so log lines stay parseable.
TOKEN_RE = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The one answer to a missing, malformed, unknown or revoked token: it never says which.
UNAUTHENTICATED = f"unauthenticated: this server wants an {AUTH_HEADER.title()}: {SCHEME} <token> header"
NEW_TOKEN_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(24))'"


class TokenFileError(ValueError):
    """A token file that cannot be used: one line naming the file and the line, never a secret."""


def bearer(token: str) -> dict[str, str]:
    """The header (or gRPC metadata entry) that carries ``token``: what tritonclient's ``headers=`` takes."""
    return {AUTH_HEADER: f"{SCHEME} {token}"}


def read_secrets(path: str | os.PathLike, what: str = "token") -> dict[str, str]:
    """``name:secret`` lines -> {name: secret}; blank lines and ``#`` comments are skipped.

    The same format holds the front door's tokens and the demo's logins (``what`` names them in errors).
    A secret is at least ``MIN_TOKEN_CHARS`` characters of RFC 6750's token alphabet; names and secrets
    are each used once."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TokenFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TokenFileError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or type(e).__name__})") from None
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, secret = (part.strip() for part in line.partition(":"))
        where = f"{path}, line {number}"
        if not sep or not NAME_RE.fullmatch(name):
            raise TokenFileError(f"{where}: expected name:{what}, the name in letters, digits, '.', '_' or '-'")
        if not TOKEN_RE.fullmatch(secret) or len(secret) < MIN_TOKEN_CHARS:
            raise TokenFileError(f"{where}: the {what} of {name!r} must be at least {MIN_TOKEN_CHARS} characters "
                                 f"of A-Z a-z 0-9 - . _ ~ + / (make one with {NEW_TOKEN_HINT})")
        if name in found:
            raise TokenFileError(f"{where}: {name!r} appears twice")
        if secret in found.values():
            raise TokenFileError(f"{where}: {name!r} has the {what} of another name")
        found[name] = secret
    if not found:
        raise TokenFileError(f"{path}: no name:{what} line")
    return found


def readable_by_others(path: str | os.PathLike) -> bool:
    """True when users other than the owner may read ``path`` (then say so: chmod 600)."""
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def _digest(secret: bytes) -> bytes:
    return hashlib.sha256(secret).digest()


class TokenBook:
    """The tokens a server accepts, as SHA-256 digests with their names; ``reload`` re-reads the file."""

    def __init__(self, tokens: dict[str, str], path: Path | None = None, what: str = "token"):
        self.path, self.what = path, what
        self._set(tokens)

    @classmethod
    def from_file(cls, path: str | os.PathLike, what: str = "token") -> "TokenBook":
        """``what`` names the secrets in errors: "token", or "password" for the demo's logins."""
        return cls(read_secrets(path, what), Path(path), what)

    def _set(self, tokens: dict[str, str]) -> None:
        # One tuple, replaced whole: a request on the front door's thread sees the old set or the new one.
        self._entries = tuple((_digest(token.encode()), name) for name, token in tokens.items())

    @property
    def names(self) -> list[str]:
        return [name for _, name in self._entries]

    def reload(self) -> list[str]:
        """Re-read the file: the tokens it no longer holds stop working at once. A file that cannot be read
        raises TokenFileError and leaves the tokens as they were (a typo must not lock everyone out)."""
        if self.path is None:
            raise TokenFileError("these tokens were not read from a file")
        self._set(read_secrets(self.path, self.what))
        return self.names

    def name_of(self, authorization: str | None) -> str | None:
        """The name whose token ``authorization`` (``Bearer <token>``) carries; None for anything else."""
        if not authorization:
            return None
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer":
            return None
        presented = _digest(token.strip().encode("utf-8", "replace"))
        found = None
        for digest, name in self._entries:  # every entry, match or not: the time says nothing
            if hmac.compare_digest(digest, presented):
                found = name
        return found

    def check_login(self, user: str, password: str) -> bool:
        """Gradio's ``auth=`` callable: the user is a name, the password its secret."""
        return user is not None and self.name_of(f"{SCHEME} {password}") == user


class RateLimiter:
    """A token bucket per client name: ``rate`` requests a second on average, ``burst`` at once.

    One bucket per name, so a client that floods empties its own bucket only: its extra requests are
    refused at the door, before they cost Triton anything, and the others keep their share. Called from
    the front door's one event-loop thread, so it needs no lock."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic):
        if not rate > 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, not {rate} and {burst}")
        self.rate, self.burst, self.clock = float(rate), int(burst), clock
        self._buckets: dict[str, list[float]] = {}  # name -> [tokens left, when counted]

    def retry_after(self, name: str) -> float:
        """0 when ``name`` may send this request now (and count it), else the seconds until it may."""
        now = self.clock()
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = [float(self.burst), now]
        left = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if left >= 1.0:
            bucket[0] = left - 1.0
            return 0.0
        bucket[0] = left
        return (1.0 - left) / self.rate


def rate_limited(name: str, rate: float, burst: int, wait: float) -> str:
    """The front door's refusal of a request above its token's rate; ``RATE_LIMITED`` reads the wait back."""
    return f"{name}: above the rate limit of {rate:g} requests/s (burst {burst}); retry in {wait:.2f} s"


RATE_LIMITED = re.compile(r"above the rate limit .*; retry in ([0-9.]+) s")  # rate_limited's wait, for clients


def retry_after_header(seconds: float) -> str:
    """Retry-After takes whole seconds: round up, so a client that waits that long is let in."""
    return str(max(1, math.ceil(seconds)))
