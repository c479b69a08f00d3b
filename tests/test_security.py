"""Security of the served workbench (docs/security.md): the page runs nothing and reads nothing outside
``--data-dir``, a login guards the page and its API, and a decompression bomb costs no memory.

One app is launched in-process on the shared engine with a login and, as the worst case, a data folder
that holds Gradio's own upload folder: a visitor's uploads are then inside ``--data-dir`` and the
refusals below come from the confined loader itself, not from the folder check.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
from gradio.utils import get_upload_folder
from gradio_client import Client
from gradio_client.exceptions import AppError

from fireredasr_vllm.audio import DEFAULT_MAX_SECONDS, load_audio, num_speech_tokens
from fireredasr_vllm.serve import SERVED_MODEL_NAME, PlainTextTranscription
from workbench.app import AppOptions, build_app, exposure_warning, launch, parse_credentials
from fireredasr_engine.facade import run_in_thread
from testkit.servers import ServerDidNotStart, free_port, start_server, stop_server, wait_healthy

USER, PASSWORD = "team", "correct horse battery staple"
BOMB_HOURS = 6
RSS_LIMIT_MB = 500
API_KEY = "a-long-random-key"
SERVER_START_TIMEOUT_S = 600  # a cold start on 2 busy cores
NOT_INSIDE = "unknown test set .*: neither a registered name nor a set inside the allowed data folders"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def secured_app(engine, data_dir, tmp_path_factory) -> str:
    """The app with --auth and --data-dir (the data folder and Gradio's upload folder); its URL."""
    options = AppOptions(results_dir=tmp_path_factory.mktemp("secure-results"), auth=((USER, PASSWORD),),
                         data_dirs=(data_dir, Path(get_upload_folder())))
    app = build_app(engine, options)
    _, url, _ = launch(app, options, server_name="127.0.0.1", prevent_thread_lock=True, quiet=True)
    yield url.rstrip("/")
    app.close()


@pytest.fixture(scope="module")
def session(secured_app) -> httpx.Client:
    """An HTTP session logged in through the page's own login route."""
    with httpx.Client(base_url=secured_app, timeout=60) as client:
        response = client.post("/login", data={"username": USER, "password": PASSWORD})
        assert response.status_code == 200 and response.json()["success"]
        yield client


@pytest.fixture(scope="module")
def evaluate_tab(secured_app):
    """``submit(test_set, **more)``: the Evaluate button through the API (gradio_client, logged in)."""
    client = Client(secured_app, auth=(USER, PASSWORD), verbose=False)
    parameters = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/run"]["parameters"]
    empty = {p["parameter_name"]: "" for p in parameters if not p["parameter_has_default"]}  # text boxes

    def submit(test_set: str, limit: int = 1):
        return client.predict(**{**empty, "name": test_set, "count": limit}, api_name="/run")

    return submit


def pipe_folder_bytes(marker: Path, clip: Path) -> bytes:
    """A Kaldi listing that serves as both ``wav.scp`` and ``text``: its audio is a shell command."""
    return f'u1 sh -c "id > {marker}; cat {clip}" |\n'.encode()


def test_pipe_folder_uploaded_through_the_app_is_refused_and_runs_nothing(session, evaluate_tab, demo_clips,
                                                                          tmp_path):
    marker = tmp_path / "pwned"
    listing = pipe_folder_bytes(marker, demo_clips[0])
    response = session.post("/gradio_api/upload", files=[("files", ("wav.scp", listing)),
                                                         ("files", ("text", listing))])
    assert response.status_code == 200
    uploaded = [Path(path) for path in response.json()]
    assert uploaded[0].parent == uploaded[1].parent  # same bytes: one folder, a Kaldi set
    with pytest.raises(AppError, match=r"wav\.scp: an entry is a command.*never run commands"):
        evaluate_tab(str(uploaded[0].parent))
    assert not marker.exists()


def test_the_same_folder_still_loads_on_the_command_line(demo_clips, tmp_path):
    from eval.datasets import load_test_set

    marker = tmp_path / "ran"
    folder = tmp_path / "kaldi"
    folder.mkdir()
    for name in ("wav.scp", "text"):
        (folder / name).write_bytes(pipe_folder_bytes(marker, demo_clips[0]))
    assert len(load_test_set(folder)) == 1 and marker.exists()  # the user's own data: pipes run


def write_manifest(path: Path, audio: Path | str) -> Path:
    path.write_text(json.dumps({"audio": str(audio), "text": "一句话"}, ensure_ascii=False) + "\n")
    return path


@pytest.fixture(scope="module")
def outside(tmp_path_factory, demo_clips) -> Path:
    """A set outside the data folder: a manifest and its clip."""
    folder = tmp_path_factory.mktemp("outside")
    shutil.copy(demo_clips[0], folder / "clip.flac")
    write_manifest(folder / "set.jsonl", "clip.flac")
    return folder


def test_paths_outside_the_data_folder_are_refused(evaluate_tab, data_dir, outside):
    (data_dir / "link").symlink_to(outside, target_is_directory=True)
    (data_dir / "texts").mkdir()
    os.symlink(outside / "set.jsonl", data_dir / "texts" / "metadata.jsonl")  # a symlinked file inside a set
    escapes = {str(outside / "set.jsonl"): "absolute path outside",
               f"{data_dir}/../{outside.name}/set.jsonl": "'..' out of the folder",
               "../" + outside.name: "relative '..'",
               "link/set.jsonl": "symlink to a folder outside",
               str(REPO / "eval" / "demo"): "the bundled folder by its path"}
    for path, what in escapes.items():
        with pytest.raises(AppError, match=NOT_INSIDE):
            evaluate_tab(path)
            pytest.fail(f"{what} was loaded: {path}")
    with pytest.raises(AppError, match="metadata.jsonl leads outside the allowed data folders"):
        evaluate_tab(str(data_dir / "texts"))


def test_manifest_inside_may_not_name_audio_outside(evaluate_tab, data_dir, outside):
    write_manifest(data_dir / "absolute.jsonl", outside / "clip.flac")
    write_manifest(data_dir / "dotdot.jsonl", f"../{outside.name}/clip.flac")
    for name in ("absolute.jsonl", "dotdot.jsonl"):
        with pytest.raises(AppError, match="is outside the allowed data folders"):
            evaluate_tab(name)


def test_a_set_inside_the_data_folder_evaluates(evaluate_tab, data_dir, demo_clips, references):
    shutil.copy(demo_clips[0], data_dir / "clip.flac")
    (data_dir / "inside.jsonl").write_text(json.dumps(
        {"audio": "clip.flac", "text": references[demo_clips[0].stem]}, ensure_ascii=False) + "\n")
    summary, folder, *_ = evaluate_tab("inside.jsonl")
    assert "CER 0.00 %" in summary and "1 utterances, 0 failed" in summary and Path(folder).name.startswith("inside")


def test_login_guards_the_page_and_the_api(secured_app, session):
    anonymous = httpx.Client(base_url=secured_app, timeout=60)
    assert anonymous.get("/config").status_code == 401
    assert anonymous.get("/gradio_api/info").status_code == 401
    assert anonymous.post("/gradio_api/upload", files=[("files", ("a.wav", b"RIFF"))]).status_code == 401
    assert anonymous.post("/gradio_api/queue/join", json={"data": [], "fn_index": 0}).status_code == 401
    page = anonymous.get("/")
    assert "Evaluate" not in page.text  # the login form, not the app
    assert anonymous.post("/login", data={"username": USER, "password": "guess"}).status_code == 400
    with pytest.raises(Exception, match="401|[Uu]nauthori|[Ll]ogin"):
        Client(secured_app, verbose=False)
    assert session.get("/config").status_code == 200 and "Evaluate" in session.get("/config").text


def test_file_route_serves_no_server_file(session):
    """Logged in, the page's file route still serves only uploads, outputs and the results folder."""
    for path in ("/etc/passwd", REPO / "README.md", REPO / "pyproject.toml"):
        assert session.get(f"/gradio_api/file={path}").status_code in (403, 404), path


def test_credentials_and_the_exposure_warning(tmp_path):
    auth_file = tmp_path / "users"
    auth_file.write_text("# team logins\nann:pa:ss\n\nbob:secret\n")
    assert parse_credentials(["cy:x"], auth_file) == (("cy", "x"), ("ann", "pa:ss"), ("bob", "secret"))
    with pytest.raises(ValueError, match="USER:PASSWORD"):
        parse_credentials(["nopassword"])
    assert "WITHOUT a login" in exposure_warning("0.0.0.0", AppOptions())
    assert exposure_warning("0.0.0.0", AppOptions(auth=(("a", "b"),))) is None
    assert exposure_warning("127.0.0.1", AppOptions()) is None and exposure_warning("::1", AppOptions()) is None


MEASURE = textwrap.dedent("""
    import resource, sys
    from fireredasr_vllm import audio
    import soundfile, soxr, av  # imported before the measurement
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        audio.load_audio(sys.argv[1], max_seconds=float(sys.argv[2]), long_audio=sys.argv[3] == "long")
        print("accepted")
    except audio.AudioError as error:
        print(error)
    print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
""")


@pytest.fixture(scope="module")
def bombs(tmp_path_factory) -> dict[str, Path]:
    """Hours of silence in ~1 MB of FLAC; once with its length in the header, once without (a streamed
    FLAC's STREAMINFO may say 'unknown', so only the decoded samples can tell)."""
    folder = tmp_path_factory.mktemp("bombs")
    honest = folder / "silence.flac"
    with sf.SoundFile(honest, "w", samplerate=16000, channels=1, format="FLAC") as out:
        ten_minutes = np.zeros(16000 * 600, np.int16)
        for _ in range(BOMB_HOURS * 6):
            out.write(ten_minutes)
    data = bytearray(honest.read_bytes())
    data[21] &= 0xF0  # STREAMINFO's 36-bit total-samples field (bytes 21-25): 0 = unknown
    data[22:26] = bytes(4)
    unknown = folder / "silence-no-length.flac"
    unknown.write_bytes(bytes(data))
    assert honest.stat().st_size < 2 << 20 and sf.info(unknown).frames != sf.info(honest).frames
    return {"honest": honest, "unknown": unknown}


@pytest.mark.parametrize("bomb", ["honest", "unknown"])
@pytest.mark.parametrize("mode, limit, message", [
    ("model", DEFAULT_MAX_SECONDS, r"longer than the model's 30 s limit"),
    ("long", 3600.0, r"longer than the 60 min limit of long-audio mode"),
])
def test_decompression_bomb_is_refused_in_bounded_memory(bombs, bomb, mode, limit, message):
    result = subprocess.run([sys.executable, "-c", MEASURE, str(bombs[bomb]), str(limit), mode],
                            capture_output=True, text=True, check=True, cwd=REPO)
    refusal, growth_mb = result.stdout.strip().splitlines()
    assert refusal.startswith(f"{bombs[bomb]}: ") and re.search(message, refusal), refusal
    if bomb == "honest":  # refused from the header
        assert f": {BOMB_HOURS * 60:.1f} min is" in refusal or f": {BOMB_HOURS * 3600:.1f} s is" in refusal
    else:  # refused once the decoded samples pass the limit
        assert "(decoding stopped at" in refusal
    assert int(growth_mb) < RSS_LIMIT_MB, f"peak RSS grew by {growth_mb} MB"


def test_engine_refuses_the_bomb_before_decoding_and_keeps_serving(engine, bombs, demo_clips):
    prepared = engine.prepare(bombs["honest"], id="bomb")
    assert prepared.error == ("bomb: 21600.0 s is longer than the model's 30 s limit; split it first or use "
                              "long-audio mode (long_audio=True / --long-audio)")
    assert "long-audio mode" in engine.prepare(bombs["unknown"], id="bomb", long_audio=True).error
    assert engine.transcribe(demo_clips[0]).text


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory):
    """``fireredasr-serve --api-key`` on a free loopback port (vLLM's own key check); yields its URL."""
    port = free_port()
    log = tmp_path_factory.mktemp("keyed-server") / "server.log"
    process = start_server(["--host", "127.0.0.1", "--port", str(port), "--api-key", API_KEY], log)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(url, process, log, SERVER_START_TIMEOUT_S)
        except ServerDidNotStart as error:
            pytest.fail(f"server did not start: {error}")
        yield url
    finally:
        stop_server(process)  # the api_server and its engine process


