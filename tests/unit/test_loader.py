"""The loader: multi-document YAML/JSON with the source position of every field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshpilot.api.loader import LoadError, Position, expand_paths, load_text

VS_YAML = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v2
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
"""


def test_multi_document_yaml_with_positions() -> None:
    docs = load_text(VS_YAML, "vs.yaml")
    assert [d.data["kind"] for d in docs] == ["VirtualService", "DestinationRule"]
    assert [d.index for d in docs] == [0, 1]
    assert all(d.file == "vs.yaml" for d in docs)
    vs, dr = docs
    assert vs.line == 1
    assert dr.line == 19
    # the nested field spec.http[0].route[1].weight is on line 17, column 7
    assert vs.positions[("spec", "http", 0, "route", 1, "weight")] == Position(17, 7)
    assert vs.position_of(("spec", "http", 0, "route", 0, "weight")).line == 13
    assert vs.position_of(("spec", "http", 0, "route", 1, "destination", "subset")) == Position(
        16, 9
    )
    # list items are located where the item starts
    assert vs.positions[("spec", "hosts", 0)] == Position(7, 5)
    assert dr.positions[("spec", "host")] == Position(24, 3)
    assert dr.positions[("kind",)].line == 20


def test_position_of_falls_back_to_nearest_parent() -> None:
    (vs,) = load_text(VS_YAML.split("---")[0], "vs.yaml")
    missing = ("spec", "http", 0, "route", 1, "destination", "port", "number")
    assert vs.position_of(missing) == vs.positions[("spec", "http", 0, "route", 1, "destination")]
    assert vs.position_of(("nope",)) == vs.positions[()]
    assert vs.position_of(()) == Position(1, 1)


def test_empty_documents_are_skipped() -> None:
    text = "---\n---\n# just a comment\n---\nkind: A\n---\n\n---\nkind: B\n...\n"
    docs = load_text(text, "f.yaml")
    assert [d.data for d in docs] == [{"kind": "A"}, {"kind": "B"}]
    assert docs[0].line == 5
    assert docs[1].line == 9
    assert docs[0].index < docs[1].index
    assert load_text("", "f.yaml") == []
    assert load_text("   \n# nothing\n", "f.yaml") == []
    assert load_text("---\n", "f.yaml") == []


def test_json_file_with_positions() -> None:
    text = json.dumps(
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"}, "spec": {"x": [1, 2]}},
        indent=2,
    )
    (doc,) = load_text(text, "svc.json")
    assert doc.data["metadata"] == {"name": "a"}
    assert doc.data["spec"]["x"] == [1, 2]
    assert doc.positions[("kind",)].line == 3
    assert doc.positions[("metadata", "name")].line == 5


def test_json_top_level_list_is_expanded() -> None:
    text = '[\n  {"kind": "A", "n": 1},\n  {"kind": "B",\n   "n": 2}\n]\n'
    docs = load_text(text, "list.json")
    assert [d.data for d in docs] == [{"kind": "A", "n": 1}, {"kind": "B", "n": 2}]
    assert [d.line for d in docs] == [2, 3]
    # positions are relative to the item, not to the list
    assert docs[1].positions[("n",)].line == 4
    assert () in docs[1].positions


def test_kind_list_is_expanded() -> None:
    text = """\
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a}
- apiVersion: v1
  kind: Service
  metadata:
    name: b
"""
    docs = load_text(text, "list.yaml")
    assert [d.data["metadata"]["name"] for d in docs] == ["a", "b"]
    assert [d.line for d in docs] == [4, 7]
    assert docs[1].positions[("metadata", "name")].line == 10
    assert docs[1].position_of(("kind",)).line == 8

    as_json = json.dumps({"kind": "List", "items": [{"kind": "X"}, {"kind": "Y"}]})
    assert [d.data for d in load_text(as_json, "l.json")] == [{"kind": "X"}, {"kind": "Y"}]


def test_yaml_syntax_error_has_line_and_column() -> None:
    text = "kind: A\nmetadata:\n  name: [a, b\nspec: {}\n"
    with pytest.raises(LoadError) as info:
        load_text(text, "bad.yaml")
    err = info.value
    assert err.file == "bad.yaml"
    assert err.message.startswith("invalid YAML")
    assert (err.line, err.column) == (4, 5)
    assert str(err).startswith("bad.yaml:4:5: ")


