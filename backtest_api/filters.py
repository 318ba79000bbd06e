"""django-filter FilterSets of the hierarchy endpoints.

Each filter is an exact match on an indexed column; a malformed value (e.g.
an unknown settlement result or a bad time) is a 400 naming the parameter.
"""

import django_filters
from django import forms

from markets.models import Event, Market, Series, Settlement, SettlementResult


class SeriesFilter(django_filters.FilterSet):
    category = django_filters.CharFilter(help_text="Exact category, e.g. Climate and Weather.")

    class Meta:
        model = Series
        fields = ["category"]


class MarketFilter(django_filters.FilterSet):
    status = django_filters.CharFilter(help_text="Kalshi status, e.g. active, finalized.")
    event_ticker = django_filters.CharFilter()
    series_ticker = django_filters.CharFilter()

    class Meta:
        model = Market
        fields = ["status", "event_ticker", "series_ticker"]


class EventFilter(django_filters.FilterSet):
    series_ticker = django_filters.CharFilter()
    status = django_filters.CharFilter(help_text="unopened, open, closed or settled.")
    category = django_filters.CharFilter()

    class Meta:
        model = Event
        fields = ["series_ticker", "status", "category"]


class SettledRangeForm(forms.Form):
    def clean(self):
        data = super().clean()
        after, before = data.get("settled_after"), data.get("settled_before")
        if after and before and before <= after:
            self.add_error("settled_before", "Must be after settled_after.")
        return data


class SettlementFilter(django_filters.FilterSet):
    event_ticker = django_filters.CharFilter()
    result = django_filters.ChoiceFilter(choices=SettlementResult.choices)
    settled_after = django_filters.IsoDateTimeFilter(
        field_name="settled_at", lookup_expr="gte",
        help_text="settled_at >= this instant (ISO 8601, UTC if no zone).",
    )
    settled_before = django_filters.IsoDateTimeFilter(
        field_name="settled_at", lookup_expr="lt",
        help_text="settled_at < this instant.",
    )

    class Meta:
        model = Settlement
        fields = ["event_ticker", "result", "settled_after", "settled_before"]
        form = SettledRangeForm
