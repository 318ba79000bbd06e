"""URLs of the backtest API: /api/v1/ endpoints, the schema and its docs.

Paths have no trailing slash, as in Kalshi's own API (`/markets/{ticker}`).
The schema and the docs are public (they describe, they hold no data) and
are served from local files (drf-spectacular-sidecar), so they work offline.
"""

from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from . import bulk_views, docs_views, views

v1 = [
    path("", views.ApiRootView.as_view(), name="api-root"),
    path("markets", views.MarketListView.as_view(), name="market-list"),
    path(
        "markets/<str:ticker>", views.MarketDetailView.as_view(), name="market-detail"
    ),
    path("events", views.EventListView.as_view(), name="event-list"),
    path("events/<str:ticker>", views.EventDetailView.as_view(), name="event-detail"),
    path("series", views.SeriesListView.as_view(), name="series-list"),
    path("series/<str:ticker>", views.SeriesDetailView.as_view(), name="series-detail"),
    path("settlements", views.SettlementListView.as_view(), name="settlement-list"),
    path(
        "settlements/<str:ticker>",
        views.SettlementDetailView.as_view(),
        name="settlement-detail",
    ),
    path("trades", views.TradeListView.as_view(), name="trade-list"),
    path("deltas", views.DeltaListView.as_view(), name="delta-list"),
    path("orderbook", views.OrderbookView.as_view(), name="orderbook"),
    path("candles/<str:ticker>", views.CandleView.as_view(), name="candles"),
    # bulk data (bulk_views.py)
    path("replay", bulk_views.ReplayView.as_view(), name="replay"),
    path("book_snapshots", bulk_views.BookSnapshotsView.as_view(), name="book-snapshots"),
    path("coverage", bulk_views.CoverageView.as_view(), name="coverage"),
    path("exports", bulk_views.ExportListView.as_view(), name="export-list"),
    path("exports/<path:path>", bulk_views.ExportFileView.as_view(), name="export-file"),
]

public = {
    "permission_classes": [AllowAny],
    "authentication_classes": [],
    "throttle_classes": [],
}

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="api-root", permanent=False)),
    path("api/v1/", include(v1)),
    # Generated once per process, throttled per address (docs_views.py).
    path("api/schema/", docs_views.CachedSchemaView.as_view(), name="schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="schema", **public),
        name="docs",
    ),
    path(
        "api/redoc/",
        docs_views.OfflineRedocView.as_view(url_name="schema"),
        name="redoc",
    ),
]
