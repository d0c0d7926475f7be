"""Decode every ASAP/ENRP message of a capture into records, for `testbed decode`.

A message that does not decode becomes a record with the codec's specific error
instead of its fields; the next frame is decoded as usual.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nodes.wire import DecodeError, decode
from nodes.wire.describe import describe

from .pcap import CapturedMessage, messages_in


def _where(found: CapturedMessage) -> dict[str, Any]:
    return {
        "frame": found.frame,
        "protocol": found.protocol.label,
        "transport": found.transport,
        "src": f"{found.src}:{found.sport}",
        "dst": f"{found.dst}:{found.dport}",
        **({"ppid": found.ppid} if found.ppid is not None else {}),
    }


def decode_capture(path: str | Path) -> Iterator[dict[str, Any]]:
    """One record per ASAP/ENRP message: where it was, then its content or its error."""
    for found in messages_in(path):
        record = _where(found)
        try:
            message = decode(found.data, found.protocol)
        except DecodeError as exc:
            record["error"] = exc.to_dict()
            record["bytes"] = found.data.hex()
        else:
            record.update(describe(message))
        yield record


def render_text(record: dict[str, Any]) -> str:
    """A record as a header line plus an indented field tree."""
    head = f"#{record['frame']:<5} {record['protocol']:4} {record['src']} -> {record['dst']} ({record['transport']})"
    if "error" in record:
        err = record["error"]
        return f"{head}  UNDECODABLE {err['error']}: {err['field']} at byte {err['offset']}: {err['reason']}"
    flags = f"0x{record['flags']:02x}" + (f" [{', '.join(record['flag_names'])}]" if record["flag_names"] else "")
    lines = [f"{head}  {record['type_name']}  flags {flags}"]
    lines.extend(_tree(record["fields"], 1))
    if record.get("unrecognized"):
        lines.append(f"    unrecognized (to report): {', '.join(record['unrecognized'])}")
    return "\n".join(lines)


def _tree(value: Any, depth: int) -> Iterator[str]:
    indent = "    " * depth
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item and not _is_flat_list(item):
                yield f"{indent}{key}:"
                yield from _tree(item, depth + 1)
            else:
                yield f"{indent}{key}: {_scalar(item)}"
    else:
        for index, item in enumerate(value):
            if isinstance(item, (dict, list)):
                yield f"{indent}[{index}]"
                yield from _tree(item, depth + 1)
            else:
                yield f"{indent}- {_scalar(item)}"


def _is_flat_list(item: Any) -> bool:
    return isinstance(item, list) and all(not isinstance(i, (dict, list)) for i in item)


def _scalar(item: Any) -> str:
    if isinstance(item, list):
        return ", ".join(str(i) for i in item) if item else "(none)"
    if isinstance(item, dict):
        return "{}"
    return "-" if item is None else str(item)
