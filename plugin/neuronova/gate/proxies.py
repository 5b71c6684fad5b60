"""The client's address behind a reverse proxy or load balancer.

Behind a balancer every request reaches Orthanc from the balancer's address, so the login
throttle would lock out a whole hospital at once and audit rows would name the balancer.
Only proxies named in ``Gate.TrustedProxies`` are believed: from a trusted peer, the client is
the right-most ``X-Forwarded-For`` hop that is not itself a trusted proxy (hops further left
were written by the client and prove nothing). From any other peer the header is ignored.

>>> trusted = parse_networks(["127.0.0.1", "10.1.0.0/16"])
>>> client_address("127.0.0.1", {"x-forwarded-for": "203.0.113.9"}, trusted)
'203.0.113.9'
>>> client_address("127.0.0.1", {"x-forwarded-for": "6.6.6.6, 203.0.113.9, 10.1.2.3"}, trusted)
'203.0.113.9'
>>> client_address("198.51.100.7", {"x-forwarded-for": "203.0.113.9"}, trusted)
'198.51.100.7'
>>> client_address("127.0.0.1", {"x-forwarded-for": "not-an-address"}, trusted)
'127.0.0.1'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from ..errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_HOPS = 20  # a longer header is not read further


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """``Gate.TrustedProxies``: addresses or CIDR networks (ConfigError otherwise)."""
    networks = []
    for entry in entries:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError as exc:
            raise ConfigError(f"Gate.TrustedProxies: {entry!r} is not an address or network") from exc
    return tuple(networks)


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


def client_address(peer: str, headers: Mapping[str, str], trusted: tuple[Network, ...]) -> str:
    """The address the request really comes from (``peer`` unless a trusted proxy says more)."""
    if not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in headers.get("x-forwarded-for", "").split(",") if h.strip()][-_MAX_HOPS:]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return peer  # a malformed chain: believe only the peer
        if not _trusted(hop, trusted):
            return hop
    return peer
