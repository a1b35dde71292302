"""The project's error types: one place, so callers catch exactly what they mean."""

from __future__ import annotations


class SpecError(ValueError):
    """A spec file (or spec text) that cannot be turned into a valid network.

    Parameters
    ----------
    message : str
        What is wrong and, where possible, what would fix it.
    file : str, optional
        The spec file's path (``None`` for spec text).
    line : int, optional
        1-based line of the offending key.
    key : str, optional
        The offending key (``nodes.h.activation``, ``edges[2]``).
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 key: str | None = None):
        self.message, self.file, self.line, self.key = message, file, line, key
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file or "<spec>"
        if self.line is not None:
            where += f":{self.line}"
        key = f" {self.key}:" if self.key else ""
        return f"{where}:{key} {self.message}"


class DataError(ValueError):
    """Arrays handed to a model (inputs, parameters, states, targets) that do not fit it."""


class DivergenceError(DataError):
    """Training diverged: a loss, gradient norm or parameter became NaN or infinite.

    A :class:`DataError` (so callers that catch bad-data errors catch it too, and the CLI
    reports it as one line, exit 2), but its own type: the training loop tells divergence
    from bad data by the type, never by the message.

    Parameters
    ----------
    reason : str
        What became non-finite (``"the loss is nan"``).
    epoch, step : int, optional
        1-based epoch and mini-batch where training stopped (None outside the loop).
    advice : str, optional
        What to try, appended to the message (the CLI words it with its own flags).
    """

    def __init__(self, reason: str, epoch: int | None = None, step: int | None = None,
                 advice: str = ""):
        self.reason, self.epoch, self.step, self.advice = reason, epoch, step, advice
        super().__init__(f"{reason}. {advice}" if advice else reason)
