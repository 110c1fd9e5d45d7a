"""The one exception type for user errors: bad data, bad options, missing files.

The CLI turns a HonedError into one line on stderr and exit code 2; anything else is a bug.
"""


class HonedError(Exception):
    """A problem the user can fix. The message names the problem and the fix."""
