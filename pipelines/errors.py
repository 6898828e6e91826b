"""The few exception types a user sees. Each subclasses ValueError so callers can catch narrowly or broadly."""

from __future__ import annotations


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


class MissingResourceError(DistillError):
    """A model, vector file or package the stage needs is not installed; the message says how to install it."""
