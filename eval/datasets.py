"""Test sets by name or path -> utterances (id, audio bytes or path, reference text, duration).

Registered sets are parquet files on the Hugging Face hub at pinned revisions; the bundled ``demo``
set is a parquet file in this repository. Both are read the same way once their files are located:
``datasets.load_dataset("parquet", data_files=...)``. Hub files are located by downloading them into
the hub cache (``huggingface_hub.snapshot_download``, which also works offline from that cache) or,
when streaming, as ``hf://`` URLs.

Local paths may be a parquet file, a folder of parquet files (split inferred from file names, as on
the hub), an audiofolder-style folder (audio files + ``metadata.csv``/``metadata.jsonl`` with a
``file_name`` column), a Kaldi folder (``wav.scp`` + ``text``) or a JSONL/CSV manifest (``audio`` or
``audio_filepath`` + a text column); a local set is scored as Mandarin (CER) unless its first 200
references hold no CJK character, then as English (WER).

Hotword lists (contextual biasing, docs/hotwords.md): a ``hotwords`` column holds each utterance's list
(a list of strings, or one string separated by ``,`` or ``|``); a ``hotwords.txt`` beside the set (in its
folder, or the folder of its file) holds one list for the whole set, one word a line with an optional
weight (``word 2.5``). A registered set names its list file in ``Source.hotwords_file``.

The audio column is cast to ``Audio(decode=False)``: utterances carry the encoded bytes or a file
path, and decoding happens in the engine.

Sets loaded for other people (the web app) pass ``allowed_dirs``: local sets only inside those folders,
every file read (manifest, audio) inside them as a real path, and nothing run (no Kaldi pipes).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence
from urllib.parse import quote

import pyarrow.compute as pc
import soundfile as sf
from huggingface_hub import constants, snapshot_download
from huggingface_hub.utils import get_session
from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

from eval.normalize import CJK_CHAR
from eval.bundled import DEMO_PARQUET, HELDOUT_PARQUET, HOTWORD_LIST_10, HOTWORD_LIST_100
from eval.errors import UserError
from fireredasr_vllm.audio import load_kaldi_audio, read_kaldi_table
from fireredasr_vllm.hotwords import HotwordError
from fireredasr_engine.hotwords import load_hotwords

TEXT_COLUMNS = ("text", "sentence", "normalized_text", "transcript", "transcription")
AUDIO_COLUMNS = ("audio", "audio_filepath", "file_name", "audio_path", "path", "wav", "file")
ID_COLUMNS = ("id", "utt_id", "uttid", "key", "name", "sid")
HOTWORD_COLUMN = "hotwords"
HOTWORD_FILE = "hotwords.txt"
HOTWORD_SEPARATORS = re.compile(r"[,|，]")
# Where the aishell1-hotword set is read from (it is not on the Hugging Face hub).
AISHELL1_HOTWORD_DIR = Path(os.environ.get("FIREREDASR_AISHELL1_HOTWORD",
                                           Path.home() / ".cache" / "fireredasr" / "aishell1-hotword"))
STREAM_SHUFFLE_BUFFER = 1000


class DatasetUnavailable(RuntimeError):
    """A test set that cannot be loaded; the message names it and how to use a local copy."""


class DatasetRefused(DatasetUnavailable):
    """A set that ``allowed_dirs`` forbids: outside the allowed folders, or it would run a command."""


@dataclass(frozen=True)
class Utterance:
    id: str
    audio: object  # encoded bytes or a file path here; the engine also takes 16 kHz arrays
    text: str
    duration: float | None
    hotwords: tuple[str, ...] | None = None  # this utterance's own list (a ``hotwords`` column), else None


@dataclass(frozen=True)
class Source:
    """A registered test set: parquet files matching ``data_files`` in ``repo`` at ``revision``."""

    description: str
    data_files: str
    repo: str | None = None  # None: ``data_files`` is a path in this repository
    revision: str | None = None
    language: str = "zh"
    metric: str = "cer"
    id_columns: tuple[str, ...] = ID_COLUMNS
    published: tuple[tuple[str, float], ...] = ()  # (system, error rate %) as published, for orientation
    hotwords_file: str | None = None  # the set's hotword list (one word a line, optional weight)
    fetch: str | None = None  # a local-only set (``repo`` None, not bundled): how to get it, when it is absent


# The FireRedASR README's own numbers (beam 3, repetition penalty 3; its own normalization): a run with
# --decoding official on the real release should land near them.
def fireredasr_readme(llm_l: float, aed_l: float) -> tuple[tuple[str, float], ...]:
    return (("FireRedASR-LLM-L", llm_l), ("FireRedASR-AED-L", aed_l))


PUBLISHED_SOURCE = "FireRedASR README, beam 3 + repetition penalty 3, its own text normalization"

REGISTRY = {
    "demo": Source("30 synthesized Mandarin clips bundled with this repository (espeak-ng)",
                   str(DEMO_PARQUET)),
    "demo-heldout": Source("30 synthesized clips of sentences the trained model never heard (its honest CER)",
                           str(HELDOUT_PARQUET)),
    # The demo-heldout clips with hotword lists (testkit/hotword_set.py): 10 of their words, and those 10
    # plus 90 distractors from the training sentences.
    "demo-hotword": Source("demo-heldout with a list of 10 of its words (contextual biasing)", str(HELDOUT_PARQUET),
                           hotwords_file=str(HOTWORD_LIST_10)),
    "demo-hotword-100": Source("demo-heldout with 100 listed words: its 10 plus 90 distractors", str(HELDOUT_PARQUET),
                               hotwords_file=str(HOTWORD_LIST_100)),
    # The SeACo-Paraformer hotword test set on ModelScope (not on the Hugging Face hub): a Kaldi folder
    # (wav.scp, text) with its hotwords.txt, converted once by the user.
    "aishell1-hotword": Source(
        "AISHELL-1 test named-entity subset with its hotword list (SeACo-Paraformer's test set; local copy)",
        str(AISHELL1_HOTWORD_DIR), hotwords_file=str(AISHELL1_HOTWORD_DIR / HOTWORD_FILE),
        fetch="modelscope download --dataset speech_asr/speech_asr_aishell1_hotwords_testsets --local_dir SRC, "
              "then write wav.scp, text (from its .csv and the unzipped audio) and hotwords.txt (its hotword.txt) "
              f"into {AISHELL1_HOTWORD_DIR} (docs/hotwords.md, 'Test sets with lists')"),
    # Revision = the "Upload dataset" commit (2024-09-02) seen on the hub; README: 7,176 test rows.
    "aishell": Source("AISHELL-1 test: 7,176 utterances, ~10 h of read Mandarin",
                      "data/test-*.parquet", "TwinkStart/AISHELL-1", "e2582a0e9ebef41846079d9d7df1298b458ef27b",
                      published=fireredasr_readme(0.76, 0.55)),
    # Revision = the "Upload dataset" commit; its README lists splits test_net and test_meeting.
    "wenetspeech-net": Source("WenetSpeech test_net: 24,774 utterances of Internet Mandarin",
                              "data/test_net-*.parquet", "TwinkStart/WenetSpeech",
                              "a5cfb8be0cdff4b90c97813a358ffc925b3e6b10", published=fireredasr_readme(4.60, 4.88)),
    "wenetspeech-meeting": Source("WenetSpeech test_meeting: 8,370 utterances of far-field meeting Mandarin",
                                  "data/test_meeting-*.parquet", "TwinkStart/WenetSpeech",
                                  "a5cfb8be0cdff4b90c97813a358ffc925b3e6b10",
                                  published=fireredasr_readme(4.67, 4.76)),
    # No revision or file layout recorded in the research notes: "main", push_to_hub naming assumed.
    "kespeech": Source("KeSpeech test: Mandarin and eight Chinese dialects", "data/test-*.parquet",
                       "TwinkStart/kespeech", "main", published=fireredasr_readme(3.56, 4.48)),
    # The script loader fails with datasets>=4; the hub's parquet conversion branch holds the same rows.
    # FLEURS ids repeat across speakers of one sentence, so ids come from the audio file names.
    "fleurs-zh": Source("FLEURS cmn_hans_cn test: 945 utterances of read Mandarin", "cmn_hans_cn/test/*.parquet",
                        "google/fleurs", "refs/convert/parquet", id_columns=()),
    # Parquet conversion branch (config/split/NNNN.parquet); the card was read at 549a9ef24620.
    "librispeech-clean": Source("LibriSpeech test-clean: 2,620 utterances of read English",
                                "clean/test/*.parquet", "openslr/librispeech_asr", "refs/convert/parquet",
                                language="en", metric="wer", published=fireredasr_readme(1.73, 1.93)),
    "librispeech-other": Source("LibriSpeech test-other: 2,939 utterances of harder read English",
                                "other/test/*.parquet", "openslr/librispeech_asr", "refs/convert/parquet",
                                language="en", metric="wer", published=fireredasr_readme(3.67, 4.44)),
}


@dataclass
class TestSet:
    """Utterances of one test set plus what is needed to score and record them; re-iterable."""

    __test__ = False  # not a pytest class

    name: str
    language: str
    metric: str
    source: str
    revision: str | None
    utterances: Iterable[Utterance]
    size: int | None = None
    published: tuple[tuple[str, float], ...] = ()
    hotwords: tuple[tuple[str, float], ...] = ()  # the set's list (hotwords.txt), (word, weight) pairs

    @property
    def has_hotwords(self) -> bool:
        """Whether the set carries lists: its own ``hotwords.txt`` or a ``hotwords`` column."""
        return bool(self.hotwords) or getattr(self.utterances, "has_column", False)

    def __iter__(self) -> Iterator[Utterance]:
        return iter(self.utterances)

    def __len__(self) -> int:
        if self.size is None:
            raise TypeError(f"{self.name}: size unknown while streaming")
        return self.size

    def describe(self) -> dict:
        """The set as run and sweep manifests record it."""
        return {"name": self.name, "source": self.source, "revision": self.revision, "language": self.language,
                "metric": self.metric, "size": self.size, "published": [list(entry) for entry in self.published],
                "hotwords": [list(entry) for entry in self.hotwords]}


def list_test_sets() -> list[tuple[str, str]]:
    """(name, description) of every registered test set."""
    return [(name, source.description) for name, source in REGISTRY.items()]


def load_test_set(name_or_path: str | os.PathLike, *, limit: int | None = None, shuffle_seed: int | None = None,
                  max_duration: float | None = None, streaming: bool | None = None, split: str | None = None,
                  allowed_dirs: Sequence[str | os.PathLike] | None = None) -> TestSet:
    """Load a registered set or a local path; keep the first ``limit`` utterances of at most
    ``max_duration`` seconds, after shuffling with ``shuffle_seed`` if given.

    ``streaming`` applies to hub sets; by default they stream when ``limit`` is set and are otherwise
    downloaded into the hub cache once. ``split`` picks a split of a local folder that has several.
    ``allowed_dirs`` (for a service, the web app): local sets only inside these folders (a relative path
    is looked up in each), every file read inside them after resolving ``..`` and symlinks, and no Kaldi
    ``cmd |`` or ``ark:`` entries (nothing is run); raises ``DatasetRefused`` otherwise. ``None`` (the
    command line, where the user owns the data): any path, pipes included.
    """
    name = str(name_or_path)
    roots = None if allowed_dirs is None else [Path(os.path.realpath(d)) for d in allowed_dirs]
    if name in REGISTRY:
        source = REGISTRY[name]
        table, base_dir = _load_registered(name, source, streaming, limit), None
        where, revision, id_columns = _describe(source), source.revision, source.id_columns
        listed = source.hotwords_file and Path(source.hotwords_file).is_file()
        hotwords = read_hotword_list(source.hotwords_file) if listed else ()
    elif roots is not None or os.path.exists(name):
        path = Path(name).resolve() if roots is None else confined_path(name, roots)
        table, base_dir = _load_local(path, split, roots)
        name, where, revision, id_columns = path.name, str(path), None, ID_COLUMNS
        list_file = base_dir / HOTWORD_FILE
        if list_file.is_file():
            _check_readable(list_file, roots, path)
        hotwords = read_hotword_list(list_file) if list_file.is_file() else ()
    else:
        raise DatasetUnavailable(
            f"unknown test set {name!r}: neither a registered name ({', '.join(REGISTRY)}) nor an existing path")
    table, columns = _standardize(table, id_columns, where)
    if roots is not None and base_dir is not None:
        _check_audio_paths(table, base_dir, roots, where)
    if base_dir is None:
        language, metric = source.language, source.metric
    else:
        language, metric = _guess_language(table.select(range(min(len(table), 200)))[columns.text])
    table = _select(table, base_dir, limit, shuffle_seed, max_duration)
    return TestSet(name, language, metric, where, revision, _Utterances(table, columns, base_dir),
                   size=len(table) if hasattr(table, "__len__") else None,
                   published=source.published if base_dir is None else (), hotwords=hotwords)


def read_hotword_list(path: Path) -> tuple[tuple[str, float], ...]:
    """A set's list file, read as ``--hotwords FILE`` reads one (fireredasr_engine.hotwords); a list that
    cannot be used is a ``UserError`` naming the file."""
    try:
        return load_hotwords(Path(path))
    except HotwordError as error:
        raise UserError(str(error)) from None


def split_hotwords(value) -> tuple[str, ...] | None:
    """A ``hotwords`` cell as words: a list, or one string separated by ``,`` / ``|``; None when empty."""
    if value is None:
        return None
    words = HOTWORD_SEPARATORS.split(value) if isinstance(value, str) else [str(v) for v in value]
    return tuple(w.strip() for w in words if w and w.strip())


def confined_path(name: str, roots: Sequence[Path]) -> Path:
    """The real path of a local set inside one of ``roots``; relative names are looked up in each root."""
    if not roots:
        raise DatasetRefused(f"unknown test set {name!r}: not a registered name ({', '.join(REGISTRY)}); this app "
                             "loads local sets only from folders its operator allows (python -m workbench --data-dir)")
    candidates = [Path(name)] if os.path.isabs(name) else [root / name for root in roots]
    for candidate in candidates:
        real = Path(os.path.realpath(candidate))
        if real.exists() and _inside(real, roots):
            return real
    raise DatasetRefused(f"unknown test set {name!r}: neither a registered name nor a set inside the allowed data "
                         f"folders ({', '.join(map(str, roots))}; --data-dir); paths that leave them through '..' "
                         "or symlinks are refused")


def _inside(path: Path | str, roots: Sequence[Path]) -> bool:
    real = Path(os.path.realpath(path))
    return any(real.is_relative_to(root) for root in roots)


def _check_readable(path: Path, roots: Sequence[Path] | None, where: Path) -> None:
    """Refuse a file that a confined load would read outside ``roots`` (a symlink leading out)."""
    if roots is not None and not _inside(path, roots):
        raise DatasetRefused(f"{where}: {path.name} leads outside the allowed data folders (--data-dir)")


def _check_audio_paths(table, base_dir: Path, roots: Sequence[Path], where: str) -> None:
    """Every row without embedded bytes must name an audio file inside ``roots`` (read from the arrow
    columns, without touching the audio)."""
    for batch in table.select_columns(["audio"]).with_format("arrow").iter(batch_size=4096):
        audio = batch.column("audio")
        embedded = pc.fill_null(pc.binary_length(pc.struct_field(audio, "bytes")), 0).to_pylist()
        for path, size in zip(pc.struct_field(audio, "path").to_pylist(), embedded):
            if not size and not _inside(_resolve(path or "", base_dir), roots):
                raise DatasetRefused(f"{where}: audio {path!r} is outside the allowed data folders (--data-dir); "
                                     "a set served by this app may only use audio inside them")


def _guess_language(texts: list) -> tuple[str, str]:
    """(language, metric) of a local set: Mandarin/CER if any reference holds a CJK character."""
    return ("zh", "cer") if any(CJK_CHAR.search(text or "") for text in texts) else ("en", "wer")


def _describe(source: Source) -> str:
    if source.repo is None:
        return source.description
    return f"hf://datasets/{source.repo}@{source.revision}/{source.data_files}"


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    return constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


class _OneRetryNotice(logging.Filter):
    """Drops the hub client's per-attempt retry warnings (two lines a try, URL included); the first one
    becomes a single line saying what is happening, since the retries take ~20 s before the real answer."""

    def __init__(self, name: str):
        super().__init__()
        self.set_name, self.told = name, False

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.told:
            print(f"the Hugging Face hub does not answer for test set {self.set_name!r}: retrying for up to "
                  "~25 s...", file=sys.stderr, flush=True)
            self.told = True
        return False


@contextlib.contextmanager
def _quiet_hub_retries(name: str):
    hub_http = logging.getLogger("huggingface_hub.utils._http")  # where huggingface_hub's http_backoff logs
    notice = _OneRetryNotice(name)
    hub_http.addFilter(notice)
    try:
        yield
    finally:
        hub_http.removeFilter(notice)


def _load_registered(name: str, source: Source, streaming: bool | None, limit: int | None):
    with _quiet_hub_retries(name):
        return _fetch_registered(name, source, streaming, limit)


class HubUnreachable(OSError):
    """The hub does not answer at all (connection refused, DNS, proxy, timeout)."""


def _hub_answers(timeout_s: float = 5.0) -> bool:
    """One request to the hub's front page through the hub client's own session (its proxies and certificates):
    any HTTP answer is yes. Without it, an unreachable hub costs ~25 s of the client's retries before the answer."""
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout_s)
        return True
    except Exception:  # whatever the HTTP stack raises for a hub it cannot reach
        return False


