"""Observability: structured JSON logging and the Prometheus metrics registry."""

from mevstack.obs.log import configure_logging, redact_text, request_context

__all__ = ["configure_logging", "redact_text", "request_context"]
