"""Errors raised at the boundary (files, flags, checkpoints), written for people."""


class SimLMIRError(Exception):
    """Base class: a problem with the user's input that we can explain in one line."""


class InputFormatError(SimLMIRError, ValueError):
    """A file does not have the expected format; the message names the file and line."""

    def __init__(self, path, line: int | None, problem: str):
        where = f"{path}:{line}" if line is not None else f"{path}"
        super().__init__(f"{where}: {problem}")
        self.path = str(path)
        self.line = line
        self.problem = problem


class CheckpointError(SimLMIRError):
    """A checkpoint directory is missing or of the wrong kind."""


class DatasetNotAvailableError(SimLMIRError):
    """An ir_datasets collection is not on disk and cannot be downloaded here."""
