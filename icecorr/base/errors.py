"""Errors for bad input: one clear message that names the file and the field."""
from __future__ import annotations


class InputError(ValueError):
    """An input file or array that cannot be used as it is."""

    def __init__(self, file: str | None, field: str | None, problem: str):
        self.file, self.field, self.problem = file, field, problem
        where = []
        if file:
            where.append(f"file {file}")
        if field:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where) or 'input'}: {problem}")


class RunError(RuntimeError):
    """A run that cannot go on and must stop with one clear line (e.g. a training whose loss diverged)."""
