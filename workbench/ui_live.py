"""Live tab: speak into the microphone and watch the sentences come (fireredasr_engine.stream).

The page records the microphone itself (``live_recorder.js``: an AudioWorklet collects the samples, and every
``POST_EVERY_S`` the page posts them, in order and one post at a time, to ``AUDIO_ROUTE``): a page starved of
CPU posts late, never less. Record gives each browser session a new ``LiveSession`` (in a ``gr.State``) over the
one shared engine, listed in ``SESSIONS`` under an unguessable token that only the page that pressed Record gets
(so a login, when set, guards the route too). Committed sentences are shown with their times, the open one
greyed; at Stop the page sends what it still holds, the open sentence is finished, and the session can be
downloaded as SRT, VTT and TXT.
"""

from __future__ import annotations

import asyncio
import html
import queue
import secrets
import threading
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from fireredasr_engine.options import Segment
from fireredasr_engine.stream import LIVE, Final, Partial, SentenceStream, StreamOptions
from fireredasr_engine.subtitles import write_subtitles
from fireredasr_vllm.audio import SAMPLE_RATE, AudioError
from workbench.ui_decoding import decoding_controls, decoding_from_controls
from workbench.ui_transcribe import TOAST_SECONDS, prune

POST_EVERY_S = 0.25  # how often the page posts what the microphone recorded (and refreshes the transcript)
MAX_POST_S = 5.0  # the most audio one post may carry (a page that fell behind sends its backlog in such posts)
RATES = (8000, 192_000)  # the sample rates a post may declare (the browser's audio context's rate)
TIME_LIMIT_S = 3600  # longest live session; Record again for another
FINISH_TIMEOUT_S = 120.0  # how long Stop waits for the last sentences' decodes
AUDIO_ROUTE = "/live/{token}/audio"  # POST ?seq=N&rate=R, body: 16-bit little-endian mono PCM
RECORDER_JS = (Path(__file__).parent / "live_recorder.js").read_text(encoding="utf-8")
PLACEHOLDER = "Press Record and speak: each sentence appears when you pause, the one you are saying in grey."
CSS = """
.live-time { color: var(--body-text-color-subdued); font-family: var(--font-mono); margin-right: .6em; }
.live-partial, .live-status { color: var(--body-text-color-subdued); }
.live-error { color: var(--error-text-color); }
"""
TRANSCRIPT_MAX_HEIGHT = 480  # px; scrolls, following the newest sentence
SESSIONS: dict[str, LiveSession] = {}  # the sessions recording now, by token


def clock(seconds: float) -> str:
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes):02d}:{seconds:04.1f}"


class LiveSession:
    """One browser session's stream: the sentences committed so far and the open one.

    Listed in ``SESSIONS`` under ``token`` until it stops: ``receive_audio`` puts each post's samples in its
    ``inbox``, and a thread of the session's own feeds them to the stream in order."""

    def __init__(self, engine, options):
        self.finals: list[Segment] = []
        self.partial: Partial | None = None
        self.error: str | None = None
        self.missing: list[str] = []  # the posts that never came, e.g. "3-4"
        self.ended = threading.Event()
        self.stream = SentenceStream(engine, options, StreamOptions(), self.on_event)
        self.inbox: queue.Queue[tuple[np.ndarray, int] | None] = queue.Queue()  # (samples, rate); None: the end
        self.next_post = 0  # the sequence number the next post should carry
        self.posted_s = 0.0  # seconds of audio the page has posted
        self.stopped = False
        self.shown = ""  # the transcript as the page last got it
        self.token = secrets.token_urlsafe(24)
        SESSIONS[self.token] = self
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

    def hear(self, seq: int, samples: np.ndarray, rate: int) -> dict:
        """One post of the page: its samples to the stream, unless it repeats one already heard (a retry whose
        answer was lost). A gap in the numbers is noted on the page. The answer's JSON says which."""
        if seq < self.next_post:
            return {"seq": seq, "repeat": True}
        answer = {"seq": seq}
        if seq > self.next_post:
            gap = f"{self.next_post}-{seq - 1}" if seq - 1 > self.next_post else str(self.next_post)
            self.missing.append(gap)
            answer["missing"] = gap
        self.next_post = seq + 1
        self.posted_s += len(samples) / rate
        self.inbox.put((samples, rate))
        return answer

    def listen(self) -> None:
        while (post := self.inbox.get()) is not None:
            try:
                self.stream.feed(*post)
            except AudioError as error:  # not audio: said on the page, the session goes on
                self.error = f"a microphone post could not be read ({error})"
        self.stream.finish()

    def html(self) -> str:
        lines = [f'<p class="live-final"><span class="live-time">{clock(s.start_s)}–{clock(s.end_s)}</span>'
                 f"{html.escape(s.text)}</p>" for s in self.finals]
        if self.partial is not None:
            lines.append(f'<p class="live-partial"><span class="live-time">{clock(self.partial.start_s)}–</span>'
                         f"{html.escape(self.partial.text)}</p>")
        if self.missing:
            lines.append(f'<p class="live-error">the page\'s posts {", ".join(self.missing)} never came: that '
                         "audio is missing from the transcript</p>")
        if self.error:
            lines.append(f'<p class="live-error">{html.escape(self.error)}</p>')
        status = "stopped" if self.stopped else "listening"
        heard = int(self.stream.received / SAMPLE_RATE)  # whole seconds: most posts change nothing shown
        return (f'<p class="live-status">{status} · {heard} s heard · {len(self.finals)} sentences</p>'
                + "".join(lines))

    def finish(self) -> None:
        """Stop listening once the posts already received are fed; ``ended`` is set after the last final."""
        self.stopped = True
        SESSIONS.pop(self.token, None)
        self.inbox.put(None)

    def close(self) -> None:
        self.stopped = True
        SESSIONS.pop(self.token, None)
        self.stream.stop()
        self.inbox.put(None)
        self.ended.set()


