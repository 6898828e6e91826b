"""The few exception types a user sees. Each subclasses ValueError so callers can catch narrowly or broadly."""

from __future__ import annotations

import errno
from pathlib import Path


class DistillError(ValueError):
    """Base class: any error the `distill` command reports as a clean one-line message (exit code 2)."""


class DataError(DistillError):
    """Bad input data. Carries the file, line (1-based) and column name or number where it went wrong."""

    def __init__(self, problem: str, path: str | None = None, line: int | None = None, column: str | int | None = None):
        self.problem, self.path, self.line, self.column = problem, path, line, column
        where = ""
        if path is not None:
            where = str(path)
            if line is not None:
                where += f":{line}"
            if column is not None:
                where += f" (column {column})"
            where += ": "
        super().__init__(where + problem)


class ConfigError(DistillError):
    """A config that does not validate. Lists every problem at once, each prefixed by its key path."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        if len(self.problems) == 1:
            super().__init__(f"invalid config: {self.problems[0]}")
        else:
            super().__init__("invalid config, found these problems:\n" + "\n".join(f"  - {p}" for p in self.problems))


class TeacherMismatchError(DistillError):
    """The teacher cannot serve this task: wrong label count or names, or a tokenizer that splits the mask token."""


class DiskFullError(DistillError):
    """No space left on the device (or quota) while writing a stage's work: it names the path; the finished work
    is kept, the previous output is untouched, and the same command resumes once space is freed (exit code 3)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        super().__init__(f"{path}: no space left on the device (or over quota) while writing it; the stage stopped "
                         "there, its finished work is kept beside its output and the previous output is untouched: "
                         "free some space, then run the same command again to resume")


def disk_full(error: BaseException) -> bool:
    """An OSError that means the disk (or the quota) is full, as the OS or pyarrow reports it."""
    return isinstance(error, OSError) and (error.errno in (errno.ENOSPC, errno.EDQUOT)
                                           or "No space left on device" in str(error))


class MissingResourceError(DistillError):
    """A model, vector file or package the stage needs is not installed; the message says how to install it."""
