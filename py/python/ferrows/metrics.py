"""A server's counters for monitoring: ``server.metrics`` on both faces' servers.

:func:`prometheus_response` answers ``/metrics`` from ``process_request``;
:class:`PrometheusCollector` hands the counters to a ``prometheus_client`` registry (which
needs that package; ferrows does not). The counters and their names are defined once, in
ferrows-core: see docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ._ferrows import ServerMetrics
from .http11 import Headers, Response

__all__ = ["PrometheusCollector", "ServerMetrics", "prometheus_response", "prometheus_text"]

#: The content type of Prometheus' text exposition format, version 0.0.4.
CONTENT_TYPE: str = ServerMetrics.CONTENT_TYPE


def prometheus_text(metrics: ServerMetrics) -> str:
    """The counters in Prometheus' text exposition format."""
    return metrics.prometheus_text()


def prometheus_response(metrics: ServerMetrics) -> Response:
    """A 200 response carrying :func:`prometheus_text`, for ``process_request`` to return."""
    body = metrics.prometheus_text().encode()
    headers = Headers(
        [
            ("Content-Type", CONTENT_TYPE),
            ("Content-Length", str(len(body))),
            ("Connection", "close"),
        ]
    )
    return Response(200, "OK", headers, body)


class PrometheusCollector:
    """A ``prometheus_client`` collector of one server's counters.

    Register it yourself: ``REGISTRY.register(PrometheusCollector(server.metrics))``.
    ``labels`` are added to every sample, to tell several servers of one process apart.
    """

    def __init__(self, metrics: ServerMetrics, labels: Mapping[str, str] | None = None) -> None:
        # Imported here: ferrows works without prometheus_client, and says so when needed.
        from prometheus_client.core import Metric

        self._metric = Metric
        self._metrics = metrics
        self._labels = dict(labels or {})

    def collect(self) -> Iterator[Any]:
        """Yields one metric family per counter, with the values of this moment."""
        for name, kind, help_text, samples in self._metrics.families():
            family = self._metric(name, help_text, kind)
            for sample_name, labels, value in samples:
                family.add_sample(sample_name, {**self._labels, **dict(labels)}, value)
            yield family
