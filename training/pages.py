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
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from groups.access import groups_for
from training import automl, services
from training.access import experiments_for, get_experiment_for_user, get_run_for_user
from training.automl.config import STAGES
from training.automl.fields import AutoMLFieldsForm
from training.forms import EXTERNAL_TABLES, ExperimentForm, PromoteForm, TrainingRunForm
from training.models import Experiment, TrainingRun

Status = TrainingRun.Status
AUTOML = TrainingRun.TrainingType.AUTOML
IN_PROGRESS = (Status.REQUESTED, Status.RUNNING)
LOG_TAIL_LINES = 400
MAX_SHOWN_RUNS = 1000
# Fields a run needs once its type is chosen: marked so on the form; the form checks them.
NEEDED_BY_TYPE = ("train_data", "source", "X_train", "model_output", "model")


# --- shared helpers -------------------------------------------------------------------


def _wants_json(request: HttpRequest) -> bool:
    """The run form's script posts with XMLHttpRequest (for the progress bar)."""
    return request.headers.get("X-Requested-With") == "XMLHttpRequest"


def _form_errors(form: forms.BaseForm) -> dict[str, list[str]]:
    return {field: [str(message) for message in errors] for field, errors in form.errors.items()}


def _add_limit_errors(request: HttpRequest, form: forms.BaseForm) -> bool:
    """Put the upload handler's size refusals on the form; True when there were any."""
    limits = getattr(request, "upload_limit_errors", {})
    for field, message in limits.items():
        form.add_error(None if field == "__all__" or field not in form.fields else field, message)
    return bool(limits)


def number_text(value: float | int | None) -> str:
    """A metric as people read it: 0.9731, 12,345.6, 1.2e-07; None is a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-4):
        return f"{value:.3e}"
    if abs(value) >= 1000:
        return f"{value:,.1f}"
    return f"{value:.4f}".rstrip("0").rstrip(".") or "0"


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _log_tail(log: str) -> str:
    lines = log.splitlines()
    if len(lines) <= LOG_TAIL_LINES:
        return log
    return f"… {len(lines) - LOG_TAIL_LINES} earlier lines (full log: the zip, or API /logs) …\n" + "\n".join(
        lines[-LOG_TAIL_LINES:]
    )


# --- experiments ----------------------------------------------------------------------


class ExperimentFilterForm(forms.Form):
    """The list's filters (ids prefixed so they don't clash with the new-experiment form's)."""

    q = forms.CharField(required=False, label="Search", max_length=100)
    group = forms.ChoiceField(required=False)
    model_type = forms.ChoiceField(
        required=False, label="Model type", choices=[("", "Any type"), *Experiment.ModelType.choices]
    )

    def __init__(self, *args, groups: list[str], **kwargs):
        super().__init__(*args, auto_id="filter_%s", **kwargs)
        self.fields["group"].choices = [("", "All my groups"), *((name, name) for name in groups)]
        self.fields["q"].widget.attrs["placeholder"] = "Name or hash"


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
            messages.success(request, f"Experiment {experiment.name} created in {experiment.group.name}.")
        else:
            messages.info(
                request,
                f"{experiment.group.name} already has a {experiment.model_type} experiment named "
                f"{experiment.name}: here it is. Tick “Force” to create another one.",
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
        "statuses": {status: sum(run.status == status for run in runs) for status in Status.values},
    }
    return render(request, "training/experiment_detail.html", context)


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
    data, files = (request.POST, request.FILES) if posted else (None, None)
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
    )
    if posted:
        if not _add_limit_errors(request, form) and form.is_valid():
            run = services.create_run(request.user, form.upload)
            messages.success(request, f"Run {run.number} is queued: it starts when a worker is free.")
            target = reverse("training-run", args=[experiment.hash, run.number])
            if _wants_json(request):
                return JsonResponse({"number": run.number, "redirect": target}, status=201)
            return redirect(target)
        if _wants_json(request):
            return JsonResponse({"errors": _form_errors(form)}, status=400)
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
    return render(request, "training/run_new.html", context, status=400 if form.errors else 200)


# --- a run ----------------------------------------------------------------------------


