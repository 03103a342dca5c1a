"""The gateway: REST proxy over engine backends with failover, cache, auth and rate limits."""
