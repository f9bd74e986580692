"""On PostgreSQL, a commit that changes the tables the run call's lookup reads notifies
the web processes, which cache the lookup's answers until then
(models_app.serving.front.CommitListener). SQLite needs nothing: the web process sees
its commits in the WAL index."""

from django.db import migrations

CHANNEL = "neomaril_calls"  # front.CommitListener.CHANNEL
MODELS = (("models_app", "MLModel"), ("portal", "GroupToken"))  # the tables CALL_SQL reads

FUNCTION = f"""
    CREATE OR REPLACE FUNCTION neomaril_calls_changed() RETURNS trigger AS $$
    BEGIN
        PERFORM pg_notify('{CHANNEL}', '');
        RETURN NULL;
    END;
    $$ LANGUAGE plpgsql
"""


def _tables(apps, schema_editor) -> list[str]:
    quote = schema_editor.connection.ops.quote_name
    return [quote(apps.get_model(app, model)._meta.db_table) for app, model in MODELS]


def create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(FUNCTION)
    for table in _tables(apps, schema_editor):
        # Per statement, and PostgreSQL folds a transaction's identical notifications into
        # one, delivered at its commit: a bulk update costs one notification.
        schema_editor.execute(
            f"CREATE TRIGGER neomaril_calls_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION neomaril_calls_changed()"
        )


def drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table in _tables(apps, schema_editor):
        schema_editor.execute(f"DROP TRIGGER IF EXISTS neomaril_calls_changed ON {table}")
    schema_editor.execute("DROP FUNCTION IF EXISTS neomaril_calls_changed()")


class Migration(migrations.Migration):
    dependencies = [
        ("models_app", "0010_modelbuild_queued_at"),
        ("portal", "0002_profile"),
    ]

    operations = [
        migrations.RunPython(create, drop),
    ]
