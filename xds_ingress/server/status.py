"""What each connected Envoy was sent and what it acknowledged, as plain data (debug and CLI)."""

from __future__ import annotations

import datetime as dt
import time

from xds_ingress.envoy import types
from xds_ingress.server.state import StreamState, TypeState


def iso(t: float) -> str | None:
    if not t:
        return None
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def type_status(ts: TypeState | None) -> dict:
    if ts is None or not ts.requested:
        return {"status": "NOT_SENT", "requested": False}
    return {
        "status": ts.status(),
        "requested": True,
        "subscription": ["*"] if ts.wildcard else sorted(ts.names),
        "version_sent": ts.sent_version or None,
        "sent_at": iso(ts.sent_at),
        "version_acked": ts.acked_version or None,
        "acked_at": iso(ts.acked_at),
        "in_flight": ts.in_flight,
        "resources_sent": len(ts.sent) if ts.sent is not None else 0,
        "responses": ts.responses,
        "acks": ts.acks,
        "nacks": ts.nacks,
        "last_nack": ({"version": ts.nack_version, "error_detail": ts.nack_message, "time": iso(ts.nack_at),
                       "resources": list(ts.nack_resources)}
                      if ts.nack_at else None),
    }


def proxy_status(stream: StreamState) -> dict:
    return {
        "node": stream.node_id,
        "cluster": stream.node_cluster,
        "peer": stream.peer,
        "user_agent": stream.user_agent,
        "stream": stream.id,
        "protocol": stream.protocol,
        "connected_since": iso(stream.connected_at),
        "connected_seconds": round(max(0.0, time.time() - stream.connected_at), 3),
        "types": {types.SHORT_NAMES[t]: type_status(stream.types.get(t)) for t in types.PUSH_ORDER},
    }