def test_yaml_bad_indentation_error_line() -> None:
    text = "kind: A\nspec:\n  a: 1\n   b: 2\n"
    with pytest.raises(LoadError) as info:
        load_text(text, "bad.yaml")
    assert info.value.line == 4
    assert info.value.column == 5


def test_yaml_tab_error_line() -> None:
    with pytest.raises(LoadError) as info:
        load_text("kind: A\nspec:\n\tx: 1\n", "tab.yaml")
    assert info.value.line == 3
    assert info.value.column == 1


def test_invalid_json_gives_line_and_column() -> None:
    text = '{\n  "kind": "A",\n  "spec": {"x": 1,}\n}\n'
    with pytest.raises(LoadError) as info:
        load_text(text, "bad.json")
    err = info.value
    assert err.message.startswith("invalid JSON")
    assert (err.line, err.column) == (3, 19)


def test_json_looking_text_is_checked_as_json_even_without_suffix() -> None:
    with pytest.raises(LoadError) as info:
        load_text('{"kind": "A",\n "x": }', "stdin")
    assert "JSON" in info.value.message
    assert info.value.line == 2


def test_duplicate_keys_refused_with_both_lines() -> None:
    text = "kind: A\nmetadata:\n  name: a\n  labels: {}\n  name: b\n"
    with pytest.raises(LoadError) as info:
        load_text(text, "dup.yaml")
    err = info.value
    assert err.line == 5
    assert err.column == 3
    assert "'name'" in err.message
    assert "line 3" in err.message


def test_duplicate_keys_refused_in_json() -> None:
    with pytest.raises(LoadError) as info:
        load_text('{"kind": "A",\n "kind": "B"}', "dup.json")
    assert info.value.line == 2
    assert "line 1" in info.value.message


def test_duplicate_keys_in_second_document() -> None:
    with pytest.raises(LoadError) as info:
        load_text("kind: A\n---\nkind: B\nx: 1\nx: 2\n", "dup.yaml")
    assert info.value.line == 5
    assert "line 4" in info.value.message


def test_timestamps_kept_as_strings() -> None:
    text = "a: 2024-01-02\nb: 2024-01-02T03:04:05Z\nc: 1\nd: true\ne: 1.5\n"
    (doc,) = load_text(text, "t.yaml")
    assert doc.data == {
        "a": "2024-01-02",
        "b": "2024-01-02T03:04:05Z",
        "c": 1,
        "d": True,
        "e": 1.5,
    }


def test_non_mapping_documents_are_returned() -> None:
    docs = load_text("- a\n- b\n", "seq.yaml")
    # a YAML top-level sequence is split like a JSON list
    assert [d.data for d in docs] == ["a", "b"]
    (scalar,) = load_text("just text\n", "s.yaml")
    assert scalar.data == "just text"


def test_expand_paths_directory(tmp_path: Path) -> None:
    (tmp_path / "b.yaml").write_text("kind: B\n")
    (tmp_path / "a.yml").write_text("kind: A\n")
    (tmp_path / "notes.txt").write_text("not config\n")
    (tmp_path / "README.md").write_text("# readme\n")
    sub = tmp_path / "sub" / "deeper"
    sub.mkdir(parents=True)
    (sub / "c.json").write_text("{}")
    (tmp_path / "sub" / "d.yaml").write_text("kind: D\n")
    (tmp_path / "sub" / "e.yaml.bak").write_text("kind: E\n")
    single = tmp_path / "single.txt"
    single.write_text("kind: S\n")

    out = expand_paths([str(tmp_path), "-", str(single)])
    files = [p for p in out if p is not None]
    inside = files[:-1]
    assert inside == sorted(inside)
    assert [p.relative_to(tmp_path).as_posix() for p in inside] == [
        "a.yml",
        "b.yaml",
        "sub/d.yaml",
        "sub/deeper/c.json",
    ]
    # "-" is stdin (None); a file named directly is kept whatever its suffix
    assert out[len(inside)] is None
    assert out[-1] == single


def test_expand_paths_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        expand_paths([str(tmp_path / "nope.yaml")])


def test_control_character_is_a_load_error() -> None:
    # PyYAML refuses non-printable characters before parsing; that must be a LoadError too
    with pytest.raises(LoadError) as info:
        load_text("kind: A\nname: x\x1fy\n", "ctl.yaml")
    err = info.value
    assert (err.file, err.line, err.column) == ("ctl.yaml", 2, 8)
    assert "x001f" in err.message
