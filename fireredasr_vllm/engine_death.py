"""When the vLLM engine dies: one sentence naming the cause and the fix, for every front end.

The engine core process stops for good on an error it cannot recover from, almost always CUDA out of memory
under a burst of work that its memory profile did not foresee. vLLM then fails every request with
``EngineDeadError`` ("EngineCore encountered an issue. See stack trace (above) for the root cause."), and its
server exits. The facade (fireredasr_engine) turns that into ``ENGINE_STOPPED``; ``fireredasr-serve`` keeps
its server up (``VLLM_KEEP_ALIVE_ON_ENGINE_DEATH``) so that clients get ``ENGINE_STOPPED`` in a 503 from the
transcription route and from ``/health``, instead of refused connections.
"""

from __future__ import annotations

import json

ENGINE_STOPPED = ("the vLLM engine stopped (most often: out of GPU memory; its log says why) and must be restarted; "
                  "give it more headroom with a lower --gpu-memory-utilization (e.g. 0.8) or fewer requests at once "
                  "with a smaller --max-num-seqs")
VLLM_DEAD_MESSAGE = b"EngineCore encountered an issue"  # in vLLM's EngineDeadError and its 5xx bodies
KEEP_ALIVE_ENV = {"VLLM_KEEP_ALIVE_ON_ENGINE_DEATH": "1"}
MIDDLEWARE = "fireredasr_vllm.engine_death.EngineStoppedNotice"


def error_body(message: str = ENGINE_STOPPED) -> bytes:
    """vLLM's error format, status 503."""
    return json.dumps({"error": {"message": message, "type": "EngineStopped", "code": 503}}).encode()


class EngineStoppedNotice:
    """ASGI middleware: once the engine has died, ``/health`` (an empty 503 from vLLM) and any route that
    fails with vLLM's engine-dead error answer 503 with ``ENGINE_STOPPED``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        health = scope["path"] == "/health"
        start: dict = {}
        chunks: list[bytes] = []

        async def send_notice(message):
            if message["type"] == "http.response.start":
                if message["status"] < 500:
                    return await send(message)
                start.update(message)
                return
            if not start:
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            body = b"".join(chunks)
            if (health and start["status"] == 503) or VLLM_DEAD_MESSAGE in body:
                body = error_body()
                headers = [(k, v) for k, v in start.get("headers", [])
                           if k.lower() not in (b"content-type", b"content-length")]
                start.update(status=503, headers=headers + [(b"content-type", b"application/json"),
                                                            (b"content-length", str(len(body)).encode())])
            await send(start)
            await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, send_notice)
