"""Prometheus metrics and health checks for the API, for a load balancer and a scraper.

* `GET /metrics`: requests by route, method and status, their latency, and
  requests in flight, in Prometheus' text format. Open to loopback clients,
  or to anyone sending `Authorization: Bearer $METRICS_TOKEN` when that is
  set. Under gunicorn with several processes, set PROMETHEUS_MULTIPROC_DIR
  (an empty folder) and every process's counts are summed
  (deploy/gunicorn.conf.py clears it and marks dead workers).
* `GET /healthz`: liveness, 200 while the process answers; no database.
* `GET /readyz`: readiness, 200 when the database answers `SELECT 1`
  (and the cache, when it is Redis), else 503: take the process out of
  the pool.
"""

from __future__ import annotations

import hmac
import os
import time

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpResponse, JsonResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as DEFAULT_REGISTRY

REQUESTS = Counter(
    "api_requests_total", "HTTP requests answered.", ["route", "method", "status"]
)
LATENCY = Histogram(
    "api_request_seconds",
    "Time to the response's headers (streams: not their whole body).",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IN_FLIGHT = Gauge(
    "api_requests_in_flight", "Requests being served.", multiprocess_mode="livesum"
)
# Paths that are not routes (404s, static files) share one label, so a
# scanner cannot create a time series per URL it tries.
OTHER_ROUTE = "other"


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        IN_FLIGHT.inc()
        try:
            response = self.get_response(request)
        finally:
            IN_FLIGHT.dec()
        match = getattr(request, "resolver_match", None)
        route = (match.url_name or match.route) if match else OTHER_ROUTE
        REQUESTS.labels(route, request.method if request.method in _METHODS else "other",
                        str(response.status_code)).inc()
        LATENCY.labels(route).observe(time.perf_counter() - started)
        return response


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def _allowed(request) -> bool:
    token = settings.METRICS_TOKEN
    if token:
        offered = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(offered.encode(), token.encode())
    return request.META.get("REMOTE_ADDR", "") in ("127.0.0.1", "::1")


def metrics_view(request):
    if not _allowed(request):
        return JsonResponse(
            {"code": "permission_denied", "message": "Metrics are not public.", "param": None,
             "details": None, "request_id": getattr(request, "request_id", None)},
            status=403,
        )
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = DEFAULT_REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def healthz(request):
    return JsonResponse({"status": "ok"})


def readyz(request):
    checks = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # any failure means: not ready
        checks["database"] = f"error: {type(exc).__name__}"
    if settings.REDIS_URL:
        try:
            cache.get("readyz")
            checks["cache"] = "ok"
        except Exception as exc:
            checks["cache"] = f"error: {type(exc).__name__}"
    ready = all(v == "ok" for v in checks.values())
    return JsonResponse({"status": "ok" if ready else "unavailable", "checks": checks},
                        status=200 if ready else 503)
