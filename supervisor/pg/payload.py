"""Decoding cubeloop's msgpack payloads, never raising: a bad row is a reason, not an error."""

from __future__ import annotations

from typing import Any

#: The `role` column's values, and the role our rules call each.
ROLE_NAMES = {"user": "user", "assistant": "assistant", "tool": "tool_result"}


def decode_payload(
    payload: bytes | None, role: str | None
) -> tuple[dict[str, Any] | None, str | None]:
    """A stored message as a dict, or (None, why it is corrupt). Never raises."""
    import msgpack

    expected = ROLE_NAMES.get(role or "")
    if expected is None:
        return None, f"unknown role {role!r}"
    try:
        message = msgpack.unpackb(bytes(payload or b""), raw=False)
    except Exception as exc:  # msgpack raises several types for bad bytes
        return None, f"payload is not valid msgpack ({type(exc).__name__})"
    if not isinstance(message, dict):
        return None, "payload is not a map"
    if message.get("role") != expected:
        return None, f"payload role {message.get('role')!r} under role column {role!r}"
    return message, None


def tool_call_id_of(payload: bytes | None) -> tuple[str | None, str | None]:
    """A tool result's `tool_call_id`, read without decoding its content (the listing
    needs only the id); (None, why) when the payload is not a tool result."""
    import msgpack

    try:
        unpacker = msgpack.Unpacker(raw=False)
        unpacker.feed(bytes(payload or b""))
        found: dict[str, Any] = {}
        for _ in range(unpacker.read_map_header()):
            key = unpacker.unpack()
            if key in ("role", "tool_call_id"):
                found[key] = unpacker.unpack()
                if len(found) == 2:
                    break
            else:
                unpacker.skip()
    except Exception:  # msgpack raises several types for bad bytes
        _, error = decode_payload(payload, "tool")
        return None, error or "payload is not a map"
    if found.get("role") != "tool_result":
        return None, f"payload role {found.get('role')!r} under role column 'tool'"
    call_id = found.get("tool_call_id")
    return (call_id if isinstance(call_id, str) else None), None
