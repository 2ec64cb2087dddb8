"""Errors meant for the user: the CLI prints them as one line (no traceback) and exits 2."""


class UserError(Exception):
    """A mistake the user can fix (bad config value, missing data, wrong checkpoint).

    The message says what is wrong and what to do.
    """
