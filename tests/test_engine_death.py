"""fireredasr_vllm.engine_death: an engine that dies (out of GPU memory, killed) gives one sentence with the
cause and the fix everywhere: the facade's transcripts, eval.run (finished rows kept, resumable) and the
server's 503s and /health."""

from __future__ import annotations

import asyncio
import json
import os
import signal

import psutil
import pytest

from eval.records import ROWS, read_rows
from eval.run import EngineStopped, evaluate
from fireredasr_engine.engine import Engine
from fireredasr_vllm.engine_death import ENGINE_STOPPED, EngineStoppedNotice


def engine_cores() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if "EngineCore" in " ".join(p.cmdline() + [p.name()])}


def test_a_dead_engine_stops_eval_run_with_one_sentence_and_the_run_resumes(engine, tmp_path):
    before = engine_cores()
    doomed = Engine("trained")
    cores = engine_cores() - before
    assert cores, "no engine core process found"
    out = tmp_path / "run"

    def kill_after_five(row, summary):
        if summary.utterances == 5:
            for pid in cores:
                os.kill(pid, signal.SIGKILL)

    try:
        with pytest.raises(EngineStopped) as stopped:
            evaluate("demo", engine=doomed, output_dir=out, progress=False, on_row=kill_after_five, max_in_flight=1)
        message = str(stopped.value)
        assert ENGINE_STOPPED in message and "run the same command again to resume" in message
        assert "Traceback" not in message and "EngineCore" not in message
        kept = read_rows(out / ROWS)
        assert 5 <= len(kept) < 30 and all(row["error"] is None for row in kept)  # no failure rows written
        later = doomed.transcribe("eval/demo/clips/demo_000.flac")  # fails at once, same sentence
        assert later.error == f"demo_000: {ENGINE_STOPPED}"
    finally:
        doomed.close()
    resumed = evaluate("demo", engine=engine, output_dir=out, progress=False)
    assert resumed.summary.utterances == 30 and resumed.summary.failed == 0


async def call(middleware, path: str, status: int, body: bytes) -> tuple[int, bytes]:
    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": body})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    await middleware(app)({"type": "http", "path": path}, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


@pytest.mark.parametrize("path, status, body, told", [
    ("/health", 503, b"", True),  # vLLM's /health once the engine is dead: an empty 503
    ("/v1/audio/transcriptions", 500,
     json.dumps({"error": {"message": "EngineCore encountered an issue. See stack trace (above)"}}).encode(), True),
    ("/v1/audio/transcriptions", 500, b'{"error": {"message": "something else"}}', False),
    ("/health", 200, b"", False),
])
def test_the_server_answers_503_with_the_sentence(path, status, body, told):
    got_status, got_body = asyncio.run(call(EngineStoppedNotice, path, status, body))
    if told:
        assert got_status == 503 and json.loads(got_body)["error"]["message"] == ENGINE_STOPPED
    else:
        assert (got_status, got_body) == (status, body)