def _fetch_registered(name: str, source: Source, streaming: bool | None, limit: int | None):
    if source.repo is None:
        if source.fetch is not None:  # a local-only set: its folder, once the user has made it
            if not Path(source.data_files).exists():
                raise DatasetUnavailable(f"test set {name!r} is not here: it is not on the Hugging Face hub, so it is "
                                         f"read from a local copy in {source.data_files}.\nMake it: {source.fetch}\n"
                                         f"or evaluate any copy:  python -m eval.run DIR")
            table, _ = _load_local(Path(source.data_files), None, None)
            return table
        return _load_parquet([source.data_files], streaming=bool(streaming))
    offline = _hub_offline()
    unreachable = not offline and not _hub_answers()  # then only the hub cache can serve the set
    if streaming is None:
        streaming = limit is not None and not offline and not unreachable
    try:
        if streaming:
            if offline:
                raise OSError("streaming needs the hub but HF_HUB_OFFLINE is set")
            if unreachable:
                raise HubUnreachable("streaming needs the hub")
            url = f"hf://datasets/{source.repo}@{quote(source.revision, safe='')}/{source.data_files}"
            return _load_parquet([url], streaming=True)
        try:
            folder = Path(snapshot_download(source.repo, repo_type="dataset", revision=source.revision,
                                            allow_patterns=[source.data_files],
                                            local_files_only=offline or unreachable))
        except LocalEntryNotFoundError:
            if not offline:
                raise
            raise OSError("HF_HUB_OFFLINE is set and the files are not in the hub cache") from None
        files = sorted(str(f) for f in folder.glob(source.data_files))
        if not files:
            raise FileNotFoundError(f"no files match {source.data_files}")
        return _load_parquet(files, streaming=False)
    except Exception as error:  # network down, DNS, 401/404, gated, offline: whatever the hub client raised
        raise DatasetUnavailable(
            f"test set {name!r} ({source.repo} at revision {source.revision}) is unavailable: "
            f"{_hub_failure(error)}\n"
            f"Download it where the hub is reachable:\n"
            f"  hf download {source.repo} --repo-type dataset --revision {source.revision} "
            f"--include '{source.data_files}' --local-dir DIR\n"
            f"then evaluate the local copy:  python -m eval.run DIR") from None


