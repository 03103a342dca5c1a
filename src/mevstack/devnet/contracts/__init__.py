"""Vyper sources of the devnet's own contracts (compiled at run time, never committed)."""
