"""Observability: structured JSON logging and the Prometheus metrics registry."""