def _json_text(value: Any) -> str:
    """A hyper-parameter as a short readable value: strings bare, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


def _described(obj: Any) -> dict | None:
    """A pipeline (or step) description of the harness: {class, params, steps}."""
    if not isinstance(obj, dict):
        return None
    params = obj.get("params") if isinstance(obj.get("params"), dict) else {}
    steps = [_described(step) for step in obj.get("steps") or [] if isinstance(step, dict)]
    return {
        "name": obj.get("name", ""),
        "class": str(obj.get("class", "")),
        "params": [(key, _json_text(value)) for key, value in sorted(params.items())],
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
                rows.append((str(label), f"{percent:.1f} %" if number else str(share), percent))
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


def params_view(params: Any) -> dict | None:
    """A run's params.json as the page shows it: shape, missing values, the pipeline with
    its hyper-parameters, the target, what the user logged, and anything else as JSON."""
    if not isinstance(params, dict) or not params:
        return None
    known = {"shape", "columns", "missing", "pipeline", "target", "logged"}
    shape = params.get("shape") if isinstance(params.get("shape"), dict) else None
    missing = params.get("missing") if isinstance(params.get("missing"), dict) else {}
    logged = params.get("logged") if isinstance(params.get("logged"), dict) else {}
    other = {key: value for key, value in params.items() if key not in known}
    return {
        "shape": shape,
        "columns": params.get("columns") if isinstance(params.get("columns"), list) else [],
        "missing": [
            (column, f"{share * 100:.2f} %" if isinstance(share, int | float) else str(share))
            for column, share in sorted(missing.items(), key=lambda item: str(item[0]))
        ],
        "pipeline": _described(params.get("pipeline")),
        "target": _target(params.get("target")),
        "logged": [(key, _json_text(value)) for key, value in logged.items()],
        "other": json.dumps(other, indent=2, ensure_ascii=False, default=str) if other else "",
    }


# --- an AutoML run's results ------------------------------------------------------------
# The search writes these in the sandbox: they are read as untrusted files (size cap, no
# links followed, every value's type checked) and a bad one is named on its section.

MAX_ARTIFACT_BYTES = 2 * 1024 * 1024
MAX_CURVE_POINTS = 200
MAX_TRIALS_SHOWN = 500
TOP_FEATURES = 20
MAX_TEXT = 300
STAGE_COLUMNS = tuple(stage for stage in STAGES if stage != "models")


class Unusable(ValueError):
    """An artifact that can't be shown; the message says why, for its section."""


def read_json_file(path: Path, *, within: Path, limit: int = MAX_ARTIFACT_BYTES) -> Any:
    """The JSON in ``path``, a file inside ``within``, read without following a link and
    at most ``limit`` bytes.

    NaN and infinities become None (the page's JSON must stay valid for JSON.parse).
    """
    name = path.name
    if not path.parent.resolve().is_relative_to(within.resolve()):
        raise Unusable(f"{name} is not in the run's folder.")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise Unusable(f"{name} was not produced.") from None
    except OSError:
        raise Unusable(f"{name} is not a regular file.") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unusable(f"{name} is not a regular file.")
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise Unusable(f"{name} is larger than the {limit // (1024 * 1024)} MB this page reads.")
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=lambda _name: None)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Unusable(f"{name} is not valid JSON.") from None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _short(value: Any, limit: int = MAX_TEXT) -> str:
    text = _json_text(value) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def leaderboard_view(data: Any) -> dict:
    """leaderboard.json as table rows: completed trials best first (every metric the search
    offers is better higher), then the others with their error."""
    if not isinstance(data, dict) or not isinstance(data.get("trials"), list):
        raise Unusable("leaderboard.json has no list of trials.")
    metric = _short(data.get("metric") or "value", 40)
    best = data.get("best_trial")
    best = best if isinstance(best, int) and not isinstance(best, bool) else None
    trials = [trial for trial in data["trials"] if isinstance(trial, dict)]
    rows = []
    for trial in trials[:MAX_TRIALS_SHOWN]:
        number = trial.get("number")
        params = trial.get("params") if isinstance(trial.get("params"), dict) else {}
        value = _finite(trial.get("value"))
        state = _short(trial.get("state") or "", 20)
        duration = _finite(trial.get("duration_seconds"))
        rows.append(
            {
                "number": number if isinstance(number, int) and not isinstance(number, bool) else None,
                "value": value,
                "value_text": number_text(value),
                "state": state,
                "complete": state == "COMPLETE" and value is not None,
                "model": _short(params.get("model"), 60),
                "stages": [_short(params.get(stage), 60) for stage in STAGE_COLUMNS],
                "hyperparams": [
                    (key.split("__", 1)[-1], _short(param))
                    for key, param in sorted(params.items())
                    if key != "model" and key not in STAGE_COLUMNS
                ],
                "duration_text": duration_text(duration) if duration is not None and duration >= 0 else "—",
                "error": _short(trial.get("error"), 2000) if trial.get("error") else "",
            }
        )
    done = sorted((row for row in rows if row["complete"]), key=lambda row: -row["value"])
    for rank, row in enumerate(done, start=1):
        row["rank"] = rank
        row["best"] = row["number"] == best if best is not None else rank == 1
    return {
        "metric": metric,
        "seed": _short(data.get("seed"), 20),
        "rows": done + [row for row in rows if not row["complete"]],
        "complete": len(done),
        "failed": sum(row["state"] == "FAIL" for row in rows),
        "total": len(trials),
        "shown_all": len(trials) <= MAX_TRIALS_SHOWN,
    }


