"""Refuses connections and name lookups beyond loopback, in the test process and the Pythons it starts.

The test suite must never reach the network: a test that does depends on the machine it runs on and may
send test data somewhere real. ``install(log_path)`` patches the socket module so that connecting to (or
resolving) anything but loopback raises ``NonLoopbackConnectionError`` naming the address, and appends a
line to ``log_path``, which the conftest reads after each test so that a refusal fails the test even when
the code under test catches the error (a client retrying in its background thread would).

Child processes are covered by ``sitecustomize.py`` beside this file: the conftest puts this directory on
``PYTHONPATH`` and names the log in ``SEGMENT_LITE_TEST_NETWORK_LOG``, and the child installs the same
guard at start-up.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from typing import Any, Callable, Optional

#: Names the guard lets through; everything else that is not a loopback address is refused.
LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "ip6-localhost", "ip6-loopback"})
#: The environment variable naming the refusal log; a child process installs the guard when it is set.
LOG_ENV = "SEGMENT_LITE_TEST_NETWORK_LOG"

_lock = threading.Lock()
_log_path: Optional[str] = None
_originals: dict[str, Any] = {}


class NonLoopbackConnectionError(OSError):
    """A test tried to reach a host that is not loopback (127.0.0.0/8, ::1, localhost)."""


def _text(host: object) -> Optional[str]:
    if isinstance(host, bytes):
        return host.decode("ascii", "replace")
    if isinstance(host, str):
        return host
    return None


def is_loopback(host: object, *, unspecified_ok: bool = False) -> bool:
    """Whether ``host`` (a name or an address, as given to socket calls) stays on this machine.

    ``unspecified_ok`` lets ``""``, ``None``, ``0.0.0.0`` and ``::`` through: a lookup of those is for
    binding a server and sends nothing anywhere.
    """
    if host is None:
        return unspecified_ok
    text = _text(host)
    if text is None:
        return False
    text = text.strip("[]").split("%", 1)[0]  # "[::1]" and "fe80::1%eth0" forms
    if text == "":
        return unspecified_ok
    if text.lower() in LOOPBACK_NAMES:
        return True
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False  # any other name needs a lookup that may leave the machine
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback or (unspecified_ok and address.is_unspecified)


def _is_address_literal(host: object) -> bool:
    text = _text(host)
    if text is None:
        return False
    try:
        ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return False
    return True


def _refuse(what: str, host: object, port: object) -> NonLoopbackConnectionError:
    text = _text(host)
    where = (text if text is not None else repr(host)) + (f" port {port}" if port else "")
    message = (
        f"network guard: the test suite tried to {what} {where} (pid {os.getpid()}); tests may reach "
        "loopback only (127.0.0.0/8, ::1, localhost): serve what the test needs on 127.0.0.1"
    )
    if _log_path is not None:
        with _lock, open(_log_path, "a", encoding="utf-8") as log:
            log.write(message + "\n")
    return NonLoopbackConnectionError(message)


def _check_address(sock: socket.socket, address: Any, what: str) -> None:
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return  # Unix sockets and the like never leave the machine
    if isinstance(address, tuple) and address:
        host, port = address[0], address[1] if len(address) > 1 else None
    else:
        host, port = address, None
    if not is_loopback(host):
        raise _refuse(what, host, port)


def _guarded_connect(sock: socket.socket, address: Any) -> None:
    _check_address(sock, address, "connect to")
    _originals["connect"](sock, address)


def _guarded_connect_ex(sock: socket.socket, address: Any) -> int:
    _check_address(sock, address, "connect to")
    result: int = _originals["connect_ex"](sock, address)
    return result


def _guarded_create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    host, port = address[0], address[1]
    if not is_loopback(host):
        raise _refuse("connect to", host, port)
    result: socket.socket = _originals["create_connection"](address, *args, **kwargs)
    return result


def _guarded_lookup(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def lookup(host: Any, *args: Any, **kwargs: Any) -> Any:
        # An address literal is parsed, not looked up; connecting to it is what the connect guard checks.
        if not is_loopback(host, unspecified_ok=True) and not _is_address_literal(host):
            port = args[0] if args else kwargs.get("port")
            raise _refuse("look up", host, port)
        return original(host, *args, **kwargs)

    lookup.__name__ = lookup.__qualname__ = name
    lookup.__doc__ = original.__doc__
    return lookup


def install(log_path: Optional[str]) -> None:
    """Patch the socket module (once per process); refusals are appended to ``log_path`` if given."""
    global _log_path
    _log_path = log_path
    if _originals:
        return
    _originals.update(
        connect=socket.socket.connect,
        connect_ex=socket.socket.connect_ex,
        create_connection=socket.create_connection,
        getaddrinfo=socket.getaddrinfo,
        gethostbyname=socket.gethostbyname,
        gethostbyname_ex=socket.gethostbyname_ex,
    )
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    socket.create_connection = _guarded_create_connection
    for name in ("getaddrinfo", "gethostbyname", "gethostbyname_ex"):
        setattr(socket, name, _guarded_lookup(name, _originals[name]))


def uninstall() -> None:
    """Put the socket module back as it was."""
    global _log_path
    if not _originals:
        return
    socket.socket.connect = _originals.pop("connect")  # type: ignore[method-assign]
    socket.socket.connect_ex = _originals.pop("connect_ex")  # type: ignore[method-assign]
    for name in list(_originals):
        setattr(socket, name, _originals.pop(name))
    _log_path = None


def install_from_environment() -> None:
    """In a child process: install the guard if the parent test run asked for it."""
    log_path = os.environ.get(LOG_ENV)
    if log_path:
        install(log_path)
