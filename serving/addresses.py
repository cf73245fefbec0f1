"""Where a server listens: free and taken ports, loopback or exposed, the address a client dials.

Every service this project starts (Triton, the demo page) binds 127.0.0.1 by
default. Binding anything else needs a way to authenticate clients (a token or
login file), else it is refused in one line before anything else can fail;
``--insecure`` turns the refusal into a warning, for a network the user already
protects. A taken port is named before a process starts.
"""

from __future__ import annotations

import errno
import ipaddress
import socket

from ganexport.serving.triton_log import ServerError

DEFAULT_HOST = "127.0.0.1"


# Ports free_port has handed out in this process. The OS may offer the port it just offered again once the
# probing socket is closed, and a server asks for its HTTP, gRPC and metrics ports before it binds any of them:
# two alike are refused ("ports must differ"), seen once in a thousand server starts.
_HANDED_OUT: set[int] = set()


def free_port(host: str = DEFAULT_HOST) -> int:
    """A port the OS says is free right now on ``host`` and that this process was not given before (for tests:
    another process may still take it)."""
    while True:
        with socket.socket(_family(host), socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _HANDED_OUT:
            if len(_HANDED_OUT) > 10_000:  # most of the ephemeral range: forget the oldest hand-outs
                _HANDED_OUT.clear()
            _HANDED_OUT.add(port)
            return port


def _family(host: str) -> int:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_port(host: str, port: int, what: str = "") -> None:
    """Raise ServerError naming the port when something already listens on it.

    SO_REUSEADDR as Triton sets it: a port in TIME_WAIT after a previous server
    is fine, a listening socket is not.
    """
    label = f"{what} port" if what else "port"
    if not 0 < port < 65536:
        raise ServerError(f"{label} {port} is not a valid port number")
    with socket.socket(_family(host), socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            why = "is already in use" if e.errno == errno.EADDRINUSE else f"cannot be bound ({e.strerror})"
            raise ServerError(f"{label} {port} on {host} {why}") from None


def is_loopback(host: str) -> bool:
    """True for localhost and 127.0.0.0/8 or ::1; hostnames other than localhost count as exposed."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, what: str = "Triton") -> str | None:
    """The warning for a service bound beyond loopback (None on loopback): nothing here authenticates."""
    if is_loopback(host):
        return None
    return (f"warning: {what} will listen on {host}, reachable from other machines; it has no "
            "authentication (the default, 127.0.0.1, is reachable from this machine only)")


def open_listen_refusal(host: str, what: str, flag: str, secret: str) -> str | None:
    """The one-line refusal for ``what`` bound beyond loopback with nothing to authenticate its clients
    (None on loopback): it names the flag that fixes it, and the one that overrides it."""
    if is_loopback(host):
        return None
    return (f"--host {host} would let other machines reach {what} with no authentication: add {flag} FILE "
            f"(one name:{secret} line per client), or --insecure if your network already keeps strangers out")


def hostport(host: str, port: int) -> str:
    """``host:port`` a client can connect to: wildcard binds are reached over loopback."""
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
