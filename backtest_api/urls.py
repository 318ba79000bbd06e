"""URLs of the backtest API: /api/v1/ endpoints, the schema and its docs.

Paths have no trailing slash, as in Kalshi's own API (`/markets/{ticker}`).
The schema and the docs are public (they describe, they hold no data) and
are served from local files (drf-spectacular-sidecar), so they work offline.
"""

from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from . import views

v1 = [
    path("", views.ApiRootView.as_view(), name="api-root"),
    path("series", views.SeriesListView.as_view(), name="series-list"),
    path("series/<str:ticker>", views.SeriesDetailView.as_view(), name="series-detail"),
]

public = {"permission_classes": [AllowAny], "authentication_classes": [], "throttle_classes": []}

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="api-root", permanent=False)),
    path("api/v1/", include(v1)),
    path("api/schema/", SpectacularAPIView.as_view(**public), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema", **public), name="docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema", **public), name="redoc"),
]
