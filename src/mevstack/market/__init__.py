"""Markets: exact DEX pool math, pool discovery and log-driven pool state."""