def importances_view(data: Any) -> dict:
    """importances.json as bars: the top features, each with its share and a bar as wide
    as its importance relative to the largest."""
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, list):
        raise Unusable("importances.json has no list of features.")
    if not features:
        raise Unusable("the chosen model reports no feature importances.")
    valid = [
        (_short(feature.get("name"), 120), _finite(feature.get("importance")))
        for feature in features
        if isinstance(feature, dict) and isinstance(feature.get("name"), str | int | float)
    ]
    valid = sorted(((name, value) for name, value in valid if value is not None), key=lambda f: -f[1])
    if not valid:
        raise Unusable("importances.json names no feature with a numeric importance.")
    top = valid[:TOP_FEATURES]
    largest = max(abs(value) for _name, value in top) or 1.0
    return {
        "features": [
            {
                "name": name,
                "value": value,
                "text": f"{value * 100:.1f} %",
                "width": round(max(value, 0.0) / largest * 100, 1),
            }
            for name, value in top
        ],
        "total": len(valid),
    }


def _curve(data: Any, keys: tuple[str, ...], name: str) -> list[list[float]]:
    """Aligned lists of numbers (points with a missing or infinite value dropped)."""
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in keys):
        raise Unusable(f"{name} has no {', '.join(keys)} lists.")
    columns = [data[key] for key in keys]
    if len({len(column) for column in columns}) != 1:
        raise Unusable(f"{name}'s {', '.join(keys)} lists differ in length.")
    points = [[_finite(value) for value in point] for point in zip(*columns, strict=True)]
    points = [point for point in points if None not in point]
    if len(points) < 2:
        raise Unusable(f"{name} has fewer than two points.")
    for key in keys:
        if key in ("fpr", "tpr") and not all(0 <= p[keys.index(key)] <= 1 for p in points):
            raise Unusable(f"{name}'s {key} values must lie between 0 and 1.")
    return points


def _thin(points: list, limit: int = MAX_CURVE_POINTS) -> list:
    """At most ``limit`` points, evenly spaced, the first and the last kept."""
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def roc_view(data: Any) -> dict:
    """roc.json for the chart: the holdout's ROC curve and its AUC."""
    points = _thin(_curve(data, ("fpr", "tpr"), "roc.json"))
    auc = _finite(data.get("auc"))
    return {
        "fpr": [p[0] for p in points],
        "tpr": [p[1] for p in points],
        "auc": auc,
        "aucText": number_text(auc),
    }


def ks_view(data: Any) -> dict:
    """ks.json for the chart: TPR and FPR by threshold (ascending), and where the gap
    between them (the KS) is widest: the file's threshold, or the widest gap found."""
    points = sorted(_curve(data, ("thresholds", "tpr", "fpr"), "ks.json"), key=lambda p: p[0])
    threshold = _finite(data.get("threshold"))
    if threshold is not None:
        at = min(points, key=lambda p: abs(p[0] - threshold))
    else:
        at = max(points, key=lambda p: p[1] - p[2])
    ks = _finite(data.get("ks"))
    ks = ks if ks is not None else at[1] - at[2]
    points = _thin(points)
    return {
        "thresholds": [p[0] for p in points],
        "tpr": [p[1] for p in points],
        "fpr": [p[2] for p in points],
        "ks": ks,
        "ksText": number_text(ks),
        "gap": {"threshold": at[0], "tpr": at[1], "fpr": at[2], "thresholdText": number_text(at[0])},
    }


def _percent(value: Any) -> str:
    number = _finite(value)
    return f"{number * 100:g} %" if number is not None else _short(value)


