"""The one exception for a mistake in what the user asked for (a test set, a grid, a file, a folder)."""


class UserError(ValueError):
    """The request cannot be run as given; the message names the problem and the fix. ``eval.run`` and
    ``eval.sweep`` print it as one ``error:`` line (so does the web page); anything else is a bug and keeps
    its traceback (under ``--verbose``)."""
