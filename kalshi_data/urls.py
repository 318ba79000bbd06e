"""Top-level URLs: the admin, the explorer's pages and the backtest API (/ -> /api/v1/)."""

from django.contrib import admin
from django.urls import include, path

from backtest_api import metrics

urlpatterns = [
    path("healthz", metrics.healthz, name="healthz"),
    path("readyz", metrics.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("explore/", include("explore.urls")),
    path("", include("backtest_api.urls")),
]

# Outside the API's views, a wrong URL or a bug still answers in its error shape.
handler400 = "backtest_api.exceptions.bad_request"
handler404 = "backtest_api.exceptions.not_found"
handler500 = "backtest_api.exceptions.server_error"
