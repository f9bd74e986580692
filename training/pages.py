"""Browser pages of training: experiments, an experiment's runs, the run form, a run.

The pages validate through the same forms as the API (training.forms) and call the same
services. What changes while a page is open (a run's status and log) is fetched by
static/js/training.js from the API with the session; the first render is complete
without JavaScript, and the sorting and the chart of the experiment page are drawn by
that script from the table and the data the page carries.

AutoML runs: the run form shows the configuration as fields (`automl.fields`), turned
into the conf.json that `TrainingRunForm` checks; a run's page reads the search's JSON
artifacts (leaderboard, curves, importances) here, as untrusted files, and embeds what
the charts need with `json_script`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from groups import storage
from groups.access import groups_for
from groups.pages import post_only_page
from groups.uploads import (
    add_limit_errors,
    form_errors,
    lost_parts,
    refused_upload_status,
    sent_by_upload_script,
    upload_form_data,
)
from models_app import services as model_services
from training import automl, services
from training.access import experiments_for, get_experiment_for_user, get_run_for_user
from training.automl.fields import AutoMLFieldsForm
from training.automl.results import STAGE_COLUMNS, automl_context
from training.display import duration_text, json_text, localized, number_text
from training.forms import EXTERNAL_TABLES, ExperimentForm, PromoteForm, TrainingRunForm
from training.models import Experiment, TrainingRun

Status = TrainingRun.Status
AUTOML = TrainingRun.TrainingType.AUTOML
IN_PROGRESS = (Status.REQUESTED, Status.RUNNING)
LOG_TAIL_LINES = 400
# The page renders each run with a column per metric: past a few hundred it took seconds
# to load (1.7 MB at 751 runs). Every run stays in the API's list.
MAX_SHOWN_RUNS = 300
# Fields a run needs once its type is chosen: marked so on the form; the form checks them.
NEEDED_BY_TYPE = ("train_data", "source", "X_train", "model_output", "model")


# --- shared helpers -------------------------------------------------------------------


def _log_tail(log: str) -> str:
    lines = log.splitlines()
    if len(lines) <= LOG_TAIL_LINES:
        return log
    earlier = _("… %(count)s earlier lines (full log: the zip, or API /logs) …") % {
        "count": len(lines) - LOG_TAIL_LINES
    }
    return earlier + "\n" + "\n".join(lines[-LOG_TAIL_LINES:])


# --- experiments ----------------------------------------------------------------------


class ExperimentFilterForm(forms.Form):
    """The list's filters (ids prefixed so they don't clash with the new-experiment form's)."""

    q = forms.CharField(required=False, label=gettext_lazy("Search"), max_length=100)
    group = forms.ChoiceField(required=False, label=gettext_lazy("Group"))
    model_type = forms.ChoiceField(
        required=False,
        label=gettext_lazy("Model type"),
        choices=[("", gettext_lazy("Any type")), *Experiment.ModelType.choices],
    )

    def __init__(self, *args, groups: list[str], **kwargs):
        super().__init__(*args, auto_id="filter_%s", **kwargs)
        self.fields["group"].choices = [("", _("All my groups")), *((name, name) for name in groups)]
        self.fields["q"].widget.attrs["placeholder"] = _("Name or hash")


