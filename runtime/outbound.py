"""Where the router and the adapters may send requests (callbacks, department systems).

A URL is refused when it carries credentials (they would end up in logs and statuses) or
is not http(s). When hosts are allow-listed (LIANBAN_OUTBOUND_HOSTS), only those are
reached, and listing a host is what permits an internal address. Any other host must
resolve to public addresses only: loopback, private, link-local (169.254.169.254, the
cloud metadata service) and the like are refused, checked on the resolved IP so a public
name pointing inward is refused too.

A callback URL must, in addition, lie under one of the operator's callback prefixes
(LIANBAN_CALLBACK_URL_PREFIXES) when there are any: same scheme, host and port, and a
path that starts at a segment boundary (`https://p.gov.cn/cb` allows `/cb/lianban`, not
`/cbx` nor `https://p.gov.cn.evil.example/cb`). The prefixes narrow the host policy;
they never widen it (an internal host must still be listed as an outbound host).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

Resolver = Callable[[str, int], Iterable[Any]]


class OutboundRefused(Exception):
    """The URL may not be called; the message says why, without calling it."""


def parse_hosts(text: str) -> tuple[str, ...]:
    """LIANBAN_OUTBOUND_HOSTS: host names or addresses, separated by commas."""
    return tuple(host.strip().lower() for host in text.split(",") if host.strip())


def _resolve(host: str, port: int) -> Iterable[Any]:
    return socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)


def parse_prefixes(text: str) -> tuple[str, ...]:
    """LIANBAN_CALLBACK_URL_PREFIXES: URL prefixes separated by commas."""
    return tuple(prefix.strip() for prefix in text.split(",") if prefix.strip())


@dataclass(frozen=True)
class OutboundPolicy:
    allowed_hosts: tuple[str, ...] = ()
    callback_prefixes: tuple[str, ...] = ()

    def callback_refusal(self, url: str) -> str | None:
        """Why `url` may not be a callback URL (outside the callback prefixes); None when
        it is within them, or there are none. `refusal` still applies to it."""
        if not self.callback_prefixes or any(
            _under(url, prefix) for prefix in self.callback_prefixes
        ):
            return None
        return "the URL is not under an allowed callback prefix"

    def refusal(self, url: str) -> str | None:
        """Why `url` is refused, judged without resolving it; None when it may be tried."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - a port that is not a number raises here
        except ValueError:
            return "the URL cannot be parsed"
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "only http and https URLs with a host are allowed"
        if parts.username is not None or parts.password is not None:
            return "the URL carries credentials"
        host = parts.hostname.lower()
        if self.allowed_hosts:
            return None if host in self.allowed_hosts else f"{host} is not an allowed host"
        address = _address(host)
        if address is not None and not address.is_global:
            return f"{host} is not a public address"
        return None

    def check(self, url: str, resolve: Resolver = _resolve) -> None:
        """Refuse `url` before it is called: statically, then, for a host not listed, by
        every address its name resolves to. An unresolvable name is left to the call."""
        reason = self.refusal(url)
        if reason is not None:
            raise OutboundRefused(reason)
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host in self.allowed_hosts or _address(host) is not None:
            return
        try:
            found = resolve(host, parts.port or (443 if parts.scheme == "https" else 80))
        except OSError:
            return
        for *_, sockaddr in found:
            address = _address(str(sockaddr[0]))
            if address is not None and not address.is_global:
                raise OutboundRefused(f"{host} resolves to {address}, not a public address")


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        address = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _under(url: str, prefix: str) -> bool:
    try:
        target, allowed = urlsplit(url), urlsplit(prefix)
        ports = (target.port, allowed.port)
    except ValueError:
        return False
    if (target.scheme.lower(), (target.hostname or "").lower(), ports[0]) != (
        allowed.scheme.lower(),
        (allowed.hostname or "").lower(),
        ports[1],
    ):
        return False
    base = allowed.path.rstrip("/")
    return target.path == base or target.path.startswith(base + "/")
