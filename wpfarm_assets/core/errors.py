"""The one base of every error meant for an operator.

A `WpfarmError` says what went wrong in words an operator can act on (which site, which file,
which entry, which command and its stderr); the CLI prints it as one line and exits 2, an asset
turns it into the step's failure message. Any other exception is a bug and keeps its traceback.
"""


class WpfarmError(Exception):
    """What an operator should read: one line, naming the thing and the cause."""
