"""The API's JSON parser: DRF's, with deep nesting answered as bad input.

Python's json module parses arrays and objects recursively, so a body nested about a
thousand levels deep raises RecursionError, which DRF does not catch: the client got a
500 for what is only a malformed request, on every JSON endpoint (the unauthenticated
login included).
"""

from __future__ import annotations

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DRFJSONParser

TOO_DEEP = (
    "The JSON body is nested too deeply to be read (arrays or objects inside each other "
    "about a thousand levels deep). Send a flatter document."
)


class JSONParser(DRFJSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
