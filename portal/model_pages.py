"""Browser pages of models: list, upload form, model page and its actions.

The pages read the same services as the API. What changes while a page is open (the
status of a build, its log, executions, warm runners) is fetched by the page's script
from the API with the session; the first render is complete without JavaScript.
"""

from __future__ import annotations

import json

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import DateTimeField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, Greatest
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from executions.models import Execution
from groups import storage
from groups.access import admins, groups_for, is_admin
from groups.pages import post_only_page
from groups.uploads import (
    add_limit_errors,
    form_errors,
    lost_parts,
    refused_upload_status,
    sent_by_upload_script,
    upload_form_data,
)
from models_app import codegen, services
from models_app.access import get_model_for_user, models_for
from models_app.forms import ModelFilterForm, ModelSettingsForm, ModelUploadForm
from models_app.links import docs_url, run_url
from models_app.models import MLModel, ModelEvent
from monitoring.models import PredictionRecord
from monitoring.stats import call_stats
from monitors import display as monitoring_display
from portal.actions import Action, version_rows

Status = MLModel.Status
IN_PROGRESS = (Status.READY, Status.BUILDING)
LOG_TAIL_LINES = 400


# --- Last activity --------------------------------------------------------------------


def with_last_activity(models: QuerySet[MLModel]) -> QuerySet[MLModel]:
    """Annotate `last_activity`: the latest of an update, an event, an execution or a call.

    One correlated subquery per source (recorded calls, the numerous ones, have an index
    on (model, at)).
    """

    def latest(queryset, field: str):
        return Subquery(queryset.filter(model=OuterRef("pk")).order_by(f"-{field}").values(field)[:1])

    models = models.annotate(
        last_event_at=latest(ModelEvent.objects, "at"),
        last_execution_at=latest(Execution.objects, "requested_at"),
        last_call_at=latest(PredictionRecord.objects, "at"),
    )
    # Greatest() is NULL on SQLite when any argument is: fall back to updated_at.
    return models.annotate(
        last_activity=Greatest(
            "updated_at",
            *(
                Coalesce(name, "updated_at", output_field=DateTimeField())
                for name in ("last_event_at", "last_execution_at", "last_call_at")
            ),
            output_field=DateTimeField(),
        )
    )


def activity_label(model: MLModel) -> str:
    """What the model's last activity was, for the dashboard."""
    latest = model.last_activity
    if model.last_call_at and model.last_call_at >= latest:
        return _("called")
    if model.last_execution_at and model.last_execution_at >= latest:
        return _("execution requested")
    return _("updated")


# --- List -----------------------------------------------------------------------------


@login_required
@require_http_methods(["GET"])
def model_list(request: HttpRequest) -> HttpResponse:
    groups = list(groups_for(request.user).order_by("name").values_list("name", flat=True))
    form = ModelFilterForm(request.GET or None, groups=groups)
    models = models_for(request.user).select_related("group", "created_by", "live_version")
    status_wanted = ""
    if form.is_valid():
        data = form.cleaned_data
        if data["q"]:
            models = models.filter(Q(name__icontains=data["q"]) | Q(hash__iexact=data["q"]))
        if data["group"]:
            models = models.filter(group__name=data["group"])
        if data["operation"]:
            models = models.filter(operation=data["operation"])
        status_wanted = data["status"]
    # A model's status is its live version's. Deleted models are listed only when asked for.
    models = models.serving_status(status_wanted) if status_wanted else models.exclude(status=Status.DELETED)
    page = Paginator(with_last_activity(models).order_by("-created_at"), 50).get_page(request.GET.get("page"))
    page.object_list = list(page.object_list)  # evaluated once: the rows carry their badge
    badges = monitoring_display.badges(page.object_list)
    for model in page.object_list:
        model.monitoring = badges.get(model.pk)
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "models": page.object_list, "query": query.urlencode()}
    # Nothing to deploy yet: whom to ask instead of a "Deploy" button.
    context["no_group"] = not groups and not is_admin(request.user)
    context["admins"] = list(admins()) if context["no_group"] else []
    status = 400 if form.is_bound and not form.is_valid() else 200
    return render(request, "models_app/model_list.html", context, status=status)


