"""django-filter FilterSets of the hierarchy endpoints.

Each filter is an exact match on an indexed column; a malformed value (e.g.
an unknown settlement result or a bad time) is a 400 naming the parameter.
"""

import django_filters

from markets.models import Event, Market, Series, Settlement, SettlementResult


class SeriesFilter(django_filters.FilterSet):
    category = django_filters.CharFilter(help_text="Exact category, e.g. Climate and Weather.")

    class Meta:
        model = Series
        fields = ["category"]
