"""A JSON field that keeps objects' keys in the order they were written, on every database.

Django's JSONField is `jsonb` on PostgreSQL, which stores an object with its keys sorted
(shortest first); SQLite keeps the text. A model's schema example is the user's own
input, and its key order is the column order of the DataFrame their `score` builds from
it: scikit-learn refuses columns in another order than at fit time, so on PostgreSQL the
smoke test failed models that deployed on SQLite, and the docs and generated code showed
the example reordered. There this field is PostgreSQL's `json` type (the text as
written, checked to be JSON); on other databases it is Django's JSONField unchanged.

Only for documents read and written whole: `json` has none of jsonb's operators.
"""

from __future__ import annotations

import json
from functools import partial

from django.db import models
from psycopg.types.json import Json


class OrderedJSONField(models.JSONField):
    def db_type(self, connection):
        if connection.vendor == "postgresql":
            return "json"
        return super().db_type(connection)

    def get_db_prep_value(self, value, connection, prepared=False):
        if connection.vendor != "postgresql":
            return super().get_db_prep_value(value, connection, prepared)
        if not prepared:
            value = self.get_prep_value(value)
        return Json(value, dumps=partial(json.dumps, cls=self.encoder))

    def from_db_value(self, value, expression, connection):
        if connection.vendor == "postgresql":
            return value  # psycopg has parsed the `json` text, keys in their order
        return super().from_db_value(value, expression, connection)
