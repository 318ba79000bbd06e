"""URLs of the backtest API."""

from django.urls import path
from rest_framework.decorators import api_view
from rest_framework.response import Response
from rest_framework.reverse import reverse


@api_view(["GET"])
def api_root(request, format=None):
    """The entry point of the backtest API."""
    return Response({"admin": reverse("admin:index", request=request)})


urlpatterns = [path("", api_root, name="api-root")]
