"""Who is calling: an API key, or a logged-in staff member in a browser.

Keys come as `Authorization: Bearer <key>` or `X-API-Key: <key>`. A request
with no key is anonymous (allowed or not by permissions.CanReadApi); a
request with a wrong or revoked key is refused with 401 rather than served
as anonymous, so a client never silently loses its own rate limit.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import authentication, exceptions

from .models import ApiKey, api_key_lookup

# last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class ApiKeyUser:
    """The identity behind an API key (request.user); not a Django user."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    is_active = True

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.pk = self.id = None
        self.username = f"api-key:{api_key.pk}"

    def __str__(self):
        return self.username

    def has_perm(self, perm, obj=None) -> bool:
        return False


def key_from_request(request) -> str | None:
    header = authentication.get_authorization_header(request).decode("latin-1")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer":
        return value.strip() or None
    return request.headers.get("X-API-Key", "").strip() or None


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        raw_key = key_from_request(request)
        if raw_key is None:
            return None
        api_key = api_key_lookup(raw_key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        now = timezone.now()
        if (
            api_key.last_used_at is None
            or now - api_key.last_used_at > LAST_USED_RESOLUTION
        ):
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        return ApiKeyUser(api_key), api_key

    def authenticate_header(self, request):
        # Makes DRF answer 401 (with this challenge) rather than 403.
        return 'Bearer realm="api"'


class StaffSessionAuthentication(authentication.SessionAuthentication):
    """A logged-in staff member's session (the browsable API); others are anonymous."""

    def authenticate(self, request):
        result = super().authenticate(request)
        if result is None or not result[0].is_staff:
            return None
        return result
