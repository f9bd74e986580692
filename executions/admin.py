"""Django admin for executions: read-only (they change only through their task)."""

from django.contrib import admin

from executions.models import Execution


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ["number", "model", "status", "input_file", "requested_at", "finished_at", "attempts"]
    list_filter = ["status"]
    search_fields = ["model__name", "model__hash", "input_file"]
    list_select_related = ["model"]
    readonly_fields = [field.name for field in Execution._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
