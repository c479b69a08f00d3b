"""Live tab: speak into the microphone and watch the sentences come (fireredasr_engine.stream).

The browser sends the microphone in chunks (Gradio's streaming audio); each browser session has its own
``LiveSession`` (in a ``gr.State``) over the one shared engine. The chunks reach it through ``MicrophoneTap``,
an ASGI middleware that ``workbench.app.launch`` installs: Gradio itself drops the chunks that come while the
page's handler runs. Committed sentences are shown with their times, the open one greyed; at Stop the open
sentence is finished and the session can be downloaded as SRT, VTT and TXT.
"""

from __future__ import annotations

import asyncio
import html
import json
import queue
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr
import soundfile as sf
from gradio.utils import get_upload_folder, is_in_or_equal

from fireredasr_engine.options import Segment
from fireredasr_engine.stream import LIVE, Final, Partial, SentenceStream, StreamOptions
from fireredasr_engine.subtitles import write_subtitles
from fireredasr_vllm.audio import SAMPLE_RATE, AudioError
from workbench.ui_decoding import ControlError, decoding_controls, decoding_from_controls
from workbench.ui_transcribe import TOAST_SECONDS, prune

STREAM_EVERY_S = 0.25  # how often the browser sends what the microphone heard
TIME_LIMIT_S = 3600  # longest live session; Record again for another
FINISH_TIMEOUT_S = 120.0  # how long Stop waits for the last sentences' decodes
PLACEHOLDER = "Press Record and speak: each sentence appears when you pause, the one you are saying in grey."
CSS = """
.live-time { color: var(--body-text-color-subdued); font-family: var(--font-mono); margin-right: .6em; }
.live-partial, .live-status { color: var(--body-text-color-subdued); }
.live-error { color: var(--error-text-color); }
"""
TRANSCRIPT_MAX_HEIGHT = 480  # px; scrolls, following the newest sentence
# The posts that carry a chunk: the one that starts the stream (the first chunk), then one a chunk
CHUNK_POST = re.compile(r"/gradio_api/(queue/join|stream/[^/]+)$")
# The sessions listening now, by (Gradio session hash, the microphone stream's fn_index): where chunks go
SESSIONS: dict[tuple[str, int], LiveSession] = {}


def clock(seconds: float) -> str:
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes):02d}:{seconds:04.1f}"


class LiveSession:
    """One browser session's stream: the sentences committed so far and the open one.

    Listed in ``SESSIONS`` under ``key`` until it stops: ``MicrophoneTap`` posts each chunk's file to its
    ``inbox``, and a thread of the session's own reads and feeds the chunks in order."""

    def __init__(self, engine, options, key: tuple[str, int]):
        self.finals: list[Segment] = []
        self.partial: Partial | None = None
        self.error: str | None = None
        self.ended = threading.Event()
        self.stream = SentenceStream(engine, options, StreamOptions(), self.on_event)
        self.inbox: queue.Queue[str | None] = queue.Queue()  # chunk files; None: the end
        self.stopped = False
        self.shown = ""  # the transcript as the page last got it
        self.key = key
        SESSIONS[key] = self
        threading.Thread(target=self.listen, name="fireredasr-live-session", daemon=True).start()

    def on_event(self, event) -> None:
        if isinstance(event, Final):
            self.finals.append(event.segment)
            self.partial = None
        elif isinstance(event, Partial):
            self.partial = event
        else:  # the end, or the error that ended it
            self.error = str(event) if event is not None else None
            self.ended.set()

    def listen(self) -> None:
        while (path := self.inbox.get()) is not None:
            try:
                self.stream.feed(*sf.read(path, dtype="float32"))
            except (AudioError, sf.LibsndfileError) as error:  # not audio: said on the page, the session goes on
                self.error = f"a microphone chunk could not be read ({error})"
        self.stream.finish()

    def html(self) -> str:
        lines = [f'<p class="live-final"><span class="live-time">{clock(s.start_s)}–{clock(s.end_s)}</span>'
                 f"{html.escape(s.text)}</p>" for s in self.finals]
        if self.partial is not None:
            lines.append(f'<p class="live-partial"><span class="live-time">{clock(self.partial.start_s)}–</span>'
                         f"{html.escape(self.partial.text)}</p>")
        if self.error:
            lines.append(f'<p class="live-error">{html.escape(self.error)}</p>')
        status = "stopped" if self.stopped else "listening"
        heard = int(self.stream.received / SAMPLE_RATE)  # whole seconds: most chunks change nothing shown
        return (f'<p class="live-status">{status} · {heard} s heard · {len(self.finals)} sentences</p>'
                + "".join(lines))

    def finish(self) -> None:
        """Stop listening once the chunks already posted are fed; ``ended`` is set after the last final."""
        self.stopped = True
        self.unlist()
        self.inbox.put(None)

    def close(self) -> None:
        self.stopped = True
        self.unlist()
        self.stream.stop()
        self.inbox.put(None)
        self.ended.set()

    def unlist(self) -> None:
        if SESSIONS.get(self.key) is self:  # not a newer recording's session of the same browser session
            del SESSIONS[self.key]