def _hub_failure(error: Exception) -> str:
    """Why the hub did not deliver, in one line (the client's errors span many, with URLs and advice)."""
    if isinstance(error, GatedRepoError):
        return "the dataset is gated: accept its conditions on its hub page, then log in (hf auth login)"
    if isinstance(error, RepositoryNotFoundError):
        return "the hub has no such dataset, or it needs a login (hf auth login)"
    if isinstance(error, (LocalEntryNotFoundError, HubUnreachable)):
        return "the hub cannot be reached and the files are not in the hub cache"
    first_line = (str(error).strip().splitlines() or [""])[0]
    return f"{type(error).__name__}: {first_line}" if first_line else type(error).__name__


def _load_parquet(files: list[str], streaming: bool):
    import datasets  # lazy: 1 s to import, and not on the GPU bundle (bench/), which never loads a set

    return datasets.load_dataset("parquet", data_files={"test": files}, split="test", streaming=streaming)


def _load_local(path: Path, split: str | None, roots: Sequence[Path] | None):
    """(table, folder that relative audio paths are resolved against); ``roots``: see ``load_test_set``."""
    import datasets

    try:
        if path.is_file():
            kind = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".csv": "csv"}.get(path.suffix.lower())
            if kind is None:
                raise DatasetUnavailable(f"{path}: unsupported file type; use .parquet, .jsonl/.json or .csv")
            return datasets.load_dataset(kind, data_files={"test": str(path)}, split="test"), path.parent
        if (path / "wav.scp").is_file() and (path / "text").is_file():
            return _load_kaldi(path, roots), path
        for metadata, kind in (("metadata.jsonl", "json"), ("metadata.csv", "csv")):
            if (path / metadata).is_file():
                _check_readable(path / metadata, roots, path)
                table = datasets.load_dataset(kind, data_files={"test": str(path / metadata)}, split="test")
                return table, path
        files = _parquet_files(path, split)
        for file in files:
            _check_readable(Path(file), roots, path)
        return _load_parquet(files, streaming=False), path
    except (OSError, ValueError, datasets.exceptions.DatasetGenerationError) as error:
        raise DatasetUnavailable(f"{path}: cannot be read as a test set: {error}") from None


