"""Logging a loop's failures once per outage, not once per pass.

A background loop (the model host's supervisor and scaler, the prediction recorder) that
meets a database outage fails on every pass: a traceback each time wrote 21,000 lines
in a 20 s PostgreSQL outage. `RepeatedFailure` logs the first failure with its
traceback, a one-line reminder every REMINDER seconds while it lasts, and one line when
the loop works again.
"""

from __future__ import annotations

import logging
import time

REMINDER = 60.0  # seconds between reminders while the failure lasts


class RepeatedFailure:
    """The log of one loop's failures; `what` names the loop's work in the lines."""

    def __init__(self, logger: logging.Logger, what: str, reminder: float = REMINDER) -> None:
        self.logger = logger
        self.what = what
        self.reminder = reminder
        self.failing_since: float | None = None
        self._reminded_at = 0.0

    def failed(self, exc: BaseException, retry: str) -> None:
        """Call from the `except` block of a failed pass; `retry` says when it is tried again."""
        now = time.monotonic()
        if self.failing_since is None:
            self.failing_since = self._reminded_at = now
            self.logger.error("%s failed; %s", self.what, retry, exc_info=exc)
        elif now - self._reminded_at >= self.reminder:
            self._reminded_at = now
            self.logger.warning(
                "%s still fails after %.0f s: %s: %s",
                self.what,
                now - self.failing_since,
                type(exc).__name__,
                exc,
            )

    def worked(self) -> None:
        """Call after a pass that worked: says so once if it had been failing."""
        if self.failing_since is not None:
            self.logger.warning(
                "%s works again after %.0f s", self.what, time.monotonic() - self.failing_since
            )
            self.failing_since = None
