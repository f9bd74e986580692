"""What the model pages offer to do to a model or to one of its versions, and when.

The pages show a button only when its action is allowed now; the services
(`models_app.services`) stay the judges and refuse anything else with a message. Both
the model page (its versions table) and a version's page take a version's actions from
here, so their questions and consequences are written once.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext as _

from models_app import services
from models_app.models import MLModel

Status = MLModel.Status


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    question: str
    consequence: str
    # Mirrors the states models_app.services accepts; the service stays the judge.
    allowed_from: tuple[str, ...]
    danger: bool = False


def version_actions(version: MLModel, live: bool) -> list[tuple[Action, bool]]:
    """A version's actions, each with whether it is offered now (`live`: the model's run
    URL serves this version)."""
    number = {"number": version.version}
    return [
        (
            Action(
                "live",
                _("Make live"),
                _("Make version %(number)s live?") % number,
                _(
                    "The model's run URL serves version %(number)s from its next call. The version "
                    "live now stays deployed: you can make it live again at any time."
                )
                % number,
                (Status.DEPLOYED,),
            ),
            not live and version.status == Status.DEPLOYED,
        ),
        (
            Action(
                "restart",
                _("Restart"),
                _("Rebuild and redeploy version %(number)s?") % number,
                _(
                    "A new build of this version starts (its environment is reused when nothing "
                    "changed). Until it is Deployed again this version answers 409, and so does the "
                    "model's run URL if this version is live."
                ),
                services.ALLOWED_FROM["restart"],
            ),
            version.status in services.ALLOWED_FROM["restart"],
        ),
        (
            Action(
                "disable",
                _("Disable"),
                _("Disable version %(number)s?") % number,
                _(
                    "Its calls are refused (409) and its warm processes stop; if it is live, the model's "
                    "run URL refuses calls too. Files, secrets and settings are kept: restart it to "
                    "serve again."
                ),
                services.ALLOWED_FROM["disable"],
            ),
            version.status in services.ALLOWED_FROM["disable"],
        ),
        (
            Action(
                "delete",
                _("Delete"),
                _("Delete version %(number)s for good?") % number,
                _(
                    "Its files, secrets and environment link are removed and its own URL stops "
                    "answering. The model and its other versions are kept. This cannot be undone."
                ),
                services.ALLOWED_FROM["delete"],
                danger=True,
            ),
            # Version 1 holds the model (delete the model instead); the live one serves it.
            not live and version.line_id is not None and version.status != Status.DELETED,
        ),
    ]


# The versions table offers these; a version's page offers them all.
TABLE_ACTIONS = ("live", "delete")


def version_rows(model: MLModel) -> list[MLModel]:
    """The model's versions, newest first, each with `is_live` and `table_actions` (the
    table's offered actions)."""
    live_pk = model.serving.pk
    rows = list(model.all_versions().select_related("created_by").order_by("-version"))
    for row in rows:
        row.is_live = row.pk == live_pk
        row.table_actions = [
            action
            for action, offered in version_actions(row, row.is_live)
            if offered and action.name in TABLE_ACTIONS
        ]
    return rows