def _parquet_files(folder: Path, split: str | None) -> list[str]:
    """Parquet files of one split, with splits named as on the hub (``test-00000-of-00001``, ``test/``)."""
    from datasets.data_files import DataFilesDict, get_data_patterns

    try:
        splits = DataFilesDict.from_patterns(get_data_patterns(str(folder)), base_path=str(folder))
    except FileNotFoundError:  # no data files at all
        splits = {}
    splits = {name: [f for f in files if f.endswith(".parquet")] for name, files in splits.items()}
    splits = {name: files for name, files in splits.items() if files}
    if not splits:
        raise DatasetUnavailable(
            f"{folder}: no parquet files, wav.scp + text, or metadata.csv/metadata.jsonl found")
    if split is None:
        if "test" not in splits and len(splits) > 1:
            raise DatasetUnavailable(f"{folder}: several splits ({', '.join(sorted(splits))}); choose one with split=")
        split = "test" if "test" in splits else next(iter(splits))
    if split not in splits:
        raise DatasetUnavailable(f"{folder}: no split {split!r}; found {', '.join(sorted(splits))}")
    return list(splits[split])


def _load_kaldi(folder: Path, roots: Sequence[Path] | None):
    """wav.scp + text; wav.scp entries may be paths, ``cmd |`` pipes or ``file.ark:offset`` (kaldiio),
    the last two only when not confined to ``roots`` (they run commands or read arbitrary archives)."""
    import datasets

    for listing in ("text", "wav.scp"):
        _check_readable(folder / listing, roots, folder)
    texts = {key: value for _, key, value in read_kaldi_table(folder / "text")}
    rows = {"id": [], "audio": [], "text": []}
    for _, utt_id, value in read_kaldi_table(folder / "wav.scp"):
        if utt_id in texts:
            rows["id"].append(utt_id)
            rows["audio"].append(_kaldi_audio(value, folder, roots is not None))
            rows["text"].append(texts[utt_id])
    if not rows["id"]:
        raise DatasetUnavailable(f"{folder}: no utterance id appears in both wav.scp and text")
    return datasets.Dataset.from_dict(rows)