# --- Upload ---------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def model_upload(request: HttpRequest) -> HttpResponse:
    form = ModelUploadForm(
        *upload_form_data(request),
        user=request.user,
        initial={"group": request.GET["group"]} if request.GET.get("group") else None,
        lost_parts=lost_parts(request),
    )
    if request.method == "POST":
        model = None
        if not add_limit_errors(request, form) and form.is_valid():
            model = storage.stored_or_refused(
                request, form, lambda: services.create_model(request.user, form.upload)
            )
        if model is not None:
            messages.success(
                request, _("%(name)s was uploaded. Its environment is being built.") % {"name": model.name}
            )
            target = reverse("model-detail", args=[model.hash])
            if sent_by_upload_script(request):
                return JsonResponse({"hash": model.hash, "redirect": target}, status=201)
            return redirect(target)
        if sent_by_upload_script(request):
            return JsonResponse({"errors": form_errors(form)}, status=refused_upload_status(request))
    context = {
        "form": form,
        "max_file_bytes": settings.MAX_UPLOAD_FILE_BYTES,
        "max_total_bytes": settings.MAX_UPLOAD_TOTAL_BYTES,
        "max_text_bytes": settings.MAX_TEXT_FILE_BYTES,
    }
    context["no_groups"] = not form.fields["group"].queryset.exists()
    context["admins"] = list(admins()) if context["no_groups"] else []
    return render(
        request,
        "models_app/model_upload.html",
        context,
        status=refused_upload_status(request) if form.errors else 200,
    )


# --- Model page -----------------------------------------------------------------------


ACTIONS = {
    action.name: action
    for action in (
        Action(
            "restart",
            gettext_lazy("Restart"),
            gettext_lazy("Rebuild and redeploy this model?"),
            gettext_lazy(
                "A new build starts (its environment is reused when nothing changed). "
                "The model answers 409 until the build is Deployed again."
            ),
            services.ALLOWED_FROM["restart"],
        ),
        Action(
            "disable",
            gettext_lazy("Disable"),
            gettext_lazy("Disable this model?"),
            gettext_lazy(
                "Calls are refused (409) and its warm processes stop. Files, secrets and settings are "
                "kept: restart it to serve again."
            ),
            services.ALLOWED_FROM["disable"],
        ),
        Action(
            "delete",
            gettext_lazy("Delete"),
            gettext_lazy("Delete this model for good?"),
            gettext_lazy(
                "Its files, secrets and environment link are removed and its URL stops answering. "
                "This cannot be undone; its hash is never reused."
            ),
            services.ALLOWED_FROM["delete"],
            danger=True,
        ),
    )
}


def _log_tail(log: str) -> str:
    lines = log.splitlines()
    if len(lines) <= LOG_TAIL_LINES:
        return log
    earlier = _("… %(count)s earlier lines (full log: API /logs) …") % {"count": len(lines) - LOG_TAIL_LINES}
    return earlier + "\n" + "\n".join(lines[-LOG_TAIL_LINES:])


EVENT_LABELS = {
    "created": gettext_lazy("Uploaded"),
    "deployed": gettext_lazy("Deployed"),
    "build_failed": gettext_lazy("Build failed"),
    "build_requeued": gettext_lazy("Build re-queued"),
    "settings_changed": gettext_lazy("Serving settings changed"),
    "disabled": gettext_lazy("Disabled"),
    "restarted": gettext_lazy("Restarted"),
    "deleted": gettext_lazy("Deleted"),
    "version_added": gettext_lazy("Version added"),
    "version_live": gettext_lazy("Version made live"),
}


def _events(model: MLModel) -> list[ModelEvent]:
    events = list(model.events.select_related("actor")[:12])
    for event in events:
        event.label = EVENT_LABELS.get(event.action, event.action.replace("_", " ").capitalize())
    return events


def build_context(row: MLModel) -> dict:
    """A row's latest build for templates/models_app/_build_log.html (a model page shows
    its live version's, a version page its own)."""
    build = row.builds.first()
    return {
        "build": build,
        "build_seconds": (
            (build.finished_at - build.started_at).total_seconds()
            if build and build.started_at and build.finished_at
            else None
        ),
        "log_tail": _log_tail(build.log) if build else "",
        "in_progress": row.status in IN_PROGRESS,
    }


def _detail_context(request: HttpRequest, model: MLModel, settings_form=None) -> dict:
    # The model's run URL serves its live version: status, build, files, example, actions
    # and generated code are that version's; name, hash, URLs, calls, executions and
    # history are the model's.
    serving = model.serving
    url = run_url(request, model)
    context = {
        "model": model,
        "serving": serving,
        **build_context(serving),
        "versions": version_rows(model),
        "events": _events(model),
        "actions": [(action, serving.status in action.allowed_from) for action in ACTIONS.values()],
        "run_url": url,
        "docs_url": docs_url(request, model),
        "code": [(lang, codegen.generate(serving, url, lang)) for lang in codegen.LANGUAGES],
        "group_token": model.group.active_token(),
        "deleted": model.status == Status.DELETED,
        "live_config": {
            "hash": model.hash,
            "status": serving.status,
            "statusUrl": reverse("api-model-status", args=[model.hash]),
            "runUrl": reverse("run-model", args=[model.hash]),
            "operation": model.operation,
        },
    }
    if model.is_sync:
        context["schema_example"] = json.dumps(serving.schema if serving.schema is not None else {}, indent=2)
        context["settings_form"] = settings_form or ModelSettingsForm(
            model=model,
            initial={
                "min_replicas": model.min_replicas,
                "max_replicas": model.max_replicas,
                "request_timeout": model.request_timeout,
            },
        )
        context["predict_timeout_default"] = settings.PREDICT_TIMEOUT
        context["calls"] = call_stats(model.pk)
        context["live_config"]["runnersUrl"] = reverse("api-model-runners", args=[model.hash])
    else:
        executions = model.executions.select_related("requested_by").order_by("-number")
        context["executions"] = executions[:20]
        context["execution_count"] = executions.count()
        context["max_execution_bytes"] = settings.MAX_EXECUTION_UPLOAD_BYTES
        context["live_config"]["executionsUrl"] = (
            reverse("execution-list", args=[model.hash]) + "?page_size=20"
        )
        context["live_config"]["executionPage"] = reverse("execution-page", args=[model.hash, 0])
    return context


