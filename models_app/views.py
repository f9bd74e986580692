"""Browser pages of models: list, upload form, model page and its actions."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from models_app import interpreters, services
from models_app.access import get_model_for_user, models_for
from models_app.forms import ModelUploadForm
from portal.access import groups_for


@login_required
def model_list(request):
    models = models_for(request.user).select_related("group").order_by("-created_at")
    return render(request, "models_app/model_list.html", {"models": models})


def _python_versions() -> list[str]:
    found = interpreters.discover_interpreters(settings.PYTHON_SEARCH_PATHS)
    return sorted({i.minor for i in found}, key=lambda v: tuple(int(p) for p in v.split(".")))


@login_required
@require_http_methods(["GET", "POST"])
def model_upload(request):
    groups = list(groups_for(request.user).values_list("name", flat=True))
    form = ModelUploadForm(
        request.POST or None, request.FILES or None, groups=groups, python_versions=_python_versions()
    )
    if request.method == "POST":
        limits = getattr(request, "upload_limit_errors", {})
        for field, message in limits.items():
            form.add_error(None if field == "__all__" else field, message)
        if not limits and form.is_valid():
            data = form.cleaned_data
            upload = services.ModelUpload(
                name=data["name"],
                group=data["group"],
                operation=data["operation"],
                model_reference=data["model_reference"],
                python_version=data["python_version"],
                input_type=data["input_type"] or None,
                source=data["source"],
                model=data["model"],
                requirements=data["requirements"],
                schema_file=data["schema"],
                env=data["env"],
                sample=data["sample"],
                extra=data["extra"],
            )
            try:
                model = services.create_model(request.user, upload)
            except services.UploadErrors as exc:
                for field, problems in exc.errors.items():
                    for problem in problems:
                        form.add_error(field if field in form.fields else None, problem)
            else:
                messages.success(request, f"{model.name} uploaded; its environment is being built.")
                return redirect("model-detail", model_hash=model.hash)
    return render(request, "models_app/model_upload.html", {"form": form}, status=400 if form.errors else 200)


@login_required
def model_detail(request, model_hash: str):
    model = get_model_for_user(request.user, model_hash)
    context = {
        "model": model,
        "build": model.builds.first(),
        "events": model.events.select_related("actor")[:20],
    }
    return render(request, "models_app/model_detail.html", context)


@login_required
@require_POST
def model_action(request, model_hash: str, action: str):
    model = get_model_for_user(request.user, model_hash)
    act = {"disable": services.disable, "restart": services.restart, "delete": services.delete}.get(action)
    if act is None:
        messages.error(request, f"Unknown action '{action}'.")
    else:
        try:
            act(model, request.user)
            messages.success(request, f"{model.name}: {action} done.")
        except services.ActionRefused as exc:
            messages.error(request, str(exc))
    return redirect("model-detail", model_hash=model.hash)
