"""Browser pages of monitoring: the Monitoring tab of a model (the API is monitors/api_urls.py).

portal/urls.py includes these before portal.model_urls, whose catch-all
`models/<hash>/<action>/` would otherwise take `models/<hash>/monitoring/`.
"""

from django.urls import path

from monitors import pages

tab = "models/<str:model_hash>/monitoring"

urlpatterns = [
    path(f"{tab}/", pages.monitoring, name="model-monitoring"),
    path(f"{tab}/register/", pages.register, name="model-monitoring-register"),
    path(f"{tab}/settings/", pages.change_settings, name="model-monitoring-settings"),
    path(f"{tab}/periods/", pages.run_period, name="model-monitoring-run"),
]