class MicrophoneTap:
    """ASGI middleware: every microphone chunk the page posts reaches its browser session's ``LiveSession``.

    Gradio 6.31's ``POST /gradio_api/stream/{event_id}`` overwrites the chunk waiting for the ``.stream``
    handler, so the chunks posted (every 0.1 s) while the handler runs were lost: on a loaded machine the page
    heard 12 s of a 57 s recording. This reads each chunk post before Gradio does, in arrival order (the first
    chunk comes with the ``queue/join`` that starts the stream), puts the chunk's uploaded file in its session's
    inbox, and passes the request on unchanged."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not CHUNK_POST.search(scope["path"]):
            return await self.app(scope, receive, send)
        messages = [await receive()]
        while messages[-1]["type"] == "http.request" and messages[-1].get("more_body"):
            messages.append(await receive())
        deliver_chunk(b"".join(message.get("body", b"") for message in messages))

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def deliver_chunk(body: bytes) -> None:
    """A chunk post's file to its session's inbox; any other post (another event, a stopped session, a file
    that was not uploaded to Gradio, a malformed body: Gradio answers it) is left alone."""
    try:
        post = json.loads(body)
        session = SESSIONS.get((post["session_hash"], post["fn_index"]))
        path = post["data"][0]["path"]
    except (ValueError, TypeError, KeyError, IndexError):
        return
    if session is not None and isinstance(path, str) and is_in_or_equal(path, get_upload_folder()):
        session.inbox.put(path)


def write_session(session: LiveSession, export_dir: Path) -> list[str]:
    """The session's sentences as SRT, VTT and TXT (one sentence a line), in a new export folder."""
    export_dir.mkdir(parents=True, exist_ok=True)
    prune(export_dir)
    folder = export_dir / f"transcripts-live-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6:06d}"
    folder.mkdir()
    files = [write_subtitles(folder / f"live.{fmt}", session.finals) for fmt in ("srt", "vtt")]
    text = folder / "live.txt"
    text.write_text("".join(f"{s.text}\n" for s in session.finals), encoding="utf-8")
    return [str(path) for path in files + [text]]


def close_session(session: LiveSession | None) -> None:
    """When the browser tab closes: stop listening (decodes already started finish unread)."""
    if session is not None:
        session.close()


def build_live_tab(engine, *, export_dir: Path, concurrency: int) -> None:
    """Render the tab's components inside the current ``gr.Tab``; up to ``concurrency`` sessions stream at once."""
    microphone = gr.Audio(sources=["microphone"], streaming=True, type="filepath", label="microphone",
                          elem_id="live-microphone")
    controls = decoding_controls("live")
    transcript = gr.HTML(f'<p class="live-status">{PLACEHOLDER}</p>', css_template=CSS, autoscroll=True,
                         max_height=TRANSCRIPT_MAX_HEIGHT, elem_id="live-transcript")
    downloads = gr.File(label="download the session (SRT, VTT, TXT; after Stop)", file_count="multiple",
                        interactive=False, elem_id="live-downloads")
    state = gr.State(None, delete_callback=close_session)

    def start(request: gr.Request, session, *values):
        """Record: a new session with the decoding controls' values (the no-speech gate on)."""
        close_session(session)
        try:
            options = replace(decoding_from_controls(*values), no_speech=LIVE.no_speech)
            engine.check_supported(options)  # e.g. a hotword the model cannot spell
        except ValueError as error:  # a ControlError too
            gr.Warning(str(error), duration=TOAST_SECONDS)
            return None, f'<p class="live-error">{html.escape(str(error))}</p>', None
        session = LiveSession(engine, options, key=(request.session_hash, streaming["id"]))
        return session, session.html(), None

    async def hear(chunk: str | None, session):
        """The page's turn after a chunk: show what changed (``MicrophoneTap`` has given the session the chunk)."""
        if session is None or session.stopped:
            return gr.skip()
        shown, session.shown = session.shown, session.html()
        return gr.skip() if session.shown == shown else session.shown  # less to send: the loop turns faster

    async def stop(session):
        """Stop: the open sentence becomes the last final; then the session's files."""
        if session is None:
            return gr.skip(), gr.skip()
        session.finish()
        await asyncio.to_thread(session.ended.wait, FINISH_TIMEOUT_S)
        return session.html(), write_session(session, export_dir)

    microphone.start_recording(start, [state, *controls.inputs], [state, transcript, downloads], queue=False)
    streaming = microphone.stream(hear, [microphone, state], [transcript], stream_every=STREAM_EVERY_S,
                      time_limit=TIME_LIMIT_S, concurrency_limit=concurrency, show_progress="hidden")
    microphone.stop_recording(stop, [state], [transcript, downloads], concurrency_limit=None)
