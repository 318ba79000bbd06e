"""Who may read: API-key holders and staff, or anyone if the deployment allows it."""

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .models import ApiKey


class CanReadApi(BasePermission):
    """Reads only; by API key, staff session, or anyone if API_ALLOW_ANONYMOUS."""

    def has_permission(self, request, view) -> bool:
        if request.method not in SAFE_METHODS:
            return False
        if isinstance(request.auth, ApiKey):
            return True
        if request.user and request.user.is_authenticated and request.user.is_staff:
            return True
        return settings.API_ALLOW_ANONYMOUS
