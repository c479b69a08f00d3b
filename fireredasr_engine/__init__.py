"""The engine core: one facade over vLLM (``Engine``, in process; ``Engine.connect(URL)``, over running
servers), its options, beam search, long audio, subtitles, the command-line vocabulary every entry point
shares (cli.py) and the official-compatible CLI (transcribe.py).

    from fireredasr_engine import Engine, parse_decoding

    engine = Engine("trained")
    engine.transcribe("clip.wav", parse_decoding("beam3")).text

Importing it keeps vLLM's start-up log quiet (quiet.py; ``--verbose`` shows it): that has to happen
before vLLM is imported, hence first.
"""

from fireredasr_vllm.quiet import quiet_by_default

quiet_by_default()

from fireredasr_engine.engine import Engine  # noqa: E402
from fireredasr_engine.options import (  # noqa: E402
    DecodingOptions, EngineOptions, PreparedAudio, Segment, Transcript, parse_decoding)

__all__ = ["DecodingOptions", "Engine", "EngineOptions", "PreparedAudio", "Segment", "Transcript", "parse_decoding"]
