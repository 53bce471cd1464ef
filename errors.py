"""The one exception type for bad input: the CLI prints its message as one line."""


class CompbenchError(Exception):
    """A user-facing error: bad recipe, unknown preset, missing data, corrupt cache."""