@login_required
@require_http_methods(["GET", "POST"])
def experiment_list(request: HttpRequest) -> HttpResponse:
    """The experiments of the user's groups, and the form that creates (or finds) one."""
    form = ExperimentForm(
        request.POST if request.method == "POST" else None,
        user=request.user,
        initial={"group": request.GET.get("group") or None},
    )
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        experiment, created = services.get_or_create_experiment(
            request.user,
            name=data["experiment_name"],
            model_type=data["model_type"],
            group=data["group"],
            force=data["force"],
        )
        if created:
            messages.success(
                request,
                _("Experiment %(name)s created in %(group)s.")
                % {"name": experiment.name, "group": experiment.group.name},
            )
        else:
            messages.info(
                request,
                _(
                    "%(group)s already has a %(type)s experiment named %(name)s: here it is. "
                    "Tick “Force” to create another one."
                )
                % {"group": experiment.group.name, "type": experiment.model_type, "name": experiment.name},
            )
        return redirect("training-experiment", experiment_hash=experiment.hash)

    groups = list(groups_for(request.user).order_by("name").values_list("name", flat=True))
    filters = ExperimentFilterForm(request.GET or None, groups=groups)
    last_run = TrainingRun.objects.filter(experiment=OuterRef("pk")).order_by("-number")
    experiments = experiments_for(request.user).select_related("group", "created_by")
    if filters.is_valid():
        data = filters.cleaned_data
        if data["q"]:
            experiments = experiments.filter(Q(name__icontains=data["q"]) | Q(hash__iexact=data["q"]))
        if data["group"]:
            experiments = experiments.filter(group__name=data["group"])
        if data["model_type"]:
            experiments = experiments.filter(model_type=data["model_type"])
    experiments = experiments.annotate(
        runs_count=Count("runs"),
        last_run_status=Subquery(last_run.values("status")[:1]),
        last_run_at=Subquery(last_run.values("requested_at")[:1]),
    ).order_by("-created_at", "-pk")
    page = Paginator(experiments, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "form": form,
        "filters": filters,
        "page": page,
        "experiments": page.object_list,
        "query": query.urlencode(),
        "no_groups": not groups,
    }
    bad = form.is_bound or (filters.is_bound and not filters.is_valid())
    return render(request, "training/experiment_list.html", context, status=400 if bad else 200)


@dataclass
class RunRow:
    run: TrainingRun
    metrics: list[tuple[str, float | None, str]]  # (name, value, text) in the columns' order
    duration: float | None

    @property
    def duration_text(self) -> str:
        return duration_text(self.duration)


@login_required
@require_http_methods(["GET"])
def experiment_detail(request: HttpRequest, experiment_hash: str) -> HttpResponse:
    """An experiment's runs side by side, sortable, with a chart of one metric across runs."""
    experiment = get_experiment_for_user(request.user, experiment_hash)
    runs = list(experiment.runs.select_related("requested_by")[:MAX_SHOWN_RUNS])
    metric_names = sorted({name for run in runs for name in (run.metrics or {})})
    rows = []
    for run in runs:
        run.experiment = experiment
        values = run.metrics or {}
        rows.append(
            RunRow(
                run=run,
                metrics=[(name, values.get(name), number_text(values.get(name))) for name in metric_names],
                duration=run.duration.total_seconds() if run.duration is not None else None,
            )
        )
    chart = {
        "metrics": metric_names,
        "runs": [
            {
                "number": run.number,
                "name": run.name,
                "status": run.status,
                "url": reverse("training-run", args=[experiment.hash, run.number]),
                "metrics": run.metrics or {},
            }
            for run in sorted(runs, key=lambda run: run.number)
        ],
    }
    context = {
        "experiment": experiment,
        "rows": rows,
        "metric_names": metric_names,
        "chart": chart,
        "shown_all": len(runs) < MAX_SHOWN_RUNS,
        "statuses": (statuses := _status_counts(experiment)),
        "run_count": sum(statuses.values()),
    }
    return render(request, "training/experiment_detail.html", context)


def _status_counts(experiment) -> dict[str, int]:
    """Runs by status, all of them (the page may show only the latest)."""
    counted = dict(
        experiment.runs.order_by().values("status").annotate(n=Count("pk")).values_list("status", "n")
    )
    return {status: counted.get(status, 0) for status in Status.values}


# --- a new run ------------------------------------------------------------------------


def _automl_packages() -> list[str]:
    """The platform's AutoML pins, for the form's aside (empty while the file is absent)."""
    try:
        text = automl.REQUIREMENTS.read_text(encoding="utf-8")
    except OSError:
        return []
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.startswith(("#", "-"))]
    return [re.split(r"[\s=<>!~;\[]", line, maxsplit=1)[0] for line in lines]


