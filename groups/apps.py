"""The accounts app: groups, memberships, group and API tokens, and the shared base.

Its label stays "portal" (it began inside the project package): the tables
(`portal_group`, ...), the migration history, content types, permissions and the admin's
URLs (/admin/portal/...) keep their names, so moving the code changed no database.
"""

from django.apps import AppConfig


class GroupsConfig(AppConfig):
    name = "groups"
    label = "portal"
    verbose_name = "Accounts and groups"

    def ready(self) -> None:
        from groups import schema  # noqa: F401  (registers the API token's OpenAPI scheme)
