"""How the console shows values: events (JSON pretty-printed, bytes in hex), subscriptions,
groups and samples as JSON-ready dicts.

Everything returned is plain JSON data; the page puts it in the document as text (never
as HTML), so event content can never run as script there.
"""

from __future__ import annotations

import json
from typing import Any, Final

from ..events import EventRecord
from .sample import GroupSample, StoreSample, SubscriptionSample

__all__ = ["MAX_SHOWN_BYTES", "event_view", "group_view", "hex_dump", "payload_view",
           "store_view", "subscription_view"]

MAX_SHOWN_BYTES: Final = 64 * 1024
"""The most bytes of one event's data or metadata shown (the view says when it cuts)."""


def hex_dump(data: bytes) -> str:
    """``data`` as lines of 16 bytes: offset, hex, and the printable ASCII."""
    lines = []
    for offset in range(0, len(data), 16):
        chunk = data[offset:offset + 16]
        text = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{offset:08x}  {chunk.hex(' '):<47}  {text}")
    return "\n".join(lines)


def payload_view(value: Any) -> dict[str, Any] | None:
    """An event's data or metadata: ``{"kind": "json", "text": <pretty JSON>}`` or
    ``{"kind": "bytes", "size": n, "hex": <hex dump>, "truncated": bool}``; None for
    metadata that is None. At most :data:`MAX_SHOWN_BYTES` are shown."""
    if value is None:
        return None
    if isinstance(value, bytes):
        shown = value[:MAX_SHOWN_BYTES]
        return {"kind": "bytes", "size": len(value), "hex": hex_dump(shown),
                "truncated": len(shown) < len(value)}
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)
    truncated = len(text) > MAX_SHOWN_BYTES
    return {"kind": "json", "size": len(text.encode()), "text": text[:MAX_SHOWN_BYTES],
            "truncated": truncated}


def event_view(event: EventRecord) -> dict[str, Any]:
    """An event as the console shows it."""
    return {
        "stream_id": event.stream_id, "event_number": event.event_number,
        "event_id": str(event.event_id), "event_type": event.event_type,
        "content_type": event.content_type, "created": event.created.isoformat(),
        "position": event.position, "data": payload_view(event.data),
        "metadata": payload_view(event.metadata),
    }


def subscription_view(sub: SubscriptionSample) -> dict[str, Any]:
    """A subscription as the console shows it."""
    return {"key": sub.key, "type": sub.type, "selector": sub.selector, "name": sub.name,
            "kind": sub.kind, "start_from": sub.start_from, "position": sub.position,
            "subscriber": sub.subscriber, "head": sub.head, "lag": sub.lag,
            "in_flight": sub.in_flight, "running": sub.running,
            "subscriber_alive": sub.subscriber_alive}


def group_view(group: GroupSample) -> dict[str, Any]:
    """A gRPC persistent subscription group as the console shows it."""
    return {"stream": group.stream, "group": group.group, "status": group.status,
            "consumers": group.consumers, "in_flight": group.in_flight,
            "parked": group.parked, "last_checkpoint": group.last_checkpoint,
            "last_known": group.last_known}


def store_view(store: StoreSample) -> dict[str, Any]:
    """A store's figures for the dashboard: status, head, counters, and subscriptions
    with their lag when the sample has them."""
    storage = store.storage
    return {
        "store_id": store.store_id, "status": store.status, "head": store.head,
        "events_appended": storage.events_appended, "events_read": storage.events_read,
        "appends": storage.appends, "transactions": storage.transactions,
        "grpc_connections": store.grpc.connections,
        "subscriptions": (None if store.subscriptions is None
                          else [subscription_view(s) for s in store.subscriptions]),
        "groups": None if store.groups is None else [group_view(g) for g in store.groups],
    }
