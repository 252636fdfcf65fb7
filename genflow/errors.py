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