@login_required
@require_http_methods(["GET", "POST"])
def run_new(request: HttpRequest, experiment_hash: str) -> HttpResponse:
    """The form that starts a run: Custom (data + code), External (artifacts) or AutoML
    (data + the configuration, as fields or as an uploaded conf.json)."""
    experiment = get_experiment_for_user(request.user, experiment_hash)
    wanted_type = request.GET.get("type")
    posted = request.method == "POST"
    automl_fields = AutoMLFieldsForm(request.POST if posted else None)
    data, files = upload_form_data(request)
    if posted and request.POST.get("training_type") == AUTOML and not automl_fields.uses_file:
        # The fields are conf.json written for the user: the form checks it like a file.
        data = request.POST.copy()
        data["conf_dict"] = json.dumps(automl_fields.conf())
        files = request.FILES.copy()
        files.pop("conf_dict", None)
    form = TrainingRunForm(
        data,
        files,
        experiment=experiment,
        initial={"training_type": wanted_type} if wanted_type in TrainingRun.TrainingType.values else None,
        lost_parts=lost_parts(request),
    )
    if posted:
        run = None
        if not add_limit_errors(request, form) and form.is_valid():
            run = storage.stored_or_refused(
                request, form, lambda: services.create_run(request.user, form.upload)
            )
        if run is not None:
            messages.success(
                request,
                _("Run %(number)s is queued: it starts when a worker is free.") % {"number": run.number},
            )
            target = reverse("training-run", args=[experiment.hash, run.number])
            if sent_by_upload_script(request):
                return JsonResponse({"number": run.number, "redirect": target}, status=201)
            return redirect(target)
        if sent_by_upload_script(request):
            return JsonResponse({"errors": form_errors(form)}, status=refused_upload_status(request))
    needed = [*NEEDED_BY_TYPE]
    if experiment.model_type != Experiment.ModelType.UNSUPERVISED:
        needed.append("y_train")
    for name in needed:
        form.fields[name].widget.attrs["aria-required"] = "true"
    context = {
        "experiment": experiment,
        "form": form,
        "automl_fields": automl_fields,
        "automl_python": settings.AUTOML_PYTHON,
        "automl_packages": _automl_packages(),
        "custom_fields": [form[name] for name in ("source", "training_reference")],
        "external_fields": [form[name] for name in (*EXTERNAL_TABLES, "model")],
        "max_file_bytes": settings.MAX_UPLOAD_FILE_BYTES,
        "max_total_bytes": settings.MAX_UPLOAD_TOTAL_BYTES,
        "max_text_bytes": settings.MAX_TEXT_FILE_BYTES,
        "metrics_text": form.data.get("metrics", "") if form.is_bound else "",
        "params_text": form.data.get("params", "") if form.is_bound else "",
    }
    return render(
        request,
        "training/run_new.html",
        context,
        status=refused_upload_status(request) if form.errors else 200,
    )


# --- a run ----------------------------------------------------------------------------


def _described(obj: Any) -> dict | None:
    """A pipeline (or step) description of the harness: {class, params, steps}."""
    if not isinstance(obj, dict):
        return None
    params = obj.get("params") if isinstance(obj.get("params"), dict) else {}
    given = obj.get("steps") if isinstance(obj.get("steps"), list) else []
    steps = [_described(step) for step in given if isinstance(step, dict)]
    return {
        "name": obj.get("name", ""),
        "class": str(obj.get("class", "")),
        "params": [(key, json_text(value)) for key, value in sorted(params.items())],
        "steps": [step for step in steps if step],
    }


