"""The Prometheus registry of mevstack and the rules every metric name obeys.

Naming conventions (docs/contracts.md): every name starts with ``mevstack_``, is lower snake
case, is in base units (seconds, bytes, wei; never ms or kb), counters end in ``_total`` and
nothing else does, and labels come from a fixed list (``ALLOWED_LABELS``) whose values are
all bounded by the config or the code (chain names, endpoint URLs, RPC method names, trade
statuses, configured tokens), so label cardinality stays bounded.  The helpers below enforce
this at declaration time, so a badly named metric fails the first test that imports it rather
than reaching a dashboard.  Declaring the same metric twice (same kind, same labels) returns the
first one, so a module may declare what it uses at import time without caring who declared it
first.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

PREFIX = "mevstack_"
ALLOWED_LABELS: frozenset[str] = frozenset({"chain", "endpoint", "strategy", "route", "result"})
# The chain and trading metrics' labels (mevstack.obs.engine_metrics): node ``state``, RPC
# ``method`` and error ``kind``, trade ``status``, profit ``token``, balance ``role``; and the
# execution healing counters' (below): why a nonce was resynced (``reason``), how a send of
# unknown outcome ended (``resolution``), what replaced a stuck trade (``action``).  Each is a
# short fixed vocabulary set by the code, never by input.
ALLOWED_LABELS |= frozenset({"state", "method", "kind", "status", "token", "role"})
ALLOWED_LABELS |= frozenset({"reason", "resolution", "action"})
CONTENT_TYPE = CONTENT_TYPE_LATEST

# Our own registry rather than prometheus_client's global one: the process/platform collectors
# of the default registry are added explicitly by whoever serves /metrics, and tests can render
# exactly what mevstack declared.
REGISTRY = CollectorRegistry(auto_describe=True)

_NAME_RE = re.compile(r"^mevstack_[a-z][a-z0-9]*(_[a-z0-9]+)*$")
# Unit suffixes that are not base units, with the base unit to use instead.
_NON_BASE_UNITS: dict[str, str] = {
    "ms": "seconds",
    "msec": "seconds",
    "millis": "seconds",
    "milliseconds": "seconds",
    "us": "seconds",
    "microseconds": "seconds",
    "ns": "seconds",
    "nanoseconds": "seconds",
    "minutes": "seconds",
    "hours": "seconds",
    "kb": "bytes",
    "mb": "bytes",
    "kilobytes": "bytes",
    "megabytes": "bytes",
    "gwei": "wei",
    "eth": "wei",
    "percent": "ratio",
}


class MetricNameError(ValueError):
    """A metric declaration breaks the naming conventions (a programming error, not user input)."""


def check_name(name: str, kind: str, labels: Sequence[str]) -> None:
    """Raise MetricNameError unless ``name`` and ``labels`` follow the conventions for ``kind``."""
    if not _NAME_RE.match(name):
        raise MetricNameError(f"metric {name!r}: must be lower snake case starting with {PREFIX!r}")
    words = name.split("_")
    for word in words[1:]:
        if word in _NON_BASE_UNITS:
            raise MetricNameError(
                f"metric {name!r}: {word!r} is not a base unit, use {_NON_BASE_UNITS[word]!r}"
            )
    if kind == "counter" and not name.endswith("_total"):
        raise MetricNameError(f"metric {name!r}: a counter's name must end in '_total'")
    if kind != "counter" and name.endswith("_total"):
        raise MetricNameError(f"metric {name!r}: only counters end in '_total'")
    bad = sorted(set(labels) - ALLOWED_LABELS)
    if bad:
        raise MetricNameError(
            f"metric {name!r}: label(s) {', '.join(bad)} not allowed "
            f"(allowed: {', '.join(sorted(ALLOWED_LABELS))})"
        )
    if len(set(labels)) != len(labels):
        raise MetricNameError(f"metric {name!r}: duplicate label")


_M = TypeVar("_M", Counter, Gauge, Histogram)
_declared: dict[str, tuple[str, tuple[str, ...], Counter | Gauge | Histogram]] = {}


def _existing(name: str, kind: str, labels: tuple[str, ...], cls: type[_M]) -> _M | None:
    found = _declared.get(name)
    if found is None:
        return None
    old_kind, old_labels, metric = found
    if old_kind != kind or old_labels != labels or not isinstance(metric, cls):
        raise MetricNameError(
            f"metric {name!r} already declared as {old_kind} with labels {list(old_labels)}"
        )
    return metric


def counter(name: str, documentation: str, labels: Sequence[str] = ()) -> Counter:
    """Declare (or fetch) a counter; ``name`` includes the ``_total`` suffix."""
    label_t = tuple(labels)
    check_name(name, "counter", label_t)
    metric = _existing(name, "counter", label_t, Counter)
    if metric is None:
        # prometheus_client appends _total itself to the exposed sample name.
        metric = Counter(name.removesuffix("_total"), documentation, label_t, registry=REGISTRY)
        _declared[name] = ("counter", label_t, metric)
    return metric


def gauge(name: str, documentation: str, labels: Sequence[str] = ()) -> Gauge:
    """Declare (or fetch) a gauge."""
    label_t = tuple(labels)
    check_name(name, "gauge", label_t)
    metric = _existing(name, "gauge", label_t, Gauge)
    if metric is None:
        metric = Gauge(name, documentation, label_t, registry=REGISTRY)
        _declared[name] = ("gauge", label_t, metric)
    return metric


def histogram(
    name: str,
    documentation: str,
    labels: Sequence[str] = (),
    buckets: Sequence[float] | None = None,
) -> Histogram:
    """Declare (or fetch) a histogram (durations in seconds: name it ``..._seconds``)."""
    label_t = tuple(labels)
    check_name(name, "histogram", label_t)
    metric = _existing(name, "histogram", label_t, Histogram)
    if metric is None:
        if buckets is None:
            metric = Histogram(name, documentation, label_t, registry=REGISTRY)
        else:
            metric = Histogram(name, documentation, label_t, registry=REGISTRY, buckets=buckets)
        _declared[name] = ("histogram", label_t, metric)
    return metric


def render() -> tuple[bytes, str]:
    """The registry in the Prometheus text format, with its content type (for GET /metrics)."""
    return generate_latest(REGISTRY), CONTENT_TYPE


def sample_value(name: str, labels: dict[str, str] | None = None) -> float | None:
    """One sample's current value by its exposed name (``..._total`` for counters), or None."""
    value = REGISTRY.get_sample_value(name, labels or {})
    return None if value is None else float(value)


# -- execution healing: nonce resyncs, sends of unknown outcome, replaced trades ----------------

NONCE_RESYNCS = counter(
    "mevstack_nonce_resyncs_total",
    "Nonce manager resynchronisations from the chain, by why (nonce_too_low, underpriced, "
    "already_known, unknown_outcome, chain_behind)",
    ["chain", "reason"],
)
SEND_UNKNOWN_OUTCOME = counter(
    "mevstack_send_unknown_outcome_total",
    "Sends whose answer was lost (timeout, dropped connection), by how they were resolved "
    "(received, resent, nonce_consumed, not_received, unresolved)",
    ["chain", "resolution"],
)
TRADES_REPLACED = counter(
    "mevstack_trades_replaced_total",
    "Submitted trades not landed in time, by what was done (replaced, cancelled, "
    "nonce_consumed, abandoned)",
    ["chain", "action"],
)
