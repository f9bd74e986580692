from django.contrib import admin

from monitoring.models import DroppedRecords, PredictionRecord


@admin.register(PredictionRecord)
class PredictionRecordAdmin(admin.ModelAdmin):
    list_display = ["at", "model", "status_code", "latency_ms"]
    list_filter = ["status_code", "model"]
    search_fields = ["model__hash", "model__name"]
    readonly_fields = ["model", "at", "status_code", "latency_ms", "input", "output"]


@admin.register(DroppedRecords)
class DroppedRecordsAdmin(admin.ModelAdmin):
    list_display = ["at", "count", "process"]
