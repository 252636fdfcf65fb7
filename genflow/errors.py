"""Errors genflow raises on purpose: each names what is wrong and where.

The CLI and the stage scripts turn these into one line on stderr and a
non-zero exit code instead of a traceback.
"""


class GenflowError(Exception):
    """Base class for every error that is the user's input, not a bug."""


class ConfigError(GenflowError):
    """params.yaml (or an override) is invalid; the message names the key path."""


class DataError(GenflowError):
    """A data file or prepared dataset is invalid; the message names the file."""


class DivergenceError(GenflowError):
    """Training produced a non-finite loss or weight."""

    def __init__(self, step: int, what: str):
        super().__init__(f"diverged at step {step}: {what}")
        self.step, self.what = step, what

    def __reduce__(self):  # rebuilt from (step, what) when Ray copies or pickles it
        return type(self), (self.step, self.what)


EXCERPT_CHARS = 200


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)``, cut to about ``limit`` characters ending in '…'. Error messages quote a
    user's value through this: a YAML alias bomb loads as a few shared lists that expand to
    billions of items, and a plain repr of one would take minutes and fill the terminal."""
    import reprlib

    short = reprlib.Repr()  # bounded work as well as bounded output: it never walks the whole value
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict, short.maxset = 3, 8, 8, 8, 8
    short.maxstring = short.maxlong = short.maxother = limit
    if isinstance(value, str) and len(value) > limit:  # the start of a long string, not its two ends
        return repr(value[:limit - 3])[:limit - 1] + "…"
    try:
        text = short.repr(value)
    except ValueError:  # an int of more than 4300 digits has no str
        text = f"<{type(value).__name__} too long to print>"
    return text if len(text) <= limit else text[:limit - 1] + "…"
