"""Reading the actions a sans-I/O core returned (`nodes.sansio`): shared by the core tests."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from nodes.sansio import Action, CancelTimer, Connect, Send, StartTimer
from nodes.wire import Message, decode


def sent(actions: Sequence[Action], assoc: int | None = None) -> list[Message]:
    """The ASAP and ENRP messages sent (on `assoc`, if given), after a trip over the wire."""
    return [
        decode(a.message.encode(), a.message.PROTOCOL)
        for a in actions
        if isinstance(a, Send) and (assoc is None or a.assoc == assoc)
    ]


def started(actions: Sequence[Action]) -> dict[Hashable, float]:
    return {a.key: a.delay for a in actions if isinstance(a, StartTimer)}


def cancelled(actions: Sequence[Action]) -> set[Hashable]:
    return {a.key for a in actions if isinstance(a, CancelTimer)}


def connects(actions: Sequence[Action]) -> list[Connect]:
    return [a for a in actions if isinstance(a, Connect)]
