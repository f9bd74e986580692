#!/usr/bin/env python
"""Django's command-line utility for administrative tasks."""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    from django.core.management import execute_from_command_line

    if sys.argv[1:2] == ["qcluster"]:
        # django-q2's processes write their metrics to the worker's folder, emptied first
        # (before Django loads the apps, which import prometheus-client: portal.metrics_dir).
        from portal import metrics_dir

        metrics_dir.prepare("worker")

    execute_from_command_line(sys.argv)
