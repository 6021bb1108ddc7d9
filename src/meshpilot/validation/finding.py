"""A finding of a rule, before it is placed in a file: the code, the field path and the
message. The caller turns it into a Diagnostic with file, line and column, so the rules
stay functions of an object's body alone."""

from __future__ import annotations

from dataclasses import dataclass

from meshpilot.validation.codes import Code, Severity

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Finding:
    code: Code
    path: Path
    message: str

    @property
    def is_error(self) -> bool:
        return self.code.severity is Severity.ERROR
