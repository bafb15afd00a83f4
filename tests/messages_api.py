"""A small server of ours that speaks the Anthropic Messages API on 127.0.0.1.

Enough of the API for the real `anthropic` SDK to stream from it: `POST
/v1/messages` with `stream: true` answers with the API's server-sent events
(`message_start`, `content_block_start/delta/stop` for text and for
`tool_use` with `input_json_delta`, `message_delta`, `message_stop`). It
rejects what the real API rejects about tool use — a `tool_use` whose
`tool_result` is not in the next message, a `tool_result` for no `tool_use`
of the previous message, an empty message — with the API's 400 error shape.

The model is scripted like the demo agent's: for "Process items A..F" it
calls `process_item` for the items without a successful result, two per
turn, then reports. Every request is kept (with the error it got, if any)
so a test can assert that only valid requests were ever sent.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from supervisor.demo import parse_items


@dataclass
class Received:
    body: dict[str, Any]
    error: str | None


@dataclass
class MessagesAPI:
    """Start with `with MessagesAPI() as api:`; `api.url` is the base URL."""

    #: Called with each request's number (1-based) and body before answering;
    #: returning False drops the connection without an answer.
    on_request: Callable[[int, dict[str, Any]], bool] | None = None
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def invalid(self) -> list[Received]:
        return [r for r in self.received if r.error]

    def __enter__(self) -> MessagesAPI:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/messages":
                    self._json(404, _error("not_found_error", f"no route {self.path}"))
                    return
                error = validate(body)
                with api._lock:
                    api.received.append(Received(body, error))
                    number = len(api.received)
                if api.on_request is not None and api.on_request(number, body) is False:
                    self.close_connection = True
                    return
                if error:
                    self._json(400, _error("invalid_request_error", error))
                    return
                self._stream(reply(body), body.get("model", "claude"), number)

            def _json(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("request-id", "req_test")
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, blocks: list[dict[str, Any]], model: str, number: int) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("cache-control", "no-cache")
                self.end_headers()
                for name, data in sse_events(blocks, model, f"msg_{number:04d}"):
                    self.wfile.write(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
                    self.wfile.flush()
                self.close_connection = True

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def _error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_test"}


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    content = message.get("content")
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    return [b for b in content or [] if isinstance(b, dict)]


def validate(body: dict[str, Any]) -> str | None:
    """The API's own checks on tool use, with its wording; None if valid."""
    if not body.get("stream"):
        return "this test server only streams"
    messages = body.get("messages") or []
    if not messages:
        return "messages: at least one message is required"
    for i, m in enumerate(messages):
        blocks = _blocks(m)
        if not blocks:
            return f"messages.{i}: all messages must have non-empty content"
        if m.get("role") == "assistant":
            uses = [b["id"] for b in blocks if b.get("type") == "tool_use"]
            if not uses:
                continue
            following = _blocks(messages[i + 1]) if i + 1 < len(messages) else []
            answered = {b.get("tool_use_id") for b in following if b.get("type") == "tool_result"}
            missing = [u for u in uses if u not in answered]
            if missing:
                return (
                    f"messages.{i}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have "
                    "a corresponding `tool_result` block in the next message."
                )
        else:
            previous = _blocks(messages[i - 1]) if i > 0 else []
            uses = {b.get("id") for b in previous if b.get("type") == "tool_use"}
            for j, b in enumerate(blocks):
                if b.get("type") == "tool_result" and b.get("tool_use_id") not in uses:
                    return (
                        f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                        f"`tool_result` blocks: {b.get('tool_use_id')}. Each `tool_result` "
                        "block must have a corresponding `tool_use` block in the previous "
                        "message."
                    )
    return None


def reply(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The scripted model's answer as content blocks (the demo's batch job)."""
    messages = body["messages"]
    items: list[str] = []
    start = 0
    for i in range(len(messages) - 1, -1, -1):
        text = "".join(b.get("text", "") for b in _blocks(messages[i]) if b.get("type") == "text")
        if messages[i]["role"] == "user" and parse_items(text):
            items, start = parse_items(text), i
            break
    if not items:
        return [{"type": "text", "text": "Nothing to process."}]
    asked: dict[str, str] = {}
    done: set[str] = set()
    for m in messages[start:]:
        for b in _blocks(m):
            if b.get("type") == "tool_use":
                asked[b["id"]] = str(b.get("input", {}).get("item"))
            elif b.get("type") == "tool_result" and b.get("tool_use_id") in asked:
                done |= set() if b.get("is_error") else {asked[b["tool_use_id"]]}
    todo = [item for item in items if item not in done]
    if not todo:
        return [{"type": "text", "text": f"Processed {len(items)} items."}]
    turn = sum(1 for m in messages[start:] if m["role"] == "assistant") + 1
    return [{"type": "text", "text": f"Processing {' and '.join(todo[:2])}."}] + [
        {
            "type": "tool_use",
            "id": f"toolu_{turn:02d}_{item}",
            "name": "process_item",
            "input": {"item": item},
        }
        for item in todo[:2]
    ]


def sse_events(
    blocks: list[dict[str, Any]], model: str, message_id: str
) -> list[tuple[str, dict[str, Any]]]:
    """The stream of events the API sends for one assistant message."""
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
        )
    ]
    for index, block in enumerate(blocks):
        if block["type"] == "text":
            start = {"type": "text", "text": ""}
            text = block["text"]
            pieces = [text[i : i + 7] for i in range(0, len(text), 7)]
            deltas = [{"type": "text_delta", "text": p} for p in pieces]
        else:
            start = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            raw = json.dumps(block["input"])
            deltas = [
                {"type": "input_json_delta", "partial_json": raw[i : i + 5]}
                for i in range(0, len(raw), 5)
            ]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        events += [
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": None},
                "usage": {"output_tokens": 20},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events
