"""A diagnostic: one finding about the user's input, located precisely enough to act on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

from meshpilot.validation.codes import Code, Severity


def format_path(path: Iterable[str | int]) -> str:
    """``("spec", "http", 0, "route")`` → ``spec.http[0].route``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    column: int | None = None
    path: str = ""
    object: str = ""  # "VirtualService default/reviews"

    @classmethod
    def of(cls, code: Code, message: str, **where: Any) -> Diagnostic:
        return cls(code=code.code, severity=code.severity, message=message, **where)

    @property
    def is_error(self) -> bool:
        return self.severity == Severity.ERROR

    def location(self) -> str:
        if not self.file:
            return ""
        if self.line is None:
            return self.file
        if self.column is None:
            return f"{self.file}:{self.line}"
        return f"{self.file}:{self.line}:{self.column}"

    def format(self) -> str:
        """``file:line:col: error MP0010 [VirtualService default/x] spec.http[0]: message``."""
        head = " ".join(p for p in (self.location() + ":" if self.file else "",
                                    f"{self.severity.value} {self.code}") if p)
        subject = f" [{self.object}]" if self.object else ""
        where = f" {self.path}:" if self.path else ""
        return f"{head}{subject}{where} {self.message}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Diagnostic:
        fields = {k: data.get(k) for k in cls.__dataclass_fields__}
        fields["severity"] = Severity(fields["severity"])
        fields["path"] = fields.get("path") or ""
        fields["object"] = fields.get("object") or ""
        return cls(**fields)


def has_errors(diagnostics: Iterable[Diagnostic]) -> bool:
    return any(d.is_error for d in diagnostics)