def _kaldi_audio(value: str, folder: Path, confined: bool) -> dict:
    path = _resolve(value, folder)
    if os.path.isfile(path):
        return {"bytes": None, "path": path}
    if confined:
        kind = "a command (`cmd |`)" if value.rstrip().endswith("|") else "not an audio file (an `ark:` entry?)"
        raise DatasetRefused(f"{folder / 'wav.scp'}: an entry is {kind}; sets loaded here never run commands "
                             "or read archives: convert them to audio files, or evaluate the set on the command "
                             "line (python -m eval.run DIR)")
    samples, rate = load_kaldi_audio(value)
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format="WAV")
    return {"bytes": buffer.getvalue(), "path": None}


@dataclass(frozen=True)
class _Columns:
    text: str
    id: str | None
    hotwords: str | None = None


def _standardize(table, id_columns: tuple[str, ...], where: str):
    """Rename the audio column to ``audio``, cast it to undecoded Audio, and pick text/id columns."""
    import datasets

    names = list(table.column_names or [])
    audio = next((c for c in AUDIO_COLUMNS if c in names), None)
    text = next((c for c in TEXT_COLUMNS if c in names), None)
    for found, kind, candidates in ((audio, "audio", AUDIO_COLUMNS), (text, "text", TEXT_COLUMNS)):
        if found is None:
            raise DatasetUnavailable(f"{where}: no {kind} column ({', '.join(candidates)}); "
                                     f"columns are {', '.join(names)}")
    if audio != "audio":
        table = table.rename_column(audio, "audio")
    feature = table.features["audio"] if table.features else None
    if isinstance(feature, datasets.Value):  # paths: large_string has no cast to Audio, string has
        table = table.cast_column("audio", datasets.Value("string"))
    table = table.cast_column("audio", datasets.Audio(decode=False))
    id_column = next((c for c in id_columns if c in names and c != audio), None)
    return table, _Columns(text=text, id=id_column, hotwords=HOTWORD_COLUMN if HOTWORD_COLUMN in names else None)


