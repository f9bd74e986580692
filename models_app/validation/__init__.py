"""Validation of the files an analyst uploads to create a model, one module per concern.

Everything here is a pure function over text (over bytes, for `encoding`): user code is
parsed, never imported or executed. Each problem raises `UploadError` naming the form/API
field it belongs to and a message that says what is wrong and how to fix it, translated
with Django's gettext into the active language (the page's; the API's is English), so the
upload form (models_app/forms.py) can show it, and the API return it, as is.

- `source`: the scoring script and its entrypoint;
- `schema`: the JSON example input;
- `requirements`: requirements.txt, and the fingerprint of an environment;
- `filenames`: safe bare names, no two alike;
- `dotenv`: the `.env` file of secrets;
- `encoding`: the bytes of an uploaded text file, decoded as pip, json or Python would.
"""

from __future__ import annotations

from .dotenv import parse_dotenv
from .encoding import TextKind, decode_upload
from .errors import UploadError
from .filenames import check_unique_names, sanitize_filename
from .requirements import parse_requirements
from .schema import parse_schema
from .source import check_entrypoint_name, check_source

__all__ = [
    "TextKind",
    "UploadError",
    "check_entrypoint_name",
    "check_source",
    "check_unique_names",
    "decode_upload",
    "parse_dotenv",
    "parse_requirements",
    "parse_schema",
    "sanitize_filename",
]
