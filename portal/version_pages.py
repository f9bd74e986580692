"""Browser pages of a model's versions: upload the next one, a version's page, its actions.

A later upload of a model is a version of it (`models_app.services.add_version`): a row of
its own with its hash, files, environment and build log, while the model's run URL serves
the version marked live. The model page lists the versions (`_versions.html`, followed by
static/js/versions.js); these pages add one, show one, and make it live, restart, disable
or delete it, on the same services as the API's `/models/<hash>/versions/...`.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from groups import storage
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
from models_app.access import get_model_for_user, get_version
from models_app.forms import ModelVersionForm
from models_app.links import version_run_url
from models_app.models import MLModel
from portal.actions import version_actions
from portal.model_pages import build_context

Status = MLModel.Status


def _versions_url(model: MLModel) -> str:
    return reverse("model-detail", args=[model.hash]) + "#versions"


# --- Upload ---------------------------------------------------------------------------


@login_required
@require_http_methods(["GET", "POST"])
def version_upload(request: HttpRequest, model_hash: str) -> HttpResponse:
    """The upload form for the model's next version (name, group and operation are the
    model's); it answers like the model upload page: JSON to its script, else a redirect."""
    model = get_model_for_user(request.user, model_hash)
    serving = model.serving
    # Prefilled with the live version's runtime: a new version usually keeps it.
    initial = {
        name: getattr(serving, name) for name in ("model_reference", "python_version", "allow_network")
    }
    form = ModelVersionForm(
        *upload_form_data(request),
        user=request.user,
        model=model,
        initial=initial,
        lost_parts=lost_parts(request),
    )
    if request.method == "POST":
        version = None
        if not add_limit_errors(request, form) and form.is_valid():
            try:
                version = storage.stored_or_refused(
                    request, form, lambda: services.add_version(request.user, model, form.upload)
                )
            except services.ActionRefused as exc:  # the model was deleted since the form checked it
                form.add_error(None, str(exc))
        if version is not None:
            messages.success(
                request,
                _("Version %(number)s of %(name)s was uploaded. It goes live once its build deploys it.")
                % {"number": version.version, "name": model.name},
            )
            target = _versions_url(model)
            if sent_by_upload_script(request):
                return JsonResponse(
                    {"hash": version.hash, "version": version.version, "redirect": target}, status=201
                )
            return redirect(target)
        if sent_by_upload_script(request):
            return JsonResponse({"errors": form_errors(form)}, status=refused_upload_status(request))
    context = {
        "model": model,
        "serving": serving,
        "form": form,
        "deleted": model.status == Status.DELETED,
        "next_number": model.all_versions().count() + 1,
        "max_file_bytes": settings.MAX_UPLOAD_FILE_BYTES,
        "max_total_bytes": settings.MAX_UPLOAD_TOTAL_BYTES,
        "max_text_bytes": settings.MAX_TEXT_FILE_BYTES,
    }
    return render(
        request,
        "models_app/version_upload.html",
        context,
        status=refused_upload_status(request) if form.errors else 200,
    )


# --- A version's page -----------------------------------------------------------------


@login_required
@require_http_methods(["GET"])
def version_detail(request: HttpRequest, model_hash: str, number: int) -> HttpResponse:
    model = get_model_for_user(request.user, model_hash)
    version = get_version(model, number)
    live = model.serving.pk == version.pk
    url = version_run_url(request, version)
    context = {
        "model": model,
        "version": version,
        "live": live,
        "version_count": model.all_versions().count(),
        **build_context(version),
        "deleted": version.status == Status.DELETED,
        "run_url": url,
        "curl": codegen.generate(version, url, "curl"),
        "actions": version_actions(version, live),
        "live_config": {
            "hash": version.hash,
            "status": version.status,
            "statusUrl": reverse("api-model-version-status", args=[model.hash, version.version]),
            "runUrl": reverse("run-model-version", args=[model.hash, version.version]),
            "operation": version.operation,
        },
    }
    return render(request, "models_app/version_detail.html", context)


# --- Actions --------------------------------------------------------------------------


@login_required
@post_only_page(lambda model_hash, number, **_: reverse("version-detail", args=[model_hash, number]))
def version_action(request: HttpRequest, model_hash: str, number: int, action: str) -> HttpResponse:
    """Make live, restart, disable or delete one version. Without `confirm=yes` the answer
    is a confirmation page (the page's script asks in a dialog and sends `confirm=yes`).
    `next=model` comes back to the model page's versions (its table's buttons)."""
    model = get_model_for_user(request.user, model_hash)
    version = get_version(model, number)
    live = model.serving.pk == version.pk
    spec = next((a for a, _offered in version_actions(version, live) if a.name == action), None)
    if spec is None:
        raise Http404(f"Versions have no action '{action}'.")
    from_model = request.POST.get("next") == "model"
    back = _versions_url(model) if from_model else reverse("version-detail", args=[model.hash, number])
    if request.POST.get("confirm") != "yes":
        context = {
            "model": model,
            "target": version,
            "show_version": True,
            "action": spec,
            "action_url": reverse("version-action", args=[model.hash, number, action]),
            "back_url": back,
            "next": "model" if from_model else "",
        }
        return render(request, "models_app/model_confirm.html", context)
    try:
        if action == "live":
            services.warm_quietly(version)  # before it takes calls: no cold first call after a rollback
            services.make_live(model, version, request.user)
        elif action == "delete":
            services.delete_version(version, request.user)
        else:
            {"disable": services.disable, "restart": services.restart}[action](version, request.user)
    except services.ActionRefused as exc:
        messages.error(request, str(exc))
        return redirect(back)
    done = {
        "live": _("Version %(number)s is live: the model's run URL serves it."),
        "restart": _("Version %(number)s was restarted: a new build is queued."),
        "disable": _("Version %(number)s was disabled."),
        "delete": _("Version %(number)s was deleted."),
    }
    messages.success(request, done[action] % {"number": number})
    return redirect(_versions_url(model) if action == "delete" else back)
