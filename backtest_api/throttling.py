"""Rate limits per API key (and per address for anonymous reads).

Rates are DRF rate strings in settings (API_RATE_KEY, API_RATE_ANON). Counts
live in Django's cache: the default in-process cache counts per worker
process; with REDIS_URL set every process shares one count. The client
address is DRF's (NUM_PROXIES; see limits.client_address). A refused request is a 429 with
Retry-After and a message saying when to retry (exceptions.py).
"""

from rest_framework.throttling import SimpleRateThrottle

from .models import ApiKey


class ApiKeyRateThrottle(SimpleRateThrottle):
    """One bucket per API key, or per staff user for browser sessions."""

    scope = "key"

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiKey):
            ident = f"key-{request.auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user-{request.user.pk}"
        else:
            return None  # anonymous: AnonymousRateThrottle's job
        return self.cache_format % {"scope": self.scope, "ident": ident}


class AnonymousRateThrottle(SimpleRateThrottle):
    """One bucket per client address for requests without a key."""

    scope = "anon"

    def get_cache_key(self, request, view):
        if isinstance(request.auth, ApiKey) or (
            request.user and request.user.is_authenticated
        ):
            return None
        return self.cache_format % {
            "scope": self.scope,
            "ident": self.get_ident(request),
        }


class AddressRateThrottle(SimpleRateThrottle):
    """One bucket per client address, whoever calls (public views: the schema)."""

    scope = "anon"

    def get_cache_key(self, request, view):
        return self.cache_format % {"scope": "public", "ident": self.get_ident(request)}