def _select(table, base_dir: Path | None, limit: int | None, shuffle_seed: int | None, max_duration: float | None):
    """Shuffle, then drop clips longer than ``max_duration``, then keep the first ``limit``."""
    streaming = not hasattr(table, "__len__")
    if shuffle_seed is not None:
        table = table.shuffle(seed=shuffle_seed, buffer_size=STREAM_SHUFFLE_BUFFER) if streaming else \
            table.shuffle(seed=shuffle_seed, keep_in_memory=True)
    if max_duration is not None:
        def short_enough(row) -> bool:
            duration = _duration(row, base_dir)
            return duration is None or duration <= max_duration  # unreadable audio is reported by the engine

        table = table.filter(short_enough) if streaming else table.filter(short_enough, keep_in_memory=True)
    if limit is not None:
        table = table.take(limit) if streaming else table.select(range(min(limit, len(table))))
    return table


def _resolve(path: str, base_dir: Path | None) -> str:
    """Relative paths are taken relative to the manifest's folder when the file exists there."""
    if base_dir is not None and not os.path.isabs(path) and (base_dir / path).exists():
        return str(base_dir / path)
    return path


def _audio(row: dict, base_dir: Path | None):
    audio = row["audio"]
    return audio["bytes"] if audio.get("bytes") else _resolve(audio.get("path") or "", base_dir)