@login_required
@require_http_methods(["GET"])
def model_detail(request: HttpRequest, model_hash: str) -> HttpResponse:
    model = get_model_for_user(request.user, model_hash)
    return render(request, "models_app/model_detail.html", _detail_context(request, model))


@login_required
@post_only_page(lambda model_hash: reverse("model-detail", args=[model_hash]) + "#serving")
def model_settings(request: HttpRequest, model_hash: str) -> HttpResponse:
    """Serving settings of a Sync model (min and max replicas, request timeout): no rebuild needed."""
    model = get_model_for_user(request.user, model_hash)
    if model.status == Status.DELETED or not model.is_sync:
        messages.error(
            request, _("Only the serving settings of a Sync model that is not deleted can change.")
        )
        return redirect("model-detail", model_hash=model.hash)
    form = ModelSettingsForm(request.POST, model=model)
    if not form.is_valid():
        context = _detail_context(request, model, settings_form=form)
        return render(request, "models_app/model_detail.html", context, status=400)
    try:
        changed = services.change_settings(model, request.user, **form.cleaned_data)
    except services.ActionRefused as refused:  # another change landed since the form was read
        form.add_error(None, str(refused))
        context = _detail_context(request, model, settings_form=form)
        return render(request, "models_app/model_detail.html", context, status=409)
    timeout = changed.request_timeout or _("default (%(seconds)s)") % {"seconds": settings.PREDICT_TIMEOUT}
    text = _(
        "Serving settings saved: %(low)s to %(high)s replicas per node as the load asks, request "
        "timeout %(timeout)s s. The model host applies them within seconds."
    )
    if changed.max_replicas:
        high = changed.max_replicas
    elif changed.min_replicas > settings.HOST_CORES:
        # No maximum, and a minimum above the cores: the minimum is the maximum too.
        high = _("%(replicas)s (the minimum: above the node's %(cores)s cores)") % {
            "replicas": changed.effective_max_replicas,
            "cores": settings.HOST_CORES,
        }
    else:
        high = _("%(cores)s (the node's cores)") % {"cores": changed.effective_max_replicas}
    messages.success(request, text % {"low": changed.min_replicas, "high": high, "timeout": timeout})
    return redirect(reverse("model-detail", args=[model.hash]) + "#serving")


@login_required
@post_only_page(lambda model_hash, **_: reverse("model-detail", args=[model_hash]))
def model_action(request: HttpRequest, model_hash: str, action: str) -> HttpResponse:
    """Disable, restart or delete. Without `confirm=yes` the answer is a confirmation page
    (the page's script asks in a dialog instead and sends `confirm=yes`)."""
    model = get_model_for_user(request.user, model_hash)
    spec = ACTIONS.get(action)
    if spec is None:
        raise Http404(f"Models have no action '{action}'.")
    if request.POST.get("confirm") != "yes":
        context = {
            "model": model,
            "target": model if action == "delete" else model.serving,
            "action": spec,
            "action_url": reverse("model-action", args=[model.hash, action]),
            "back_url": reverse("model-detail", args=[model.hash]),
        }
        return render(request, "models_app/model_confirm.html", context)
    act = {"disable": services.disable, "restart": services.restart, "delete": services.delete}[action]
    try:
        # Disable and restart act on the version the run URL serves; delete takes the
        # model with every version.
        act(model if action == "delete" else model.serving, request.user)
    except services.ActionRefused as exc:
        messages.error(request, str(exc))
        return redirect("model-detail", model_hash=model.hash)
    done = {
        "disable": _("%(name)s was disabled."),
        "restart": _("%(name)s was restarted: a new build is queued."),
        "delete": _("%(name)s was deleted."),
    }
    messages.success(request, done[action] % {"name": model.name})
    if action == "delete":
        return redirect("model-list")
    return redirect("model-detail", model_hash=model.hash)
