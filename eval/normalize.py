"""Text normalization for scoring: the official FireRedASR rules, and a small English one for WER sets.

Mandarin and mixed sets (metric ``cer``) follow ``fireredasr/utils/wer.py`` exactly when no option is
set: ``<|...|>`` tokens removed (its ``--rm_special 1``, used for FireRedASR-LLM), ``<unk>`` removed,
punctuation runs (ASCII and full-width, the official list) -> one space, upper case, then every CJK
character is one unit and every other whitespace-separated word is one unit (a mixed error rate,
reported as CER). The options add the steps the official scorer leaves out; run manifests record them.

English sets (metric ``wer``) use a Whisper-style normalizer: NFKC, lower case, bracketed spans
dropped, common contractions expanded, punctuation removed (apostrophes inside words kept), words as
units. Numbers are left as written.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import asdict, dataclass

import cn2an
import zhconv

SPECIAL_TOKEN = re.compile(r"<\|.*?\|>")
# Verbatim from fireredasr/utils/wer.py::text2tokens (a regex character-class body).
PUNCTUATIONS = (
    '，。？！,\\.?!＂＃＄％＆＇（）＊＋－／：；＜＝＞＠［＼］＾＿｀｛｜｝～｟｠｢｣､　、〃〈〉《》「」『』【】〔〕〖〗〘〙〚〛〜〝〞〟〰〾〿–—‘’‛“”„‟…‧﹏﹑﹔·｡":'
    + "()\\[\\]{}/;`|=+"
)
PUNCTUATION_RUN = re.compile(f"[{PUNCTUATIONS}]+")
CJK_CHAR = re.compile(r"([\u4e00-\u9fff])")


@dataclass(frozen=True)
class NormalizerOptions:
    """Optional steps on top of the official rules (all off = the official scorer with rm_special)."""

    t2s: bool = False  # traditional -> simplified Chinese characters (zhconv, zh-hans)
    nfkc: bool = False  # Unicode NFKC: full-width letters, digits and punctuation -> half-width
    tn: bool = False  # Arabic numbers -> Chinese numerals (cn2an "an2cn"), the official --do_tn 1

    def to_dict(self) -> dict:
        return asdict(self)


def to_units(text: str, options: NormalizerOptions = NormalizerOptions(), metric: str = "cer") -> list[str]:
    """Scoring units of ``text``: CJK characters and words for ``cer``, words for ``wer``."""
    if metric == "wer":
        return english_words(text)
    if metric != "cer":
        raise ValueError(f"unknown metric {metric!r}; use 'cer' or 'wer'")
    text = " ".join(text.split())  # the official scorer reads Kaldi text lines: whitespace runs collapse
    text = " ".join(part for part in SPECIAL_TOKEN.split(text) if part.strip())
    if options.nfkc:
        text = unicodedata.normalize("NFKC", text)
    if options.t2s:
        text = zhconv.convert(text, "zh-hans")
    if options.tn:
        text = cn2an.transform(text, "an2cn")
    text = PUNCTUATION_RUN.sub(" ", text.replace("<unk>", ""))
    units = []
    for part in CJK_CHAR.split(text.strip().upper()):
        if CJK_CHAR.fullmatch(part):
            units.append(part)
        else:
            units.extend(part.split())
    return units


def normalize(text: str, options: NormalizerOptions = NormalizerOptions(), metric: str = "cer") -> str:
    """``text`` as its scoring units joined by single spaces."""
    return " ".join(to_units(text, options, metric))


BRACKETED = re.compile(r"[<\[(][^>\])]*[>\])]")
CONTRACTIONS = [
    (re.compile(pattern), replacement)
    for pattern, replacement in [
        (r"\bwon't\b", "will not"),
        (r"\bcan't\b", "can not"),
        (r"\blet's\b", "let us"),
        (r"\bain't\b", "aint"),
        (r"\by'all\b", "you all"),
        (r"\bma'am\b", "madam"),
        (r"\b(\w+)n't\b", r"\1 not"),
        (r"\b(\w+)'re\b", r"\1 are"),
        (r"\b(\w+)'ll\b", r"\1 will"),
        (r"\b(\w+)'ve\b", r"\1 have"),
        (r"\b(\w+)'m\b", r"\1 am"),
        (r"\b(\w+)'d been\b", r"\1 had been"),
        (r"\b(\w+)'s been\b", r"\1 has been"),
    ]
]
NOT_WORD = re.compile(r"[^\w\s']|(?<!\w)'|'(?!\w)")


def normalize_english(text: str) -> str:
    """Whisper-style English normalization (lower case, no punctuation, contractions expanded)."""
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    text = BRACKETED.sub(" ", text)
    for pattern, replacement in CONTRACTIONS:
        text = pattern.sub(replacement, text)
    return " ".join(NOT_WORD.sub(" ", text).split())


def english_words(text: str) -> list[str]:
    """Words of the normalized English ``text``."""
    return normalize_english(text).split()
