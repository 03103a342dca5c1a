"""Blocks of consecutive free ports for commands that take a base port (devnet, demo)."""

from __future__ import annotations

import random
import socket


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_block(width: int) -> int:
    """A base port whose next ``width`` ports can be bound right now.

    Drawn below the kernel's ephemeral range (32768 and up here), so an outgoing connection of
    this or another process cannot take one of them between this check and the server's bind.
    """
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000 - width)
        if all(_bindable(base + i) for i in range(width)):
            return base
    raise RuntimeError(f"no block of {width} free ports found")