def refusal(status: int, sentence: str) -> JSONResponse:
    return JSONResponse({"detail": sentence}, status_code=status)


async def receive_audio(request: Request) -> JSONResponse:
    """``POST /live/{token}/audio?seq=N&rate=R``: the page's next samples (16-bit little-endian mono PCM) for
    the session holding ``token``. Refuses with one sentence: an unknown or stopped session (404), a post that
    is not such audio or is longer than ``MAX_POST_S`` (400), a session past ``TIME_LIMIT_S`` (409)."""
    session = SESSIONS.get(request.path_params["token"])
    if session is None:
        return refusal(404, "This live session is not recording (it was stopped, or the page was reloaded): "
                            "press Record to start another.")
    try:
        seq, rate = int(request.query_params["seq"]), int(request.query_params["rate"])
    except (KeyError, ValueError):
        return refusal(400, "A post names its place and sample rate as whole numbers: ?seq=N&rate=R.")
    if seq < 0 or not RATES[0] <= rate <= RATES[1]:
        return refusal(400, f"A post needs seq >= 0 and a rate of {RATES[0]}-{RATES[1]} Hz (got seq={seq}, "
                            f"rate={rate}).")
    limit = 2 * int(MAX_POST_S * rate)
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            return refusal(400, f"A post carries at most {MAX_POST_S:g} s of audio ({limit} bytes at {rate} Hz): "
                                "send longer audio in several posts.")
    if not body or len(body) % 2:
        return refusal(400, "A post's body is 16-bit little-endian mono PCM: a whole, non-zero number of "
                            f"2-byte samples (got {len(body)} bytes).")
    if session.posted_s >= TIME_LIMIT_S:
        return refusal(409, f"This live session reached its {TIME_LIMIT_S // 60}-minute limit: press Stop, "
                            "then Record for another.")
    samples = np.frombuffer(bytes(body), "<i2").astype(np.float32) / 32768
    return JSONResponse(session.hear(seq, samples, rate))


LIVE_ROUTES = [Route(AUDIO_ROUTE, receive_audio, methods=["POST"])]


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


def build_live_tab(engine, *, export_dir: Path) -> None:
    """Render the tab's components inside the current ``gr.Tab``; the page posts its audio to ``LIVE_ROUTES``."""
    with gr.Row():
        record = gr.Button("Record", variant="primary", elem_id="live-record")
        stop = gr.Button("Stop", interactive=False, elem_id="live-stop")
    gr.HTML("", js_on_load=RECORDER_JS, css_template=CSS, elem_id="live-recorder")  # its problems
    controls = decoding_controls("live")
    transcript = gr.HTML(f'<p class="live-status">{PLACEHOLDER}</p>', css_template=CSS, autoscroll=True,
                         max_height=TRANSCRIPT_MAX_HEIGHT, elem_id="live-transcript")
    downloads = gr.File(label="download the session (SRT, VTT, TXT; after Stop)", file_count="multiple",
                        interactive=False, elem_id="live-downloads")
    state = gr.State(None, delete_callback=close_session)
    token = gr.Textbox(visible=False)  # the session's, for the page's recorder
    refresh = gr.Timer(POST_EVERY_S, active=False)  # ticks while a session records
    recording = [refresh, record, stop]

    def buttons(on: bool) -> list:
        return [gr.Timer(active=on), gr.Button(interactive=not on), gr.Button(interactive=on)]

    def start(session, *values):
        """Record: a new session with the decoding controls' values (the no-speech gate on)."""
        close_session(session)
        try:
            options = replace(decoding_from_controls(*values), no_speech=LIVE.no_speech)
            engine.check_supported(options)  # e.g. a hotword the model cannot spell
        except ValueError as error:  # a ControlError too
            gr.Warning(str(error), duration=TOAST_SECONDS)
            return None, "", f'<p class="live-error">{html.escape(str(error))}</p>', None, *buttons(False)
        session = LiveSession(engine, options)
        session.shown = session.html()
        return session, session.token, session.shown, None, *buttons(True)

    def show(session):
        """A tick while recording: the transcript, when it changed."""
        if session is None:
            return gr.skip()
        shown, session.shown = session.shown, session.html()
        return gr.skip() if session.shown == shown else session.shown

    async def finish(session):
        """Stop (the page has posted all it recorded): the open sentence becomes the last final; then the
        session's files, if it has a sentence."""
        if session is None:
            return gr.skip(), gr.skip(), *buttons(False)
        session.finish()
        await asyncio.to_thread(session.ended.wait, FINISH_TIMEOUT_S)
        return session.html(), write_session(session, export_dir) if session.finals else None, *buttons(False)

    record.click(start, [state, *controls.inputs], [state, token, transcript, downloads, *recording], queue=False,
                 js="(...values) => { window.fireredasrLive.open(); return values; }").then(
        None, [token], None, js="(token) => window.fireredasrLive.start(token)")
    refresh.tick(show, [state], [transcript], queue=False, show_progress="hidden")
    stop.click(finish, [state], [transcript, downloads, *recording], concurrency_limit=None,
               js="async (...values) => { await window.fireredasrLive.stop(); return values; }")
