"""Pagination of Pulse's lists: page numbers whose count stops at a cap, so a list of millions costs what a list
of thousands does; the same reading a page's ids first (deep pages of a sorted list); cursors for time series.

An exact `COUNT(*)` reads every matching row (a team's 100,000 alerts: tens of milliseconds, growing with the
data). Here the count reads at most `COUNT_CAP + 1` rows; above the cap the response says `"count": 10000,
"count_capped": true`, pages go on as far as there are rows, and `next` is given while a row follows the page
(read with the page: one row more).
"""

from base64 import b64encode
from urllib.parse import urlencode

from django.core.paginator import EmptyPage, Page, PageNotAnInteger, Paginator
from django.utils.dateparse import parse_datetime
from django.utils.functional import cached_property
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.pagination import Cursor, CursorPagination, PageNumberPagination
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param

COUNT_CAP = 10_000


def page_number(request, *, parameter: str) -> int:
    """The `?page=` of a request: a whole number from 1 (default 1), else 400 naming the parameter."""
    number = request.query_params.get(parameter) or "1"
    if not number.isascii() or not number.isdigit() or int(number) < 1:
        raise ValidationError({parameter: ["A page number is a whole number from 1."]})
    return int(number)


def _is_time(text: str) -> bool:
    try:
        return parse_datetime(text) is not None
    except ValueError:
        return False


def _cursor_token(cursor: Cursor) -> str:
    """The `cursor` parameter DRF's CursorPagination.encode_cursor writes for `cursor`."""
    tokens = {}
    if cursor.offset != 0:
        tokens["o"] = str(cursor.offset)
    if cursor.reverse:
        tokens["r"] = "1"
    if cursor.position is not None:
        tokens["p"] = cursor.position
    return b64encode(urlencode(tokens, doseq=True).encode("ascii")).decode("ascii")


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
        return page_number(request, parameter=self.page_query_param)

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


class IdsFirstPaginator(CappedCountPaginator):
    """Reads a page's ids first (a subquery over an index that holds the list's ordering and the id: an
    index-only scan, however deep the page), then those rows, in one statement: PostgreSQL otherwise sorts every
    matching row for a deep page."""

    def _rows(self, bottom: int, top: int) -> list:
        return list(self.object_list.filter(pk__in=self.object_list.values("pk")[bottom:top]))

    def page(self, number):
        number = self.validate_number(number)
        bottom = (number - 1) * self.per_page
        if self.count_capped:
            rows = self._rows(bottom, bottom + self.per_page + 1)
            if not rows and number > 1:
                raise EmptyPage("That page contains no results")
            more = len(rows) > self.per_page
            self.num_pages = max(self.num_pages, number + more)
            return CappedCountPage(rows[: self.per_page], number, self, more=more)
        top = min(bottom + self.per_page, self.count)
        return self._get_page(self._rows(bottom, top), number, self)


class IdsFirstPagination(CappedCountPagination):
    """`CappedCountPagination` whose pages read their ids first (`IdsFirstPaginator`); same parameters and output."""

    django_paginator_class = IdsFirstPaginator


class TimeOrderedPagination(CursorPagination):
    """A time series, newest first: `{"next", "previous", "results"}`, 50 per page, no count.

    `next` and `previous` carry a `cursor` (the position of the page's edge: `started_at`, with an offset among
    equal times), so each page is read from the index where the last one stopped, as deep as it goes, and no
    request counts the rows (a table's history across every weekly partition). `?page=N` still reads page N
    (newest first, from the start); past the last page is 404. A cursor that was not given by a link is 400.
    """

    ordering = ("-started_at", "-id")
    cursor_query_description = "Where the page starts: the cursor of a `next` or `previous` link."
    page_query_param = "page"
    bad_cursor_message = "Not a cursor of this list: follow `next` or `previous`."

    def decode_cursor(self, request):
        """`?page=N` is the cursor of N - 1 pages from the start; a cursor that does not decode is 400."""
        if self.cursor_query_param not in request.query_params:
            number = page_number(request, parameter=self.page_query_param)
            return Cursor(offset=(number - 1) * self.page_size, reverse=False, position=None) if number > 1 else None
        given = request.query_params[self.cursor_query_param]
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            cursor = None
        # Only what a link gives: the cursor written back the same way (DRF's decoding forgives a lot).
        if (
            cursor is None
            or _cursor_token(cursor) != given
            or (cursor.position is not None and not _is_time(cursor.position))
        ):
            raise ValidationError({self.cursor_query_param: [self.bad_cursor_message]})
        return cursor

    def paginate_queryset(self, queryset, request, view=None):
        page = super().paginate_queryset(queryset, request, view)
        if not page and self.cursor is not None and self.cursor_query_param not in request.query_params:
            raise NotFound("Invalid page.")
        return page

    def encode_cursor(self, cursor):
        """A link names the cursor only (a `?page=` it was reached by would contradict it)."""
        return remove_query_param(super().encode_cursor(cursor), self.page_query_param)

    def get_schema_operation_parameters(self, view):
        return [
            *super().get_schema_operation_parameters(view),
            {
                "name": self.page_query_param,
                "required": False,
                "in": "query",
                "description": "Page number from the newest (50 per page); `next` and `previous` give cursors instead.",
                "schema": {"type": "integer", "minimum": 1},
            },
        ]
