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

    def get_queryset(self, request):
        # Each row is titled by its model (ModelBuild.__str__); its log is not shown here.
        return super().get_queryset(request).select_related("model").defer("log")


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
    list_select_related = ["group", "created_by"]  # created_by is nullable: not joined by default
    search_fields = ["name", "hash", "group__name", "created_by__username"]
    exclude = ["env_ciphertext"]
    # Runs, models (every version is a row) and users grow without bound: a drop-down would
    # list them all, and each run's label reads its experiment. TrainingRun has no admin to
    # search in, so its run is given by id.
    raw_id_fields = ["training_run"]
    autocomplete_fields = ["line", "live_version", "created_by"]
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
    list_select_related = ["model"]
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
    list_select_related = ["model", "actor"]  # actor is nullable: not joined by default
    search_fields = ["model__name", "model__hash", "actor__username"]
    autocomplete_fields = ["model", "actor"]