def _target(target: Any) -> dict | None:
    """Target proportions (classification) or distribution (regression), per column."""
    if not isinstance(target, dict):
        return None

    def one(values: Any) -> list[tuple[str, str, float | None]]:
        """(label, text, bar width in %) rows; no bar for a distribution's statistics."""
        if not isinstance(values, dict):
            return []
        if isinstance(values.get("values"), dict):  # proportions
            rows = []
            for label, share in values["values"].items():
                number = isinstance(share, int | float) and not isinstance(share, bool)
                percent = round(share * 100, 2) if number else None
                rows.append((str(label), localized(f"{percent:.1f} %") if number else str(share), percent))
            return rows
        return [
            (str(key), number_text(value) if isinstance(value, int | float) else str(value), None)
            for key, value in values.items()
            if key != "kind"
        ]

    if isinstance(target.get("columns"), dict):
        columns = [(name, one(values)) for name, values in target["columns"].items()]
    else:
        columns = [("", one(target))]
    return {"kind": target.get("kind", ""), "columns": columns}


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def params_view(params: Any) -> dict | None:
    """A run's params.json as the page shows it: shape, missing values, the pipeline with
    its hyper-parameters, the target, what the user logged, and anything else as JSON."""
    if not isinstance(params, dict) or not params:
        return None
    known = {"shape", "columns", "missing", "pipeline", "target", "logged"}
    shape = params.get("shape") if isinstance(params.get("shape"), dict) else {}
    if not all(_is_count(shape.get(key)) for key in ("rows", "columns")):
        shape = None  # the page counts them in words: numbers only
    missing = params.get("missing") if isinstance(params.get("missing"), dict) else {}
    logged = params.get("logged") if isinstance(params.get("logged"), dict) else {}
    other = {key: value for key, value in params.items() if key not in known}
    return {
        "shape": shape,
        "columns": params.get("columns") if isinstance(params.get("columns"), list) else [],
        "missing": [
            (column, localized(f"{share * 100:.2f} %") if isinstance(share, int | float) else str(share))
            for column, share in sorted(missing.items(), key=lambda item: str(item[0]))
        ],
        "pipeline": _described(params.get("pipeline")),
        "target": _target(params.get("target")),
        "logged": [(key, json_text(value)) for key, value in logged.items()],
        "other": json.dumps(other, indent=2, ensure_ascii=False, default=str) if other else "",
    }


# --- an AutoML run's results ------------------------------------------------------------
# The search writes these in the sandbox: they are read as untrusted files (size cap, no
# links followed, every value's type checked) and a bad one is named on its section.


def _run_context(request: HttpRequest, run: TrainingRun, promote_form=None, promote_error="") -> dict:
    experiment = run.experiment
    succeeded = run.status == Status.SUCCEEDED
    if run.files_removed_at is not None:
        succeeded = False  # nothing left to promote: the page says why instead of the form
        promote_error = promote_error or services.files_removed_message(run, _("it can't be promoted"))
    if promote_form is None and succeeded:
        promote_form = PromoteForm(
            user=request.user, run=run, initial={"name": f"{experiment.name} {run.number}"}
        )
    is_automl = run.training_type == AUTOML
    metrics = sorted((run.metrics or {}).items())
    summary = run.summary if isinstance(run.summary, dict) else {}
    return {
        "experiment": experiment,
        "run": run,
        "automl": automl_context(run) if is_automl else None,
        "stage_columns": STAGE_COLUMNS,
        "in_progress": run.status in IN_PROGRESS,
        "duration_text": duration_text(run.duration.total_seconds()) if run.duration is not None else "—",
        "metrics": [(name, value, number_text(value)) for name, value in metrics],
        "params": params_view(run.params),
        "summary": summary,
        "shapes": [
            (name, " × ".join(str(n) for n in shape))
            for name, shape in (summary.get("shapes") or {}).items()
            if isinstance(shape, list)
        ],
        "files": [
            (label, name)
            for label, name in (
                (_("Training data"), run.train_file),
                (_("Script"), run.source_file),
                (_("Requirements"), run.requirements_file),
                *((role, name) for role, name in run.inputs.items()),
            )
            if name
        ],
        "log_tail": _log_tail(run.log),
        "promoted_models": list(run.promoted_models.order_by("created_at")),
        "promote_form": promote_form if succeeded else None,
        "promote_error": promote_error,
        "max_file_bytes": settings.MAX_UPLOAD_FILE_BYTES,
        "max_total_bytes": settings.MAX_UPLOAD_TOTAL_BYTES,
        "max_text_bytes": settings.MAX_TEXT_FILE_BYTES,
        "live_config": {
            "status": run.status,
            "statusUrl": reverse("api-training-run-status", args=[experiment.hash, run.number]),
            "logsUrl": reverse("api-training-run-logs", args=[experiment.hash, run.number]),
        },
    }


