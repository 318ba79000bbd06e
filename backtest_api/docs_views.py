"""The OpenAPI schema and its ReDoc page, safe to serve to the public.

Generating the schema walks every view (about 100 ms) and is not
thread-safe: drf-spectacular sets the view being described on AutoSchema
instances that view classes share, so concurrent generations under a
threaded server mixed views up and failed. The schema depends only on the
code, so it is generated once per process, under a lock, and then served
from memory; the view is throttled per client address like anonymous reads.
"""

from __future__ import annotations

import threading

from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from .throttling import AddressRateThrottle


class CachedSchemaView(SpectacularAPIView):
    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = [AddressRateThrottle]

    _lock = threading.Lock()
    _schema: dict | None = None

    def _get_schema_response(self, request):
        with CachedSchemaView._lock:
            if CachedSchemaView._schema is None:
                generator = self.generator_class(urlconf=self.urlconf, patterns=self.patterns)
                CachedSchemaView._schema = generator.get_schema(request=None, public=True)
        return Response(
            data=CachedSchemaView._schema,
            headers={"Content-Disposition": f'inline; filename="{self._get_filename(request, None)}"'},
        )


class OfflineRedocView(SpectacularRedocView):
    """ReDoc without the web fonts drf-spectacular's page loads from Google."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = []
    template_name = "backtest_api/redoc.html"
