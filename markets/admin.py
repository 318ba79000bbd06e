"""Admin for settlements and the market hierarchy.

Everything here is written by the collector from what Kalshi says, so the
admin is for looking, not editing: rows are read-only, except that staff may
delete a settlement the collector will write again (e.g. to force a REST
re-confirmation). The partitioned tables have composite primary keys, which
Django 5.2's admin cannot register; they are browsed through the API.
"""

from django.contrib import admin

from .models import Event, Market, Series, Settlement


class ReadOnlyAdmin(admin.ModelAdmin):
    """Shows every field, edits none. Counting a large table is skipped."""

    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        return [f.name for f in self.model._meta.concrete_fields]


@admin.register(Settlement)
class SettlementAdmin(ReadOnlyAdmin):
    list_display = (
        "market_ticker",
        "event_ticker",
        "result",
        "settlement_value",
        "determined_at",
        "settled_at",
        "source",
    )
    list_filter = ("result", "source", ("settled_at", admin.DateFieldListFilter))
    search_fields = ("market_ticker", "event_ticker")
    date_hierarchy = "settled_at"
    ordering = ("-settled_at", "market_ticker")

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(Market)
class MarketAdmin(ReadOnlyAdmin):
    list_display = ("ticker", "event_ticker", "series_ticker", "status", "close_time", "result")
    list_filter = ("status", "result")
    search_fields = ("ticker", "event_ticker", "series_ticker", "title")
    ordering = ("ticker",)

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ("event_ticker", "series_ticker", "title", "category", "status")
    list_filter = ("status", "category")
    search_fields = ("event_ticker", "series_ticker", "title")
    ordering = ("event_ticker",)

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Series)
class SeriesAdmin(ReadOnlyAdmin):
    list_display = ("ticker", "title", "category", "frequency")
    list_filter = ("category", "frequency")
    search_fields = ("ticker", "title")
    ordering = ("ticker",)

    def has_delete_permission(self, request, obj=None):
        return False
