"""django-filter FilterSets of the hierarchy endpoints.

Each filter is an exact match on an indexed column; a malformed value (e.g.
an unknown settlement result, a bad time, an empty value) is a 400 naming
the parameter.
"""

from datetime import timezone

import django_filters
from django import forms
from django_filters.fields import IsoDateTimeField

from markets.models import Event, Market, Series, Settlement, SettlementResult


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 (UTC if no zone), read into UTC."""

    def clean(self, value):
        value = super().clean(value)
        if value is None:
            return None
        # In UTC: PostgreSQL refuses offsets beyond 15:59 that Python accepts.
        try:
            return value.astimezone(timezone.utc)
        except OverflowError:
            raise forms.ValidationError("Date-time out of range.") from None


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class StrictForm(forms.Form):
    """A parameter sent with an empty value is an error, not "no filter".

    django-filter treats `?status=` as no filter (HTML forms send empty
    fields); an API client that sends it most likely has a bug.
    """

    def clean(self):
        data = super().clean()
        for name in self.fields:
            if self.data.get(name) == "" and name not in self.errors:
                self.add_error(
                    name, "Must not be empty; leave the parameter out instead."
                )
        return data


class SeriesFilter(django_filters.FilterSet):
    category = django_filters.CharFilter(
        help_text="Exact category, e.g. Climate and Weather."
    )

    class Meta:
        model = Series
        form = StrictForm
        fields = ["category"]


class MarketFilter(django_filters.FilterSet):
    status = django_filters.CharFilter(
        help_text="Kalshi status, e.g. active, finalized."
    )
    event_ticker = django_filters.CharFilter()
    series_ticker = django_filters.CharFilter()

    class Meta:
        model = Market
        form = StrictForm
        fields = ["status", "event_ticker", "series_ticker"]


class EventFilter(django_filters.FilterSet):
    series_ticker = django_filters.CharFilter()
    status = django_filters.CharFilter(help_text="unopened, open, closed or settled.")
    category = django_filters.CharFilter()

    class Meta:
        model = Event
        form = StrictForm
        fields = ["series_ticker", "status", "category"]


class SettledRangeForm(StrictForm):
    def clean(self):
        data = super().clean()
        after, before = data.get("settled_after"), data.get("settled_before")
        if after and before and before <= after:
            self.add_error("settled_before", "Must be after settled_after.")
        return data


class SettlementFilter(django_filters.FilterSet):
    event_ticker = django_filters.CharFilter()
    result = django_filters.ChoiceFilter(choices=SettlementResult.choices)
    settled_after = UtcIsoDateTimeFilter(
        field_name="settled_at",
        lookup_expr="gte",
        help_text="settled_at >= this instant (ISO 8601, UTC if no zone).",
    )
    settled_before = UtcIsoDateTimeFilter(
        field_name="settled_at",
        lookup_expr="lt",
        help_text="settled_at < this instant.",
    )

    class Meta:
        model = Settlement
        fields = ["event_ticker", "result", "settled_after", "settled_before"]
        form = SettledRangeForm
