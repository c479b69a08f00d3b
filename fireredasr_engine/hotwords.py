"""Hotword lists as users give them: inline text or a file (docs/hotwords.md).

    load_hotwords("张三,李四:2")        # inline: comma- or newline-separated, optional weight as word:2
    load_hotwords("names.txt")          # a file: one word a line, optional weight after a space (word 2.5),
                                        # lines starting with # skipped

Both give ``DecodingOptions.hotwords``: ((word, relative weight), ...). The text format, its limits and
the biasing itself live in the plugin (fireredasr_vllm.hotwords), shared with the server.
"""

from __future__ import annotations

from pathlib import Path

from fireredasr_vllm.hotwords import HotwordError, parse_hotwords

COMMENT = "#"  # a list file's line starting with it is skipped
MAX_LIST_FILE_BYTES = 1 << 20  # a list of the longest allowed length is a few tens of KB


def load_hotwords(spec: str | Path | None) -> tuple[tuple[str, float], ...]:
    """``spec`` as a hotword list: the path of an existing file (UTF-8, one entry a line), else inline text.
    Raises ``HotwordError`` with one sentence naming the problem."""
    if spec is None or not str(spec).strip():
        return ()
    path = Path(str(spec).strip()).expanduser()
    if isinstance(spec, Path) or (len(str(spec)) < 4096 and path.is_file()):
        try:
            if path.stat().st_size > MAX_LIST_FILE_BYTES:
                raise HotwordError(f"hotword file {path} is over {MAX_LIST_FILE_BYTES >> 20} MB: "
                                   "a list holds at most a thousand words, one a line")
            text = path.read_text(encoding="utf-8-sig")
            text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(COMMENT))
        except UnicodeDecodeError:
            raise HotwordError(f"hotword file {path} is not UTF-8 text: save it as UTF-8, one word a line") from None
        except OSError as error:
            raise HotwordError(f"cannot read hotword file {path}: {error.strerror or error}") from None
        try:
            return parse_hotwords(text)
        except HotwordError as error:
            raise HotwordError(f"{path}: {error}") from None
    return parse_hotwords(str(spec))
