"""Who may read: API-key holders and staff, or anyone if the deployment allows it."""

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission

from .models import ApiKey


def session_may_read(user) -> bool:
    """Whether a browser session may read: staff, or anyone if API_ALLOW_ANONYMOUS.

    The rule of the API for requests without a key, and of the explorer's
    pages (explore/), which read the API from the same session.
    """
    if user and user.is_authenticated and user.is_staff:
        return True
    return settings.API_ALLOW_ANONYMOUS


class CanReadApi(BasePermission):
    """Reads only; by API key, staff session, or anyone if API_ALLOW_ANONYMOUS."""

    def has_permission(self, request, view) -> bool:
        if request.method not in SAFE_METHODS:
            return False
        if isinstance(request.auth, ApiKey):
            return True
        return session_may_read(request.user)
