"""Whether this web worker is draining: told to stop, still serving, out of the balancer.

Set by portal.workers.DrainingServer, read by /healthz (portal.health). A module of its
own, without Django: gunicorn's master imports the worker class before Django is set up.
"""

import threading

DRAINING = threading.Event()
