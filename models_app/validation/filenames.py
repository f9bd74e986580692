"""Uploaded file names: bare, visible, printable names that stay inside the model's folder."""

from __future__ import annotations

import re
import unicodedata

from django.utils.translation import gettext as _

from groups.forms import BIDI_CONTROLS

from .errors import UploadError

_WINDOWS_PATH_RE = re.compile(r"^[A-Za-z]:[\\/]")


def is_windows_path(text: str) -> bool:
    """`C:\\...` or `C:/...`: a path on the uploader's machine."""
    return bool(_WINDOWS_PATH_RE.match(text))


MAX_FILENAME_LENGTH = 128
# What one name may take on Linux filesystems (ext4, XFS, Btrfs, tmpfs: NAME_MAX), in bytes
# whatever the characters: "€" is 3 bytes in UTF-8 and "😀" 4, so 128 characters can be 512.
MAX_FILENAME_BYTES = 255


def sanitize_filename(name: str, *, field: str) -> str:
    """Return the client-sent file name if it is a safe bare name, else raise UploadError.

    The name is NFC-normalised and stripped of surrounding whitespace. It must not be a
    path, be hidden (start with a dot; `.env` is allowed for the "env" field), contain
    control characters, or exceed MAX_FILENAME_LENGTH characters or MAX_FILENAME_BYTES
    bytes in UTF-8 (a longer name could not be saved on the server's disk).
    """
    clean = unicodedata.normalize("NFC", name or "").strip()
    if not clean:
        raise UploadError(field, _("The file has no name; upload it with a file name such as app.py."))
    if "\x00" in clean:
        raise UploadError(field, _("The file name contains a NUL byte; rename the file."))
    if "/" in clean or "\\" in clean or is_windows_path(clean):
        raise UploadError(
            field,
            _(
                "The file name %(name)s is a path; upload the file with a plain name such as app.py "
                "(no / or \\)."
            )
            % {"name": repr(clean)},
        )
    if set(clean) == {"."}:
        raise UploadError(field, _("%(name)s is not a file name; rename the file.") % {"name": repr(clean)})
    bad = next(
        (c for c in clean if unicodedata.category(c) == "Cc" or c in BIDI_CONTROLS),
        None,
    )
    if bad is not None:
        raise UploadError(
            field,
            # Translators: %(code_point)s is the character's hexadecimal code, e.g. 202E.
            _("The file name contains the control character U+%(code_point)s; rename the file.")
            % {"code_point": f"{ord(bad):04X}"},
        )
    if len(clean) > MAX_FILENAME_LENGTH:
        raise UploadError(
            field,
            _("The file name is %(length)s characters long; shorten it to at most %(limit)s.")
            % {"length": len(clean), "limit": MAX_FILENAME_LENGTH},
        )
    size = len(clean.encode("utf-8", "surrogatepass"))
    if size > MAX_FILENAME_BYTES:
        raise UploadError(
            field,
            _(
                "The file name is %(size)s bytes long in UTF-8; shorten it to at most %(limit)s bytes "
                "(accented letters and symbols take 2 to 4 bytes each)."
            )
            % {"size": size, "limit": MAX_FILENAME_BYTES},
        )
    if clean.startswith(".") and not (field == "env" and clean == ".env"):
        raise UploadError(
            field,
            _("The file name %(name)s starts with a dot; rename it without the dot.") % {"name": repr(clean)},
        )
    return clean


def check_unique_names(named: dict[str, list[str]]) -> None:
    """Reject two uploads that would be saved under the same name in the model folder.

    `named` maps each field to the (sanitised) names uploaded through it; names are
    compared case-insensitively because the model folder may live on a case-insensitive
    share and because `Model.pkl` next to `model.pkl` is a mistake anyway.
    """
    seen: dict[str, tuple[str, str]] = {}
    for field, names in named.items():
        for name in names:
            key = unicodedata.normalize("NFC", name).casefold()
            if key in seen:
                other_field, other_name = seen[key]
                if other_field != field:
                    # Translators: %(field)s is the name of a form field, e.g. source or files.
                    where = _("the %(field)s field") % {"field": other_field}
                else:
                    where = _("the same field")
                raise UploadError(
                    field,
                    _(
                        # Translators: %(field)s is the name of the form field %(name)s was uploaded
                        # through; %(where)s is "the files field" or "the same field".
                        "%(name)s (%(field)s) and %(other_name)s (%(where)s) would be saved under the "
                        "same name in the model folder; rename one of them."
                    )
                    % {"name": repr(name), "field": field, "other_name": repr(other_name), "where": where},
                )
            seen[key] = (field, name)