@login_required
@require_http_methods(["GET"])
def run_detail(request: HttpRequest, experiment_hash: str, number: int) -> HttpResponse:
    run = get_run_for_user(request.user, experiment_hash, number)
    return render(request, "training/run_detail.html", _run_context(request, run))


@login_required
@post_only_page(lambda experiment_hash, number: reverse("training-run", args=[experiment_hash, number]))
def run_delete_files(request: HttpRequest, experiment_hash: str, number: int) -> HttpResponse:
    """Delete a finished run's files to free the group's storage; the run stays."""
    run = get_run_for_user(request.user, experiment_hash, number)
    try:
        freed = services.remove_run_files(run, request.user)
    except services.RunFilesKept as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            _("The files of run %(number)s were deleted: %(size)s freed.")
            % {"number": run.number, "size": filesizeformat(freed)},
        )
    return redirect("training-run", experiment_hash, number)


@login_required
@post_only_page(lambda experiment_hash, number: reverse("training-run", args=[experiment_hash, number]))
def run_promote(request: HttpRequest, experiment_hash: str, number: int) -> HttpResponse:
    """Make a model of a Succeeded run (its model file, Python and environment reused)."""
    run = get_run_for_user(request.user, experiment_hash, number)
    try:
        services.check_promotable(run)
    except services.NotPromotable as exc:
        return _promote_refused(request, run, None, str(exc))
    form = PromoteForm(
        request.POST, request.FILES, user=request.user, run=run, lost_parts=lost_parts(request)
    )
    model = None
    if not add_limit_errors(request, form) and form.is_valid():
        try:
            model = storage.stored_or_refused(
                request,
                form,
                lambda: services.promote(
                    request.user, run, form.upload, version_of=form.cleaned_data.get("version_of")
                ),
            )
        except (services.NotPromotable, model_services.ActionRefused) as exc:  # or deleted meanwhile
            return _promote_refused(request, run, form, str(exc))
    if model is not None:
        if model.line_id is not None:
            text = _(
                "Run %(number)s of %(experiment)s is version %(version)s of %(name)s. It goes live once deployed."
            )
        else:
            text = _("%(name)s was created from run %(number)s of %(experiment)s. It is being deployed.")
        names = {"number": run.number, "experiment": run.experiment.name, "name": model.name}
        messages.success(request, text % {**names, "version": model.version})
        target = reverse("model-detail", args=[model.root.hash])
        if sent_by_upload_script(request):
            return JsonResponse({"hash": model.hash, "redirect": target}, status=201)
        return redirect(target)
    if sent_by_upload_script(request):
        return JsonResponse({"errors": form_errors(form)}, status=refused_upload_status(request))
    context = _run_context(request, run, promote_form=form)
    return render(request, "training/run_detail.html", context, status=refused_upload_status(request))


def _promote_refused(request: HttpRequest, run: TrainingRun, form, reason: str) -> HttpResponse:
    """409: the run cannot be promoted (any more), whatever the form said."""
    if sent_by_upload_script(request):
        return JsonResponse({"errors": {"__all__": [reason]}}, status=409)
    context = _run_context(request, run, promote_form=form, promote_error=reason)
    return render(request, "training/run_detail.html", context, status=409)
