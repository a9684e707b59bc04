"""The SSRF guard: a webhook URL must be http(s) and reach public addresses only.

Checked when an endpoint is saved and again at every delivery, where the
addresses checked are the ones connected to (:class:`GuardedResolver`), so a
name that resolves to a public address when checked and to a private one a
moment later (DNS rebinding) is refused as well. Refused: loopback, private,
carrier-grade NAT, link-local (the cloud metadata address 169.254.169.254
among them), multicast, reserved and unspecified addresses, in IPv4 and IPv6,
IPv4-mapped and -compatible IPv6 included. Spellings such as ``2130706433`` or
``0177.0.0.1`` resolve to the address they stand for, and that is checked.
``OPENIMPACT_WEBHOOKS_ALLOW_PRIVATE=true`` lifts the address check (local
development, tests); the scheme check stays.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from aiohttp.abc import AbstractResolver, ResolveResult

from openimpact.errors import ValidationFailed

MAX_URL_LENGTH = 2000
# Named separately although link-local: the address SSRF goes for first.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class RefusedAddress(OSError):
    """A webhook URL that leads somewhere it must not."""


def refusal(address: IPAddress) -> str | None:
    """Why ``address`` may not be called, or None when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped or (
            # ::a.b.c.d (IPv4-compatible, deprecated but still routed by some stacks)
            ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
            if int(address) >> 32 == 0 and int(address) > 1
            else None
        )
        if mapped is not None:
            return refusal(mapped)
        if address.sixtofour is not None:
            return refusal(address.sixtofour)
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_unspecified:
        return "an unspecified address"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address"
    if isinstance(address, ipaddress.IPv6Address) and address.is_site_local:
        return "a private address"  # fec0::/10, site-local
    if address.is_multicast:
        return "a multicast address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


def check_syntax(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) of an http(s) URL; ValidationFailed naming ``url``."""
    if len(url) > MAX_URL_LENGTH:
        raise ValidationFailed(f"url: must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValidationFailed("url: is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise ValidationFailed("url: must start with https:// (or http://)")
    if not parts.hostname:
        raise ValidationFailed("url: must name a host, e.g. https://example.com/webhooks")
    if parts.username is not None or parts.password is not None:
        raise ValidationFailed("url: must not carry a user name or password")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValidationFailed("url: must not contain spaces or control characters")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def addresses(host: str, port: int) -> list[tuple[int, str]]:
    """Every (family, address) ``host`` resolves to."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [(family, str(sockaddr[0])) for family, _t, _p, _c, sockaddr in infos]


def check_addresses(host: str, found: Sequence[tuple[int, str]]) -> None:
    for _family, address in found:
        reason = refusal(ipaddress.ip_address(address.split("%")[0]))
        if reason is not None:
            shown = host if host == address else f"{host} ({address})"
            raise RefusedAddress(f"{shown} is {reason}; webhooks are sent to public addresses only")


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL to store, after the scheme, the host and (unless
    ``allow_private``) every address it resolves to are checked."""
    _scheme, host, port = check_syntax(url)
    if allow_private:
        return url.strip()
    literal = _literal(host)
    try:
        if literal is not None:
            check_addresses(host, [(0, str(literal))])
        else:
            try:
                found = addresses(host, port)
            except (socket.gaierror, UnicodeError):
                raise ValidationFailed(f"url: the host {host} cannot be resolved") from None
            check_addresses(host, found)
    except RefusedAddress as exc:
        raise ValidationFailed(f"url: {exc}") from None
    return url.strip()


def check_literal_host(host: str, *, allow_private: bool) -> None:
    """At delivery: an IP literal never reaches the resolver, so it is checked here."""
    literal = _literal(host)
    if literal is not None and not allow_private:
        check_addresses(host, [(0, str(literal))])


class GuardedResolver(AbstractResolver):
    """aiohttp's resolver for webhook deliveries: resolves with the system's
    resolver and refuses the connection when any address is not allowed, so
    what is checked is exactly what is connected to."""

    def __init__(self, *, allow_private: bool) -> None:
        self.allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, family=family, proto=socket.IPPROTO_TCP
            )
        except socket.gaierror as exc:
            raise OSError(f"{host} cannot be resolved: {exc.strerror}") from None
        found = [(fam, str(sockaddr[0])) for fam, _t, _p, _c, sockaddr in infos]
        if not self.allow_private:
            check_addresses(host, found)
        results: list[ResolveResult] = []
        for fam, _t, proto, _c, sockaddr in infos:
            results.append(
                {
                    "hostname": host,
                    "host": str(sockaddr[0]),
                    "port": int(sockaddr[1]),
                    "family": fam,
                    "proto": proto,
                    "flags": socket.AI_NUMERICHOST | socket.AI_NUMERICSERV,
                }
            )
        return results

    async def close(self) -> None:
        return None


def describe(exc: BaseException) -> str:
    """A delivery error as the log shows it."""
    inner: Any = exc
    while inner is not None and not isinstance(inner, RefusedAddress):
        inner = inner.__cause__ or inner.__context__
        if inner is exc:
            break
    if isinstance(inner, RefusedAddress):
        return f"refused: {inner}"
    return f"{type(exc).__name__}: {exc}"[:500]
