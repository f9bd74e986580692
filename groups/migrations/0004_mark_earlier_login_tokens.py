"""Tokens issued by logins before 0003 came in were stored with from_login False, so the
idle rule (NEOMARIL_LOGIN_TOKEN_IDLE_DAYS) never revoked them: the very credentials it
was made for. They are recognised by the names a login gives: "login" (the API's default)
and "neomaril_codex" (the SDK's)."""

from django.db import migrations

LOGIN_TOKEN_NAMES = ("login", "neomaril_codex")


def mark_login_tokens(apps, schema_editor):
    ApiToken = apps.get_model("portal", "ApiToken")
    ApiToken.objects.filter(name__in=LOGIN_TOKEN_NAMES, from_login=False).update(from_login=True)


class Migration(migrations.Migration):
    dependencies = [
        ("portal", "0003_apitoken_from_login"),
    ]

    operations = [
        migrations.RunPython(mark_login_tokens, migrations.RunPython.noop),
    ]
