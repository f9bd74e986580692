"""Django admin for models: secrets are never shown, only their names."""

from django.contrib import admin

from models_app.models import MLModel, ModelBuild, ModelEvent


class ModelBuildInline(admin.TabularInline):
    model = ModelBuild
    fields = ["number", "status", "created_at", "started_at", "finished_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True


@admin.register(MLModel)
class MLModelAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "hash",
        "group",
        "operation",
        "status",
        "python_version",
        "created_by",
        "updated_at",
    ]
    list_filter = ["status", "operation", "group", "python_version"]
    search_fields = ["name", "hash", "group__name", "created_by__username"]
    exclude = ["env_ciphertext"]
    # A model changes state, group and files only through models_app.services (the API
    # and the pages): deleting here would leave its runners, files and executions behind.
    readonly_fields = [
        "group",
        "status",
        "operation",
        "hash",
        "env_names",
        "env_fingerprint",
        "smoke_result",
        "created_at",
        "updated_at",
        "deployed_at",
    ]
    inlines = [ModelBuildInline]

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ModelBuild)
class ModelBuildAdmin(admin.ModelAdmin):
    list_display = ["model", "number", "status", "started_at", "finished_at"]
    list_filter = ["status"]
    search_fields = ["model__name", "model__hash"]
    readonly_fields = [
        "model",
        "number",
        "status",
        "requested_by",
        "started_at",
        "finished_at",
        "heartbeat_at",
        "log",
    ]


@admin.register(ModelEvent)
class ModelEventAdmin(admin.ModelAdmin):
    list_display = ["at", "model", "action", "actor"]
    list_filter = ["action"]
    search_fields = ["model__name", "model__hash", "actor__username"]
