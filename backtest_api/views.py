"""Endpoints of the backtest API: configuration plus one selector call each.

Cross-cutting behaviour lives once elsewhere: the envelope (renderers.py),
the error shape (exceptions.py), keyset pages (pagination.py), keys and
rate limits (authentication.py, throttling.py).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import generics
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.reverse import reverse

from markets import selectors

from . import filters, serializers
from .pagination import KeysetPagination


class HierarchyListView(generics.ListAPIView):
    """A keyset-paginated list of a small table, ordered by its primary key."""

    pagination_class = KeysetPagination
    keyset_types = (str,)

    def get_queryset(self):
        return self.selector()


class HierarchyDetailView(generics.RetrieveAPIView):
    """One object by ticker; an unknown ticker is a 404 that names it."""

    lookup_url_kwarg = "ticker"
    not_found_message = "No such object: {ticker}."

    def get_object(self):
        obj = type(self).getter(self.kwargs["ticker"])
        if obj is None:
            raise NotFound(self.not_found_message.format(ticker=self.kwargs["ticker"]))
        return obj


# --- Series -------------------------------------------------------------------


class SeriesListView(HierarchyListView):
    """Kalshi series, by ticker."""

    selector = staticmethod(selectors.series_list)
    serializer_class = serializers.SeriesSerializer
    filterset_class = filters.SeriesFilter
    keyset_fields = ("ticker",)


class SeriesDetailView(HierarchyDetailView):
    """One series."""

    getter = staticmethod(selectors.series_get)
    serializer_class = serializers.SeriesSerializer
    not_found_message = "Unknown series ticker: {ticker}."


# --- Root ---------------------------------------------------------------------

# (name shown, URL name) of every list endpoint, for the API root.
ROOT_LINKS = (
    ("series", "series-list"),
)


class ApiRootView(generics.GenericAPIView):
    """The entry point: links to every endpoint and to the documentation."""

    @extend_schema(responses={200: {"type": "object", "additionalProperties": {"type": "string"}}})
    def get(self, request):
        links = {name: reverse(url_name, request=request) for name, url_name in ROOT_LINKS}
        links["schema"] = reverse("schema", request=request)
        links["docs"] = reverse("docs", request=request)
        return Response(links)
