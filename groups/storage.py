"""What each group keeps on the data disk, and its quota.

A group's files are its models' folders (uploads, smoke results), its executions'
(inputs, results, whatever the model wrote), its training runs' (datasets, artifacts)
and its monitors'. Each app says where they are (`register_folders`, from its models.py),
so this module imports no app. Environments are not counted: they are shared between
groups (content-addressed), and a build's size is bounded by its own limits.

`Group.stored_bytes` is kept close without walking the disk on every upload:

- what a request stores is added in the transaction that stores it (`take`), by one
  conditional UPDATE that refuses it when the group would pass its quota: two uploads
  racing cannot both squeeze under it, and a failed store gives its bytes back with its
  rollback;
- what a job writes is added when it ends (`add`: an execution's result, a run's
  artifacts, a smoke test's output); a job of a group past its quota does not start
  (`used_up_message`), and one that starts writes at most the `room` left;
- what a deletion or the retention removes is taken off as it goes (`remove_folders`);
- every `MEASURE_EVERY` the housekeeping walks the group's folders (`measure_stale`) and
  puts the real figure in place, keeping whatever was taken while it walked.

The quota is the group's own `storage_quota_mb` when an admin set one, else
NEOMARIL_GROUP_STORAGE_MB; 0 is no limit. A request over it is refused (507
`group_storage_full`) before anything of it is kept.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

from django import forms
from django.conf import settings
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy
from rest_framework import exceptions, status

from groups.models import Group
from groups.uploads import folder_bytes

T = TypeVar("T")

# How old a group's measurement may grow before the housekeeping walks its folders again.
MEASURE_EVERY = timedelta(minutes=10)
MB = 1024 * 1024

_FOLDERS: list[Callable[[int], Iterable[Path]]] = []


def register_folders(folders_of: Callable[[int], Iterable[Path]]) -> None:
    """Count the folders `folders_of(group_id)` names (missing ones count 0) as the group's."""
    _FOLDERS.append(folders_of)


def measure(group_id: int) -> int:
    """The bytes the group's folders take now, walked."""
    return sum(folder_bytes(folder) for folders_of in _FOLDERS for folder in folders_of(group_id))


def quota_bytes(group: Group) -> int | None:
    """The group's quota in bytes; None: no limit."""
    megabytes = settings.GROUP_STORAGE_MB if group.storage_quota_mb is None else group.storage_quota_mb
    return megabytes * MB if megabytes else None


def size_text(size: int) -> str:
    """A size as the group's page shows it, in the active language: "4.0 KB", "3,3 MB"."""
    return filesizeformat(size).replace("\xa0", " ")


def _figures(group: Group, used: int, quota: int) -> dict:
    return {"group": group.name, "used": size_text(used), "quota": size_text(quota)}


FREE_SOME = gettext_lazy(
    "Delete the models, versions or training runs' files the group no longer needs (their "
    "space is free again at once; executions' files go by retention), or ask an admin to "
    "raise the group's quota."
)


class GroupStorageFull(exceptions.APIException):
    """A request would take its group past its storage quota: nothing of it was kept."""

    status_code = status.HTTP_507_INSUFFICIENT_STORAGE
    default_code = "group_storage_full"

    def __init__(self, group: Group, used: int, wanted: int, quota: int) -> None:
        super().__init__(
            gettext(
                "The group '%(group)s' keeps %(used)s of its %(quota)s storage quota, and this needs "
                "%(wanted)s more: nothing was stored."
            )
            % {**_figures(group, used, quota), "wanted": size_text(wanted)}
            + " "
            + str(FREE_SOME)
        )


def used_up_message(group: Group, what: str) -> str | None:
    """Why a job of the group must not start (its quota is used up: what it writes would
    add to it), `what` saying what was not done; None while there is room."""
    left = room(group)
    if left is None or left > 0:
        return None
    quota = quota_bytes(group) or 0
    return (
        gettext("The group '%(group)s' keeps %(used)s of its %(quota)s storage quota: %(what)s.")
        % {**_figures(group, quota - left, quota), "what": what}
        + " "
        + str(FREE_SOME)
    )


