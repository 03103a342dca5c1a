"""Strategies: pure functions from pool state to opportunities (arbitrage, backrun)."""