def _duration(row: dict, base_dir: Path | None) -> float | None:
    """The ``duration`` column, else the audio header (None when soundfile cannot read it)."""
    if row.get("duration") is not None:
        return float(row["duration"])
    audio = _audio(row, base_dir)
    try:
        return sf.info(io.BytesIO(audio) if isinstance(audio, bytes) else audio).duration
    except (sf.LibsndfileError, OSError, RuntimeError):
        return None


@dataclass
class _Utterances:
    """Rows of a (possibly streaming) table as Utterances, each time it is iterated."""

    table: object
    columns: _Columns
    base_dir: Path | None

    def __iter__(self) -> Iterator[Utterance]:
        for index, row in enumerate(self.table):
            audio = _audio(row, self.base_dir)
            if self.columns.id is not None and row.get(self.columns.id) is not None:
                utt_id = str(row[self.columns.id])
            elif isinstance(row["audio"].get("path"), str) and row["audio"]["path"]:
                utt_id = Path(row["audio"]["path"]).stem
            else:
                utt_id = f"utt{index:06d}"
            hotwords = split_hotwords(row.get(self.columns.hotwords)) if self.columns.hotwords else None
            yield Utterance(id=utt_id, audio=audio, text=str(row[self.columns.text] or ""),
                            duration=_duration(row, self.base_dir), hotwords=hotwords)

    def __len__(self) -> int:
        return len(self.table)

    @property
    def has_column(self) -> bool:
        return self.columns.hotwords is not None
