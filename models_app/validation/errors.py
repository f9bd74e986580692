"""The one exception every upload check raises: which field is wrong, and how to fix it."""

from __future__ import annotations


class UploadError(Exception):
    """An uploaded file or field is unusable; `message` tells the user how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
