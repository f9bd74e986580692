"""Page-number pagination with a client-chosen page size (1 to 500; beyond is a 400).

A bad `page` or `page_size`, an empty one included, is a 400 naming it: never quietly
the default, the first page or the maximum (docs/api.md).
"""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, inline_serializer
from rest_framework import pagination, serializers
from rest_framework.exceptions import NotFound, ValidationError


class PageNumberPagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_number(self, request, paginator):
        """The page asked for; a 400 naming `page` when it is not a page number at all
        (DRF answers every bad page 404 "Invalid page.", as if the endpoint were missing,
        and an empty one the first page)."""
        if request.query_params.get(self.page_query_param) == "":
            number = ""
        else:
            number = super().get_page_number(request, paginator)  # "last" comes back as a number
        if not (isinstance(number, int) or _whole_number(number)) or int(number) < 1:
            raise ValidationError({self.page_query_param: [f"{number!r} is not a page number: use 1, 2, …"]})
        return number

    def get_page_size(self, request):
        """The page size asked for; a 400 naming `page_size` when it is not a whole number
        from 1 to the maximum (DRF falls back to the default, or caps, without a word)."""
        asked = request.query_params.get(self.page_size_query_param)
        if asked is None:  # absent; an empty one is a bad value like any other
            return self.page_size
        if not _whole_number(asked) or not 1 <= int(asked) <= self.max_page_size:
            raise ValidationError(
                {
                    self.page_size_query_param: [
                        f"{asked!r} is not a page size: use a whole number from 1 to {self.max_page_size}."
                    ]
                }
            )
        return int(asked)

    def get_schema_operation_parameters(self, view):
        """DRF's, with page_size's range (a size outside it is a 400)."""
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"].update(minimum=1, maximum=self.max_page_size)
        return parameters

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


def _whole_number(text: str) -> bool:
    """ASCII digits only: int() also reads "١", " 1" and "+1", which no client means."""
    return text.isascii() and text.isdigit()


def paginated(item_serializer: type[serializers.Serializer]) -> serializers.Serializer:
    """The schema of a page of `item_serializer`, for views that paginate by hand (an
    APIView's list): drf-spectacular wraps only generic list views' answers itself."""
    name = item_serializer.__name__.removesuffix("Serializer")
    return inline_serializer(
        name=f"Paginated{name}List",
        fields={
            "count": serializers.IntegerField(help_text="Items in the whole list."),
            "next": serializers.URLField(allow_null=True, help_text="The next page, or null."),
            "previous": serializers.URLField(allow_null=True, help_text="The previous page, or null."),
            "results": item_serializer(many=True),
        },
    )


# The query parameters of every paginated list.
PAGE_PARAMETERS = [
    OpenApiParameter("page", OpenApiTypes.STR, description="A page number from 1, or `last`."),
    OpenApiParameter(
        "page_size",
        {"type": "integer", "minimum": 1, "maximum": PageNumberPagination.max_page_size},
        description=(
            f"Items per page (default {settings.REST_FRAMEWORK['PAGE_SIZE']}, "
            f"at most {PageNumberPagination.max_page_size})."
        ),
    ),
]
