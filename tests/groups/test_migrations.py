"""Data migrations, run on rows as an older release left them."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("portal", "0003_apitoken_from_login")]
AFTER = [("portal", "0004_mark_earlier_login_tokens")]


@pytest.mark.django_db(transaction=True)
def test_login_tokens_issued_before_from_login_existed_are_marked(cast):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    ApiToken = old.get_model("portal", "ApiToken")
    for name in ("login", "neomaril_codex", "ci", ""):
        ApiToken.objects.create(user_id=cast.owner.pk, name=name, digest=f"digest-{name or 'blank'}")
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())
    from groups.models import ApiToken as Current

    marked = dict(Current.objects.filter(user=cast.owner).values_list("name", "from_login"))
    assert marked == {"login": True, "neomaril_codex": True, "ci": False, "": False}
