"""The Live tab in real headless Chromiums whose fake microphones play recordings in real time: two browser
sessions at once, each with every sentence of its own recording and none of the other's, partials greyed while
speaking, and the session's SRT, VTT and TXT after Stop. One run of about a minute checks all of it (the long
recording plays for 57 s). Then what the page says when it cannot record, and the page's audio route itself,
without a browser: what it refuses, and how."""

import io
import re
from collections import defaultdict

import httpx
import jiwer
import numpy as np
import pytest
import soundfile as sf
import srt
import webvtt
from playwright.sync_api import expect

from eval.bundled import DEMO_CLIPS, DEMO_DIR, LONG_RECORDING_PAUSE_S, long_recording, read_sentences
from fireredasr_engine.stream import LIVE, SentenceStream
from fireredasr_vllm.audio import SAMPLE_RATE
from testkit.pages import reveal
from workbench.ui_live import MAX_POST_S, SESSIONS, TIME_LIMIT_S, LiveSession

OTHER_CLIPS = slice(10, 14)  # the second page's recording: 4 sentences the long recording does not say
AFTER_PLAYBACK_S = 1.0  # Stop is pressed this long after the recording has played


def fake_microphone_file(path, samples: np.ndarray):
    """What Chromium's fake microphone plays: 16-bit WAV."""
    sf.write(path, samples, SAMPLE_RATE, subtype="PCM_16")
    return path


@pytest.fixture
def recordings(tmp_path):
    """``{name: (wav, sentences, clip starts in seconds)}``: the long recording, and 4 other clips joined alike."""
    long_samples, long_sentences = long_recording()
    texts = dict(read_sentences(DEMO_DIR / "sentences.txt"))
    paths = sorted(DEMO_CLIPS.glob("*.flac"))[OTHER_CLIPS]
    pause = np.zeros(int(LONG_RECORDING_PAUSE_S * SAMPLE_RATE), np.float32)
    other = np.concatenate([p for path in paths for p in (pause, sf.read(path, dtype="float32")[0])] + [pause])
    return {name: (fake_microphone_file(tmp_path / f"{name}.wav", samples), sentences, clip_starts(samples))
            for name, samples, sentences in (("long", long_samples, long_sentences),
                                             ("other", other, [texts[p.stem] for p in paths]))}


def clip_starts(samples: np.ndarray) -> list[float]:
    """Where each clip begins (the pauses between them are digital silence)."""
    sound = np.flatnonzero(samples)
    gaps = np.flatnonzero(np.diff(sound) > LONG_RECORDING_PAUSE_S * SAMPLE_RATE / 2)
    return [s / SAMPLE_RATE for s in (sound[0], *sound[gaps + 1])]


