"""Every JSON object in a state-machine definition (states, Retry rules, parameters), for
tests that check a property wherever it occurs: inside Maps, Parallel branches and all."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def dict_nodes(node: Any) -> Iterator[dict[str, Any]]:
    """`node` itself when it is an object, then every object below it, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from dict_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from dict_nodes(value)
