"""How the CLI prints diagnostics: the text as the API sent it, whatever brackets it has."""

from __future__ import annotations

import pytest

from meshpilot.cli.common import print_diagnostics
from meshpilot.validation import Diagnostic
from meshpilot.validation.codes import UNKNOWN_FIELD


def test_brackets_in_paths_and_messages_are_printed_as_written(
    capsys: pytest.CaptureFixture[str],
) -> None:
    d = Diagnostic.of(UNKNOWN_FIELD, "key 'request.headers[x-user]' or [bold]", file="a.yaml",
                      line=3, column=5, path="spec.rules[0].when[app]",
                      object="AuthorizationPolicy shop/orders")
    print_diagnostics([d])
    printed = capsys.readouterr().err
    assert printed.strip() == (
        "error a.yaml:3:5: MP0010 [AuthorizationPolicy shop/orders] spec.rules[0].when[app]: "
        "key 'request.headers[x-user]' or [bold]")
