"""The one exception type users see: the command line prints its message as one line."""


class StormError(Exception):
    """A user-facing error: bad input, a missing file, a mismatch. The message says what to do."""
