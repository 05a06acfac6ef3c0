"""A guard that refuses any network connection leaving loopback.

Tests install it for the whole session, so a code path that reaches for the
public OpenAI endpoint or a model hub fails loudly instead of silently working
on a machine that happens to have network access.
"""

from __future__ import annotations

import ipaddress
import socket

_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}


class NetworkBlocked(RuntimeError):
    pass


def _is_loopback(host: object) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode()
    host = str(host).strip("[]").lower()
    if host in _LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_installed: dict[str, object] = {}


def install() -> None:
    """Patch socket connect and name resolution to allow loopback only."""
    if _installed:
        return
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def check(sock: socket.socket, address: object) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0] if isinstance(address, tuple) else address
            if not _is_loopback(host):
                raise NetworkBlocked(f"blocked connection to {address!r}: only loopback is allowed")

    def connect(sock, address):
        check(sock, address)
        return real_connect(sock, address)

    def connect_ex(sock, address):
        check(sock, address)
        return real_connect_ex(sock, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_loopback(host):
            raise NetworkBlocked(f"blocked name lookup of {host!r}: only loopback is allowed")
        return real_getaddrinfo(host, *args, **kwargs)

    _installed.update(connect=real_connect, connect_ex=real_connect_ex, getaddrinfo=real_getaddrinfo)
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]


def uninstall() -> None:
    if not _installed:
        return
    socket.socket.connect = _installed.pop("connect")  # type: ignore[method-assign]
    socket.socket.connect_ex = _installed.pop("connect_ex")  # type: ignore[method-assign]
    socket.getaddrinfo = _installed.pop("getaddrinfo")  # type: ignore[assignment]
