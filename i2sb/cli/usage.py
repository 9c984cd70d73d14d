"""What every command line tool reports the same way: a usage mistake and the exit statuses."""

from __future__ import annotations

EXIT_USAGE = 2  # a command line or config the tool cannot take: one line, nothing written
EXIT_INTERRUPTED = 130  # as a Unix tool ended by SIGINT (128 + 2)
EXIT_BROKEN_PIPE = 141  # as a Unix tool ended by SIGPIPE (128 + 13)


class UsageError(ValueError):
    """A mistake on the command line or in the config: one line, exit status :data:`EXIT_USAGE`, nothing written.
    ``shown``: what a Hydra tool's ``--cfg`` prints before the line (the composed config, missing values marked)."""

    def __init__(self, message: str, shown: str | None = None):
        super().__init__(message)
        self.shown = shown
