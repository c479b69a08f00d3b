"""fireredasr-serve: vLLM's OpenAI server on the default (trained) model, driven with the ``openai`` client."""

import openai
import pytest

from fireredasr_vllm.audio import load_audio, num_speech_tokens
from fireredasr_vllm.cpu_backend import cpu_thread_binding
from fireredasr_vllm.engine_death import MIDDLEWARE as ENGINE_STOPPED_MIDDLEWARE
from fireredasr_vllm.serve import (PLAIN_TEXT_MIDDLEWARE, SEGMENTED_MIDDLEWARE, SERVED_MODEL_NAME, server_command,
                                   wants_plain_text)


@pytest.fixture(scope="module")
def asr_server(asr_servers) -> str:
    """The session's first transcription server (tests/conftest.py), shared with test_scale_out."""
    return asr_servers.url(0)


@pytest.fixture(scope="module")
def client(asr_server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{asr_server}/v1", api_key="unused", max_retries=0, timeout=300)


def transcribe(client, path, **kwargs):
    """Bound the output like the facade does (vLLM's server does not apply the official length rule)."""
    limit = num_speech_tokens(len(load_audio(path)))
    with open(path, "rb") as f:
        return client.audio.transcriptions.create(model=SERVED_MODEL_NAME, file=f, **kwargs,
                                                  extra_body={"max_completion_tokens": limit})


def test_server_command_resolves_model_and_passes_arguments_through(tiny_converted_dir):
    command, env = server_command(["--model", "tiny", "--port", "9", "--max-num-seqs", "4"], cpu=True)
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    assert command[command.index("--model") + 1] == str(tiny_converted_dir)
    assert command[-4:] == ["--port", "9", "--max-num-seqs", "4"] and "--enforce-eager" in command
    assert env["VLLM_CPU_KVCACHE_SPACE"]
    assert "--enforce-eager" not in server_command(["--no-enforce-eager"], cpu=True)[0][:-1]
    assert "--no-enable-chunked-prefill" in command  # seeded sampling: see test_engine_sampling
    assert "--no-enable-chunked-prefill" not in server_command(["--port", "9"], cpu=False)[0]
    middlewares = [command[i + 1] for i, flag in enumerate(command) if flag == "--middleware"]
    assert middlewares == [SEGMENTED_MIDDLEWARE, ENGINE_STOPPED_MIDDLEWARE, PLAIN_TEXT_MIDDLEWARE]  # the last is
    # outermost: the size check first; the engine-stopped notice outside the segmented route
    assert env["VLLM_KEEP_ALIVE_ON_ENGINE_DEATH"] == "1"


def test_data_parallel_flag_reaches_vllm_with_one_core_group_per_engine(monkeypatch):
    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    command, env = server_command(["--data-parallel-size", "2", "--port", "9"], cpu=True)
    assert command[command.index("--data-parallel-size") + 1] == "2"
    assert command[command.index("--tensor-parallel-size") + 1] == "1"
    assert env["VLLM_CPU_OMP_THREADS_BIND"] == cpu_thread_binding(2) and cpu_thread_binding(2).count("|") == 1
    assert "VLLM_CPU_OMP_THREADS_BIND" not in server_command(["--port", "9"], cpu=True)[1]
    assert server_command(["-dp", "2"], cpu=False)[1].get("VLLM_CPU_OMP_THREADS_BIND") is None  # GPUs: vLLM's own


def test_transcription_matches_the_engine_and_defaults_to_mandarin(client, engine, demo_clips, references):
    # The server's streaming detokenizer drops an unfinished UTF-8 character at the very end (a model
    # can end on one); the facade's decode shows it as U+FFFD.
    expected = engine.transcribe(demo_clips[0]).text.rstrip("\ufffd")
    assert expected == references[demo_clips[0].stem]
    assert transcribe(client, demo_clips[0]).text.rstrip("\ufffd") == expected  # language omitted: zh
    assert transcribe(client, demo_clips[0], language="zh").text.rstrip("\ufffd") == expected
    plain = transcribe(client, demo_clips[0], response_format="text")
    assert plain.rstrip("\ufffd") == expected  # text/plain, not JSON


def test_unsupported_options_get_clear_400s(client, demo_clips):
    with pytest.raises(openai.BadRequestError, match="Unsupported language: 'xx'"):
        transcribe(client, demo_clips[0], language="xx")
    with pytest.raises(openai.BadRequestError, match="do not support diarized_json"):  # verbose_json: test_segmented
        transcribe(client, demo_clips[0], response_format="diarized_json")


@pytest.mark.parametrize("name, data, message", [
    ("notes.wav", "这不是音频\n".encode() * 50, "Invalid or corrupted audio data"),
    ("empty.wav", b"", "Invalid or corrupted audio data"),
    ("random.flac", bytes(range(256)) * 40, "Invalid or corrupted audio data"),
])
def test_bad_file_gets_4xx_and_the_server_keeps_serving(client, demo_clips, name, data, message):
    with pytest.raises(openai.BadRequestError, match=message) as error:
        client.audio.transcriptions.create(model=SERVED_MODEL_NAME, file=(name, data))
    assert error.value.status_code == 400
    assert transcribe(client, demo_clips[1]).text


def test_plain_text_detection_reads_only_the_form_field():
    form = (b'--b\r\nContent-Disposition: form-data; name="response_format"\r\n\r\ntext\r\n--b\r\n'
            b'Content-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\nRIFF...\r\n--b--\r\n')
    assert wants_plain_text(form)
    assert not wants_plain_text(form.replace(b"\r\n\r\ntext\r\n", b"\r\n\r\njson\r\n"))
    assert not wants_plain_text(b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\ntext\r\n--b--')
