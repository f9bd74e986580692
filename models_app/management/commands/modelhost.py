"""Run the model host of this node: warm runners for Sync models (see models_app.serving.host)."""

from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from models_app.serving import paths
from models_app.serving.host import ControlServer, HostAlreadyRunning, ModelHost


class Command(BaseCommand):
    help = "Start the model host: owns the runner processes that serve Sync models on this node."

    def handle(self, *args, **options):
        try:
            host = ModelHost()
        except HostAlreadyRunning as e:
            raise CommandError(str(e)) from e
        server = ControlServer(paths.host_socket(), host)
        for name, loop in (("supervisor", host.supervise_forever), ("scaler", host.scale_forever)):
            threading.Thread(target=loop, name=name, daemon=True).start()

        def stop(signum, frame):
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        self.stdout.write(f"Model host listening on {paths.host_socket()}")
        self.stdout.flush()
        try:
            server.serve_forever(poll_interval=0.5)
        finally:
            host.shutdown()
            server.server_close()
            paths.host_socket().unlink(missing_ok=True)
            self.stdout.write("Model host stopped; runners stopped.")
