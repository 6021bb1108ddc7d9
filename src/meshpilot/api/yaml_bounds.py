"""A YAML composer that refuses input built to exhaust the control plane.

PyYAML composes recursively, so a document nested a few thousand levels deep ends in a
RecursionError; and an alias is a reference, so 413 bytes of nested aliases (a
"billion laughs") stand for millions of nodes that every later pass (source
positions, validation, the stored JSON) would walk one by one. Both are refused here,
while the text is composed and before anything walks the result:

* mappings and lists nested more than :data:`MAX_DEPTH` levels (the deepest real
  manifests, a pod template's ``env[].valueFrom.secretKeyRef``, are about ten levels
  deep; 100 leaves room and keeps every recursive pass far below Python's recursion
  limit of 1000);
* more than :data:`MAX_NODES` nodes in one apply, each alias counted as the nodes it
  stands for (250,000 nodes: some 7 s of parsing and 350 MB on a 2-core machine, room
  for 3,000 to 10,000 typical objects; a billion laughs is refused at its first aliases).

Double-quoted scalars may spell a character as a UTF-16 surrogate pair
(``"\\ud83d\\ude00"``, as JSON does); PyYAML keeps the two halves, so they are joined
here, and half a pair, which is no character at all, is refused with its position.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

MAX_DEPTH = 100
MAX_NODES = 250_000

_SURROGATE = re.compile("[\ud800-\udfff]")


class NestingTooDeep(yaml.MarkedYAMLError):
    """A collection nested deeper than MAX_DEPTH."""


class TooManyNodes(yaml.MarkedYAMLError):
    """The apply's node budget is spent (aliases counted expanded)."""


class LoneSurrogate(yaml.MarkedYAMLError):
    """A double-quoted scalar holds half of a UTF-16 surrogate pair."""


class NodeBudget:
    """Nodes one apply may still compose; shared by all its files, so splitting a
    billion laughs across many files does not multiply the budget."""

    def __init__(self, limit: int = MAX_NODES) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, count: int, mark: yaml.Mark, alias: str | None) -> None:
        self.used += count
        if self.used <= self.limit:
            return
        why = (f"alias *{alias} stands for {count:,} nodes, and with it " if alias else "")
        raise TooManyNodes(
            None, None,
            f"{why}this apply holds more than {self.limit:,} YAML/JSON nodes (an alias "
            "counts as every node it stands for): split it into several applies, or write "
            "the aliased values out", mark)


def _whole_characters(node: yaml.ScalarNode) -> None:
    """Join the surrogate pairs of a double-quoted scalar; refuse a lone half."""
    if _SURROGATE.search(node.value) is None:
        return
    try:
        node.value = node.value.encode("utf-16-le", "surrogatepass").decode("utf-16-le")
    except UnicodeDecodeError:
        raise LoneSurrogate(
            None, None,
            f"the string starting here holds \\u{ord(_lone_half(node.value)):04x}, half "
            "of a UTF-16 surrogate pair without its other half, which is no character: "
            "write the character itself, or both halves (\\ud83d\\ude00 is one emoji)",
            node.start_mark) from None


def _lone_half(value: str) -> str:
    """The first surrogate in ``value`` that is not part of a high-low pair."""
    i = 0
    while i < len(value):
        if "\ud800" <= value[i] <= "\udbff" and "\udc00" <= value[i + 1 : i + 2] <= "\udfff":
            i += 2
            continue
        if "\ud800" <= value[i] <= "\udfff":
            return value[i]
        i += 1
    return "\ufffd"  # not reached: called only when decoding found a lone half


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts depth and nodes against a :class:`NodeBudget`."""

    def __init__(self, stream: str, budget: NodeBudget) -> None:
        super().__init__(stream)
        self.budget = budget
        self._depth = 0
        # expanded size of each anchored node, by id: what an alias to it costs
        self._sizes: dict[int, int] = {}

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)
            self.budget.charge(self._sizes.get(id(node), 1), event.start_mark, event.anchor)
            return node
        event = self.peek_event()
        collection = isinstance(event, yaml.CollectionStartEvent)
        if collection and self._depth >= MAX_DEPTH:
            raise NestingTooDeep(
                None, None,
                f"nested more than {MAX_DEPTH} levels deep; no manifest needs that many "
                "(a pod template's deepest fields are about 10 levels down)",
                event.start_mark)
        before = self.budget.used
        self.budget.charge(1, event.start_mark, None)
        self._depth += collection
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= collection
        if isinstance(node, yaml.ScalarNode) and node.style == '"':
            _whole_characters(node)
        if getattr(event, "anchor", None):
            self._sizes[id(node)] = self.budget.used - before
        return node