# What a multipart body carries besides its file (boundaries, part headers), generously:
# an input that would fit is never refused for them; the exact check comes at `take`.
MULTIPART_ALLOWANCE = 64 * 1024


def refuse_before_the_body(group: Group, request: HttpRequest) -> None:
    """GroupStorageFull from the request's Content-Length, before its body is read: a
    group at its quota made the node write each refused upload whole to disk first."""
    left = room(group)
    if left is None:
        return
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return  # the parser answers a malformed length
    if length - MULTIPART_ALLOWANCE > left:
        quota = quota_bytes(group) or 0
        raise GroupStorageFull(group, quota - left, length - MULTIPART_ALLOWANCE, quota)


def room(group: Group) -> int | None:
    """Bytes the group may still keep (0 or less: none); None: no limit."""
    quota = quota_bytes(group)
    if quota is None:
        return None
    used = Group.objects.filter(pk=group.pk).values_list("stored_bytes", flat=True).first() or 0
    return quota - used


def take(group: Group, size: int) -> None:
    """Count `size` more bytes as the group's, or raise GroupStorageFull when they would
    take it past its quota. Call it inside the transaction that stores them: its rollback
    gives them back. On PostgreSQL the group's row stays locked until that commit."""
    quota = quota_bytes(group)
    rows = Group.objects.filter(pk=group.pk)
    if quota is not None:
        rows = rows.filter(stored_bytes__lte=quota - size)
    if rows.update(stored_bytes=F("stored_bytes") + size):
        return
    used = Group.objects.filter(pk=group.pk).values_list("stored_bytes", flat=True).first() or 0
    raise GroupStorageFull(group, used, size, quota or 0)


def add(group_id: int, size: int) -> None:
    """Count bytes a job wrote (it may pass the quota: the job ran; the next upload is refused)."""
    if size > 0:
        Group.objects.filter(pk=group_id).update(stored_bytes=F("stored_bytes") + size)


def remove_folders(group_id: int, folders: Iterable[Path]) -> int:
    """Remove these folders of the group, and count what they took as the group's no more
    (at once: no walk of the group's other folders). Returns the bytes freed."""
    freed = 0
    for folder in folders:
        freed += folder_bytes(folder)
        shutil.rmtree(folder, ignore_errors=True)
    if freed:
        Group.objects.filter(pk=group_id).update(stored_bytes=Greatest(F("stored_bytes") - freed, 0))
    return freed


def measure_stale() -> int:
    """Walk the folders of every group measured longer than MEASURE_EVERY ago (or never),
    and keep the figure. Returns how many groups were measured."""
    due = timezone.now() - MEASURE_EVERY
    stale = Group.objects.filter(Q(storage_measured_at__isnull=True) | Q(storage_measured_at__lt=due))
    measured = 0
    for group_id, counted in stale.values_list("pk", "stored_bytes"):
        walked = measure(group_id)
        # What was taken while the folders were walked stays counted (it may be counted
        # twice until the next walk when its files were already seen: never too little).
        Group.objects.filter(pk=group_id).update(
            stored_bytes=Greatest(F("stored_bytes") - counted + walked, 0),
            storage_measured_at=timezone.now(),
        )
        measured += 1
    return measured


def stored_or_refused(request: HttpRequest, form: forms.BaseForm, store: Callable[[], T]) -> T | None:
    """What `store()` returns; None when the group's quota refused it: its message is then
    on the upload page's form, which answers 507 (groups.uploads.refused_upload_status),
    as the API does."""
    try:
        return store()
    except GroupStorageFull as full:
        form.add_error(None, str(full.detail))
        request.upload_out_of_space = str(full.detail)
        return None
