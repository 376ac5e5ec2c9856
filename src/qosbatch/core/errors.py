"""Errors a user can fix: the CLI prints their message on one line and exits 2."""


class UserError(Exception):
    """Bad input (a wrong argument, a missing or corrupt file, an unknown model).

    Raised anywhere below the CLI; the CLI turns it into one line on stderr and
    exit status 2, never a traceback, because the fix is the user's, not ours.
    """