def open_live_tab(launch_chromium, open_app, wav):
    chromium = launch_chromium("--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                               f"--use-file-for-fake-audio-capture={wav}%noloop")
    page = open_app(chromium, permissions=["microphone"])
    reveal(page, page.get_by_role("tab", name="Live"), "#live-record")
    return page


def download(page, name: str) -> str:
    link = page.locator(f"#live-downloads a[download='{name}']")
    link.wait_for()
    return page.request.get(link.get_attribute("href")).text()


def test_two_live_sessions_each_get_their_own_sentences(launch_chromium, open_app, recordings, engine, monkeypatch):
    """Each page hears all of its recording and shows every sentence, its CER within 2 points of the offline
    long-audio path's on the audio the page posted: the file as the microphone played it, from wherever its first
    sample fell (the trained model's text moves with that offset, both paths alike: 22-42 % CER on the long
    recording for 0-26 ms of silence before it, docs/benchmarks.md)."""
    offline = {name: engine.transcribe(wav, long_audio=True).text for name, (wav, _, _) in recordings.items()}
    fed = defaultdict(list)  # stream -> the (samples, rate) of each of the page's posts
    feed = SentenceStream.feed
    monkeypatch.setattr(SentenceStream, "feed", lambda stream, *post: fed[stream].append(post) or feed(stream, *post))
    pages = {name: open_live_tab(launch_chromium, open_app, wav) for name, (wav, _, _) in recordings.items()}
    for page in pages.values():
        page.locator("#live-record").click()
    started = {name: page.evaluate("performance.now()") for name, page in pages.items()}
    streams = {name: SESSIONS[page.wait_for_function("window.fireredasrLive.token").json_value()].stream
               for name, page in pages.items()}
    for name, page in pages.items():
        page.locator("#live-transcript .live-partial").first.wait_for()  # the open sentence, greyed
    for name in sorted(pages, key=lambda n: sf.info(recordings[n][0]).duration):  # the shorter one first
        page = pages[name]
        played_ms = 1000 * (sf.info(recordings[name][0]).duration + AFTER_PLAYBACK_S)
        page.wait_for_timeout(max(0.0, played_ms - (page.evaluate("performance.now()") - started[name])))
        page.locator("#live-stop").click()

    for name, page in pages.items():
        wav, sentences, starts = recordings[name]
        subtitles = list(srt.parse(download(page, "live.srt")))
        shown = page.locator("#live-transcript .live-final").all_inner_texts()
        assert page.locator("#live-transcript .live-partial").count() == 0  # stopped: nothing left open
        texts = [cue.content for cue in subtitles]
        status = page.locator("#live-transcript .live-status").inner_text()
        heard = int(re.search(r"(\d+) s heard", status).group(1))
        # The page records and posts all the microphone plays, however late a starved page posts it
        assert heard >= 0.95 * sf.info(wav).duration, f"{name}: the page sent {heard} s of audio ({status})"
        assert len(texts) == len(sentences), (name, texts, status)  # every sentence, and none of the other's
        assert all(text in line for text, line in zip(texts, shown)), shown
        assert [c.text for c in webvtt.from_buffer(io.StringIO(download(page, "live.vtt")))] == texts
        assert download(page, "live.txt").splitlines() == texts
        cue_starts = [cue.start.total_seconds() for cue in subtitles]
        offset = cue_starts[0] - starts[0]  # the microphone starts playing a little before or after Record
        assert all(abs(cue - offset - start) < 0.5 for cue, start in zip(cue_starts, starts)), (cue_starts, starts)
        posts = fed[streams[name]]
        posted = engine.transcribe((np.concatenate([samples for samples, _ in posts]), posts[0][1]), long_audio=True)
        page_cer, posted_cer, file_cer = (jiwer.cer("".join(sentences), "".join(text))
                                          for text in (texts, posted.text, offline[name]))
        print(f"{name}: {heard} s heard of {sf.info(wav).duration:.1f}, {len(texts)} of {len(sentences)} sentences, "
              f"CER page {page_cer:.1%} / offline on the posted audio {posted_cer:.1%} / on the file {file_cer:.1%}")
        assert page_cer <= posted_cer + 0.02, (name, page_cer, posted_cer, texts, posted.text, status)
        other = next(text for n, text in offline.items() if n != name)
        assert jiwer.cer(other, "".join(texts)) > 0.5, (name, texts)  # none of the other session's speech
        assert re.search(rf"stopped · \d+ s heard · {len(sentences)} sentences", status)
        assert page.locator("#live-recorder .live-error, #live-transcript .live-error").count() == 0  # no post lost


def test_the_page_says_why_it_cannot_record(browser, open_app):
    """No microphone (the shared Chromium has neither a fake one nor the permission), and a browser that offers
    none at all (as on plain http from another address): one sentence each, and the session ends empty, with no
    files to download."""
    pages = [open_app(browser) for _ in range(2)]
    pages[1].evaluate("Object.defineProperty(navigator, 'mediaDevices', {value: undefined})")
    for page in pages:
        reveal(page, page.get_by_role("tab", name="Live"), "#live-record")
        page.locator("#live-record").click()
    for page, expected in zip(pages, (["press Record again"], ["https or from localhost", "--share", "ssh -L"])):
        problem = page.locator("#live-recorder .live-error")
        problem.wait_for()
        assert problem.count() == 1 and all(words in problem.inner_text() for words in expected), problem.inner_text()
        expect(page.locator("#live-transcript .live-status")).to_have_text("stopped · 0 s heard · 0 sentences")
        expect(page.locator("#live-record")).to_be_enabled()
        assert page.locator("#live-downloads a").count() == 0  # nothing to download
        page.close()


def pcm(seconds: float, rate: int) -> bytes:
    """Silence as the page posts it: 16-bit little-endian samples."""
    return np.zeros(int(seconds * rate), "<i2").tobytes()


def test_the_audio_route_takes_posts_in_order_and_refuses_the_rest(server, engine):
    """``POST /live/{token}/audio``: a session's samples go to its stream; an unknown or stopped token is 404, a
    body that is not 16-bit PCM or is over ``MAX_POST_S``, or a missing rate, is 400, a session past its time
    limit 409, each with a sentence; a repeated post is not heard twice, and a gap in the sequence numbers is
    said on the page."""
    session = LiveSession(engine, LIVE)
    url = f"{server.rstrip('/')}/live/{session.token}/audio"
    with httpx.Client(timeout=30) as client:
        def post(body: bytes, **query):
            answer = client.post(url, params=query, content=body)
            return answer.status_code, answer.json()

        assert post(pcm(0.25, 48000), seq=0, rate=48000) == (200, {"seq": 0})
        assert post(pcm(0.25, 48000), seq=0, rate=48000) == (200, {"seq": 0, "repeat": True})
        assert post(pcm(0.25, 16000), seq=3, rate=16000) == (200, {"seq": 3, "missing": "1-2"})
        refused = [post(pcm(MAX_POST_S, 16000) + b"\0\0", seq=4, rate=16000), post(b"\0" * 3, seq=4, rate=16000),
                   post(b"", seq=4, rate=16000), post(pcm(0.25, 16000), seq=4), post(pcm(0.25, 16000), seq=4, rate=1)]
        assert [status for status, _ in refused] == [400] * 5, refused
        assert all(answer["detail"].endswith(".") and "Traceback" not in answer["detail"] for _, answer in refused)
        assert "at most 5 s of audio" in refused[0][1]["detail"] and "2-byte samples" in refused[1][1]["detail"]
        session.posted_s = TIME_LIMIT_S  # an hour recorded
        over = post(pcm(0.25, 16000), seq=4, rate=16000)
        session.posted_s = 0.5
        session.finish()
        stopped = post(pcm(0.25, 16000), seq=4, rate=16000)
        unknown = client.post(url.replace(session.token, "not-a-session"), params={"seq": 0, "rate": 16000},
                              content=pcm(0.25, 16000))
    assert over[0] == 409 and "60-minute limit" in over[1]["detail"], over
    assert stopped[0] == unknown.status_code == 404 and "press Record" in unknown.json()["detail"]
    assert session.ended.wait(30) and session.token not in SESSIONS
    assert session.posted_s == pytest.approx(0.5)  # the repeat not counted, the refused posts neither
    assert "posts 1-2 never came" in session.html()
