"""Page-number pagination with a client-chosen page size (capped)."""

from rest_framework import pagination
from rest_framework.exceptions import NotFound, ValidationError


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_number(self, request, paginator):
        """The page asked for; a 400 naming `page` when it is not a page number at all
        (DRF answers every bad page 404 "Invalid page.", as if the endpoint were missing)."""
        number = super().get_page_number(request, paginator)  # "last" comes back as a number
        try:
            valid = int(number) >= 1
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ValidationError({self.page_query_param: [f"{number!r} is not a page number: use 1, 2, …"]})
        return number

    def paginate_queryset(self, queryset, request, view=None):
        try:
            return super().paginate_queryset(queryset, request, view)
        except NotFound:
            # Past the last page (the only NotFound left once the number is valid).
            pages = self.django_paginator_class(queryset, self.get_page_size(request)).num_pages
            raise NotFound(
                f"There is no page {request.query_params.get(self.page_query_param)}: the list has {pages} "
                f"page{'s' if pages != 1 else ''} of {self.get_page_size(request)}."
            ) from None