def automl_conf_view(conf: Any) -> dict:
    """The normalised configuration the search ran with, as label → text rows."""
    if not isinstance(conf, dict):
        raise Unusable(f"{automl.CONF_NAME} is not a JSON object.")
    train = conf.get("train_data") if isinstance(conf.get("train_data"), dict) else {}
    split = _short(conf.get("split_type"), 20)
    if split == "oot":
        cut = (
            f"from {_short(conf.get('split_date'), 20)} on"
            if conf.get("split_date")
            else f"the latest {_percent(conf.get('oot_split_size'))}"
        )
        split_text = f"out of time by {_short(conf.get('date_col'), 120)}: {cut} held out"
    else:
        split_text = f"{split}: {_percent(conf.get('holdout_size'))} held out"
        if split == "stratified":
            split_text += f", by {_short(conf.get('stratify_col'), 120)}"
    cat_cols = conf.get("cat_cols")
    file_type = _short(train.get("file_type"), 10)
    rows = [
        ("Target", _short(conf.get("target"), 120)),
        (
            "Categorical columns",
            ", ".join(_short(c, 120) for c in cat_cols) if isinstance(cat_cols, list) else "detected",
        ),
        ("Iterations", _short(conf.get("iterations"), 20)),
        ("Metric", _short(conf.get("metric"), 20)),
        ("Split", split_text),
        ("Validation", _percent(conf.get("val_size"))),
        ("Seed", _short(conf.get("seed"), 20)),
        (
            "Data",
            f"{_short(train.get('file_name'), 128)} ({file_type}"
            + (f", separator {train.get('sep')!r}" if file_type == "csv" else "")
            + ")",
        ),
    ]
    stages = conf.get("stages") if isinstance(conf.get("stages"), dict) else {}
    return {
        "rows": rows,
        "stages": [
            (stage, [_short(option, 40) for option in stages[stage]])
            for stage in STAGES
            if isinstance(stages.get(stage), list)
        ],
        "json": json.dumps(conf, indent=2, ensure_ascii=False),
    }


def _section(view, path: Path, run: TrainingRun) -> dict:
    """{"data": view(file's JSON)} or {"problem": why it can't be shown}."""
    try:
        return {"data": view(read_json_file(path, within=run.folder)), "problem": ""}
    except Unusable as exc:
        return {"data": None, "problem": str(exc)}


def automl_context(run: TrainingRun) -> dict:
    """What an AutoML run's page shows beyond a Custom run's: the configuration it ran
    with and, once Succeeded, the search's leaderboard, curves and importances."""
    extras = run.artifacts_folder / "extras"
    context = {"conf": _section(automl_conf_view, run.work_folder / automl.CONF_NAME, run), "results": None}
    if run.status == Status.SUCCEEDED:
        roc = _section(roc_view, extras / "roc.json", run)
        ks = _section(ks_view, extras / "ks.json", run)
        context["results"] = {
            "leaderboard": _section(leaderboard_view, extras / "leaderboard.json", run),
            "importances": _section(importances_view, extras / "importances.json", run),
            "roc": roc,
            "ks": ks,
            "charts": {"roc": roc["data"], "ks": ks["data"]},
            "has_schema": (run.artifacts_folder / automl.SCHEMA_ARTIFACT).is_file(),
        }
    return context


def _run_context(request: HttpRequest, run: TrainingRun, promote_form=None, promote_error="") -> dict:
    experiment = run.experiment
    succeeded = run.status == Status.SUCCEEDED
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
                ("Training data", run.train_file),
                ("Script", run.source_file),
                ("Requirements", run.requirements_file),
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
@require_POST
def run_promote(request: HttpRequest, experiment_hash: str, number: int) -> HttpResponse:
    """Make a model of a Succeeded run (its model file, Python and environment reused)."""
    run = get_run_for_user(request.user, experiment_hash, number)
    try:
        services.check_promotable(run)
    except services.NotPromotable as exc:
        context = _run_context(request, run, promote_error=str(exc))
        return render(request, "training/run_detail.html", context, status=409)
    form = PromoteForm(request.POST, request.FILES, user=request.user, run=run)
    if not _add_limit_errors(request, form) and form.is_valid():
        try:
            model = services.promote(request.user, run, form.upload)
        except services.NotPromotable as exc:
            context = _run_context(request, run, promote_form=form, promote_error=str(exc))
            return render(request, "training/run_detail.html", context, status=409)
        messages.success(
            request,
            f"{model.name} was created from run {run.number} of {run.experiment.name}. It is being deployed.",
        )
        return redirect("model-detail", model_hash=model.hash)
    context = _run_context(request, run, promote_form=form)
    return render(request, "training/run_detail.html", context, status=400)
