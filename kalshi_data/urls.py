"""Top-level URLs: the admin and the backtest API."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("backtest_api.urls")),
]
