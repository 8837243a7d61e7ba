"""Page-number pagination whose count stops at a cap, so a list of millions costs what a list of thousands does.

An exact `COUNT(*)` reads every matching row (a team's 100,000 alerts: tens of milliseconds, growing with the
data). Here the count reads at most `COUNT_CAP + 1` rows; above the cap the response says `"count": 10000,
"count_capped": true`, pages go on as far as there are rows, and `next` is given while a row follows the page
(read with the page: one row more).
"""

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.utils.functional import cached_property
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response

COUNT_CAP = 10_000


class CappedCountPage(Page):
    """A page that knows whether a row follows it (read with the page), for lists counted only up to the cap."""

    def __init__(self, object_list, number, paginator, *, more: bool):
        super().__init__(object_list, number, paginator)
        self.more = more

    def has_next(self) -> bool:
        return self.more


class CappedCountPaginator(Paginator):
    """Counts at most `COUNT_CAP + 1` rows; past the cap, pages are read without a known total."""

    @cached_property
    def count(self) -> int:
        """Exact up to the cap; `COUNT_CAP + 1` means "more than the cap"."""
        if isinstance(self.object_list, list):
            return min(len(self.object_list), COUNT_CAP + 1)
        # Without the ordering: a sliced queryset keeps it, and sorting every row to count them is wasted.
        return self.object_list.order_by()[: COUNT_CAP + 1].count()

    @property
    def count_capped(self) -> bool:
        return self.count > COUNT_CAP

    def validate_number(self, number):
        if not self.count_capped:
            return super().validate_number(number)
        try:
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            number = int(number)
        except (TypeError, ValueError):
            raise PageNotAnInteger("That page number is not an integer") from None
        if number < 1:
            raise EmptyPage("That page number is less than 1")
        return number

    def page(self, number):
        if not self.count_capped:
            return super().page(number)
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        rows = list(self.object_list[bottom : bottom + self.per_page + 1])
        if not rows and number > 1:
            raise EmptyPage("That page contains no results")
        more = len(rows) > self.per_page
        # The pages known so far (the browsable API's page links): those within the cap, this one, the next.
        self.num_pages = max(self.num_pages, number + more)
        return CappedCountPage(rows[: self.per_page], number, self, more=more)


class CappedCountPagination(PageNumberPagination):
    """`{"count", "count_capped", "next", "previous", "results"}`, 50 per page, `?page=N` (no `?page=last`)."""

    django_paginator_class = CappedCountPaginator
    last_page_strings = ()

    def get_page_number(self, request, paginator):
        """A `?page=` that is not a whole number from 1 is refused (400, naming it); past the end is 404."""
        number = request.query_params.get(self.page_query_param) or "1"
        if not number.isascii() or not number.isdigit() or int(number) < 1:
            raise ValidationError({self.page_query_param: ["A page number is a whole number from 1."]})
        return int(number)

    def get_paginated_response(self, data):
        paginator = self.page.paginator
        return Response(
            {
                "count": min(paginator.count, COUNT_CAP),
                "count_capped": paginator.count_capped,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["count"]["description"] = (
            f"Number of results: exact up to {COUNT_CAP:,}; with `count_capped` it is {COUNT_CAP:,} and there are more."
        )
        schema["properties"] = {
            "count": schema["properties"]["count"],
            "count_capped": {
                "type": "boolean",
                "example": False,
                "description": f"More than {COUNT_CAP:,} results: follow `next` until it is null.",
            },
            **{key: value for key, value in schema["properties"].items() if key != "count"},
        }
        schema["required"] = ["count", "count_capped", "results"]
        return schema
