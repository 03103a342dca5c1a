"""Chain access: JSON-RPC client, endpoint pool with failover, node monitor, gas oracle, heads."""
