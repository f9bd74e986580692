"""The pages' scripts' translations (djangojs catalogs, served as JavaScript).

Its URL carries the language (base.html adds ?l=<code>), so a browser may cache each
language's catalog; it changes only when the portal is restarted with new catalogs.
"""

from __future__ import annotations

from django.utils import timezone
from django.views.decorators.http import last_modified
from django.views.i18n import JavaScriptCatalog

STARTED = timezone.now()

javascript_catalog = last_modified(lambda request, **kwargs: STARTED)(JavaScriptCatalog.as_view())
