"""The explorer's pages, under /explore/ (kalshi_data/urls.py)."""

from django.urls import path

from . import views

app_name = "explore"

urlpatterns = [
    path("", views.home, name="home"),
    path("series/<str:ticker>", views.series_page, name="series"),
    path("events/<str:ticker>", views.event_page, name="event"),
    path("markets/<str:ticker>", views.market_page, name="market"),
]
