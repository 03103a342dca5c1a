"""Who the client is: the peer address, or what trusted proxies say in ``X-Forwarded-For``.

Pure functions.  ``X-Forwarded-For`` is only believed when the peer itself is a configured
trusted proxy (``server.trusted_proxies``: addresses or CIDRs); the hops are then read from the
right, skipping further trusted proxies, so a client cannot pick its own address by prepending
entries to the header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from mevstack.errors import ConfigError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Iterable[str]) -> tuple[Network, ...]:
    networks: list[Network] = []
    for value in values:
        try:
            networks.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise ConfigError(
                f"server.trusted_proxies: {value!r} is not an IP address or CIDR"
            ) from None
    return tuple(networks)


def is_trusted(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def client_address(peer: str, forwarded: str | None, trusted: tuple[Network, ...]) -> str:
    if not forwarded or not is_trusted(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded.split(",")]
    for hop in reversed(hops):
        if not hop:
            continue
        if not is_trusted(hop, trusted):
            return hop
    # Every hop is one of our proxies: the leftmost is as close to the client as we can tell.
    return next((hop for hop in hops if hop), peer)
