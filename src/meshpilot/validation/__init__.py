"""Validation: every diagnostic a user can get, with stable codes (see docs/diagnostics.md)."""

from meshpilot.validation.codes import ALL_CODES, Code, Severity
from meshpilot.validation.diagnostics import Diagnostic, format_path, has_errors
from meshpilot.validation.document import ParsedObject, check_document
from meshpilot.validation.plan import Generated, Plan, Source, keys_in, load_sources, plan_apply
from meshpilot.validation.state import StateObject, check_state
from meshpilot.validation.state_index import StateIndex, findings_about, newly_broken

__all__ = [
    "ALL_CODES",
    "Code",
    "Diagnostic",
    "Generated",
    "ParsedObject",
    "Plan",
    "Severity",
    "Source",
    "StateIndex",
    "StateObject",
    "check_document",
    "check_state",
    "findings_about",
    "format_path",
    "has_errors",
    "keys_in",
    "load_sources",
    "newly_broken",
    "plan_apply",
]
