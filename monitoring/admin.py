"""Django admin for recorded calls: read-only, and cheap to list on a table of millions."""

from __future__ import annotations

from django.contrib import admin

from monitoring.models import DroppedRecords, PredictionRecord


class StatusClassFilter(admin.SimpleListFilter):
    """Successes, the caller's errors, the model's errors: fixed choices, where a filter on
    `status_code` itself would read every call for the distinct codes to offer."""

    title = "status"
    parameter_name = "status"
    CLASSES = {"2xx": (200, "2xx success"), "4xx": (400, "4xx caller error"), "5xx": (500, "5xx error")}

    def lookups(self, request, model_admin):
        return [(value, label) for value, (_, label) in self.CLASSES.items()]

    def queryset(self, request, queryset):
        if self.value() not in self.CLASSES:
            return queryset
        low, _ = self.CLASSES[self.value()]
        return queryset.filter(status_code__gte=low, status_code__lt=low + 100)


@admin.register(PredictionRecord)
class PredictionRecordAdmin(admin.ModelAdmin):
    list_display = ["at", "model", "status_code", "latency_ms"]
    # No filter by model: it would list every model and version. Search by its hash instead.
    list_filter = [StatusClassFilter]
    list_select_related = ["model"]
    search_fields = ["model__hash", "model__name"]
    # A filtered page would count the whole table once more for "(N total)".
    show_full_result_count = False
    readonly_fields = ["model", "at", "status_code", "latency_ms", "input", "output"]


@admin.register(DroppedRecords)
class DroppedRecordsAdmin(admin.ModelAdmin):
    list_display = ["at", "count", "process"]