def test_server_with_api_key_answers_401_without_it(keyed_server, demo_clips, references):
    clip = demo_clips[0]
    form = {"model": SERVED_MODEL_NAME, "max_completion_tokens": str(num_speech_tokens(len(load_audio(clip))))}

    def post(headers: dict) -> httpx.Response:
        return httpx.post(f"{keyed_server}/v1/audio/transcriptions", headers=headers, data=form,
                          files={"file": (clip.name, clip.read_bytes())}, timeout=300)

    assert post({}).status_code == 401
    assert post({"Authorization": "Bearer wrong-key"}).status_code == 401
    assert httpx.get(f"{keyed_server}/v1/models", timeout=30).status_code == 401
    answer = post({"Authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 200
    assert answer.json()["text"].rstrip("\ufffd") == references[clip.stem]
    form["response_format"] = "verbose_json"  # answered by fireredasr-serve's segments middleware, ahead of the check
    assert post({}).status_code == 401 and "segments" not in post({"Authorization": "Bearer wrong-key"}).text
    answer = post({"Authorization": f"Bearer {API_KEY}"})
    assert answer.status_code == 200 and len(answer.json()["segments"]) == 1


def test_transcription_middleware_reads_at_most_the_upload_limit():
    """fireredasr-serve's text/plain middleware reads the body before vLLM's key check: an endless
    upload is cut off at vLLM's file limit with a 413, and the request never reaches vLLM."""
    async def vllm_app(scope, receive, send):
        raise AssertionError("an over-limit body reached vLLM")

    chunks = 0

    async def endless_body():
        nonlocal chunks
        chunks += 1
        return {"type": "http.request", "body": bytes(1 << 20), "more_body": True}

    sent = []

    async def send(message):
        sent.append(message)

    middleware = PlainTextTranscription(vllm_app)
    run_in_thread(lambda: middleware({"type": "http", "path": "/v1/audio/transcriptions"}, endless_body, send))
    assert sent[0]["status"] == 413 and b"VLLM_MAX_AUDIO_CLIP_FILESIZE_MB" in sent[1]["body"]
    assert chunks == (middleware.max_body >> 20) + 1
