"""Hotword biasing (contextual biasing) as a vLLM logits processor: shallow fusion over a token trie.

Requests opt in with ``SamplingParams(extra_args={HOTWORDS_KEY: "张三,李四:2", HOTWORD_WEIGHT_KEY: 2.0})``:
the list is TEXT (``format_hotwords``/``parse_hotwords``), so vLLM's OpenAI server can carry it through
``vllm_xargs``; the processor tokenizes it with the model's own tokenizer. ``HISTORY_KEY`` (penalty.py)
carries tokens generated before this request (step-wise beam search), so each beam has its own state.
Requests without a list (or with a weight of 0) get no processor: they decode exactly as without it.

The trie holds every listed word's token path: the word as written and, for a word starting with a Latin
letter or digit, also with a leading space (byte-level BPE spells " word" differently). Each token of a word
earns ``weight = word weight x global weight``. Following k2/icefall's ContextGraph, a partial match is a
loan: a token that leaves a word unfinished gives back the boost its prefix earned (minus the accumulated
boost), and only a completed word keeps it; matching is Aho-Corasick (a broken match falls back to the
longest listed prefix that still matches). Withdrawing from every token but the continuing ones shifts all
logits by one constant, which softmax removes, so the processor adds the equivalent: to each token that
starts or continues a word, that word's boost accumulated so far including this token (withdrawal folded
in); every other logit is left as it is. A token spanning a word's edge in context (a BPE merge with a
neighbouring character) is not matched: only the word's own spellings are.
"""

from __future__ import annotations

import logging
import math
import re
from collections import deque
from collections.abc import Iterable, Sequence
from functools import lru_cache

import torch
from transformers import AutoTokenizer
from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from fireredasr_vllm.penalty import HISTORY_KEY

HOTWORDS_KEY = "hotwords"
HOTWORD_WEIGHT_KEY = "hotword_weight"
PROCESSOR_FQCN = "fireredasr_vllm.hotwords:HotwordBiasing"
DEFAULT_HOTWORD_WEIGHT = 2.0
MAX_HOTWORDS = 1000
ENTRY_SEPARATORS = re.compile(r"[,\n，]")  # comma, newline, full-width comma
WEIGHT_SUFFIX = re.compile(r"^(.*?)(?::|\s+)([-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+]?\.\d+|[-+]?(?:inf|nan))$",
                           re.IGNORECASE)
UNDECODABLE = "\ufffd"
TRIE_CACHE_SIZE = 32
LOGGER = logging.getLogger(__name__)


class HotwordError(ValueError):
    """A hotword list that cannot be used; the message names the problem and the fix."""


# ----------------------------------------------------------------- the list as text
def parse_hotwords(text: str) -> tuple[tuple[str, float], ...]:
    """``"张三,李四:2"`` (or one entry a line; ``word 2.5`` also gives a weight) -> ((word, weight), ...).

    Empty entries are skipped; a word listed twice keeps its last weight. Raises ``HotwordError``."""
    words: dict[str, float] = {}
    entries = [entry.strip() for entry in ENTRY_SEPARATORS.split(text or "")]
    entries = [entry for entry in entries if entry]
    if len(entries) > MAX_HOTWORDS:
        raise HotwordError(f"{len(entries)} hotwords given; the limit is {MAX_HOTWORDS}: "
                           "keep the words this audio is likely to contain")
    for entry in entries:
        word, weight = entry, 1.0
        if match := WEIGHT_SUFFIX.match(entry):
            word, weight = match.group(1).strip(), float(match.group(2))
            if not word:
                raise HotwordError(f"hotword entry '{entry}' has a weight but no word: write 'word:weight'")
        words[word] = check_weight(weight, f"hotword '{word}'")
    return tuple(words.items())


def check_hotwords(pairs: Sequence[tuple[str, float]], weight: float) -> None:
    """A list given as ``(word, weight)`` pairs (the Python API), checked as ``parse_hotwords`` checks text."""
    if len(pairs) > MAX_HOTWORDS:
        raise HotwordError(f"{len(pairs)} hotwords given; the limit is {MAX_HOTWORDS}: "
                           "keep the words this audio is likely to contain")
    for word, word_weight in pairs:
        if not isinstance(word, str) or not word.strip() or ENTRY_SEPARATORS.search(word):
            raise HotwordError(f"hotword {word!r} is not a word: give non-empty text without commas or line breaks")
        check_weight(word_weight, f"hotword '{word}'")
    check_weight(weight)


def format_hotwords(pairs: Iterable[tuple[str, float]]) -> str:
    """The canonical text of a list (what ``extra_args[HOTWORDS_KEY]`` carries): ``word:weight,...``."""
    return ",".join(f"{word}:{weight:g}" for word, weight in pairs)


def check_weight(weight: float, what: str = "hotword weight") -> float:
    """A finite weight >= 0, or one clear sentence."""
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise HotwordError(f"{what}: weight '{weight}' is not a number") from None
    if not math.isfinite(weight) or weight < 0:
        raise HotwordError(f"{what}: weight {weight:g} must be a finite number >= 0")
    return weight


# ----------------------------------------------------------------- the list as tokens
def spellings(word: str, tokenizer) -> list[list[int]]:
    """The token paths the model can write ``word`` with: as written, and with a leading space when it
    starts with a Latin letter or digit (how byte-level BPE spells it after another word)."""
    paths = [tokenizer.encode(word, add_special_tokens=False)]
    if word[:1].isascii() and word[:1].isalnum():
        paths.append(tokenizer.encode(" " + word, add_special_tokens=False))
    return [path for n, path in enumerate(paths) if path and path not in paths[:n]]


def unspellable(word: str, tokenizer) -> str:
    """The characters of ``word`` that the tokenizer has no token for (spelled from raw bytes or as the
    unknown token), as one string; empty when every character has one."""
    missing = []
    for char in dict.fromkeys(word):
        ids = tokenizer.encode(char, add_special_tokens=False)
        if not ids or any(i == tokenizer.unk_token_id or UNDECODABLE in tokenizer.decode([i]) for i in ids):
            missing.append(char)
    return "".join(missing)


def check_spellable(pairs: Sequence[tuple[str, float]], tokenizer) -> None:
    """Raise ``HotwordError`` naming the first listed word the tokenizer cannot spell."""
    for word, _ in pairs:
        if missing := unspellable(word, tokenizer):
            raise HotwordError(f"hotword '{word}': the model's tokenizer has no token for {missing!r}, so the model "
                               "cannot write it; remove the word or write it with other characters")


# ----------------------------------------------------------------- the trie
class HotwordTrie:
    """Aho-Corasick automaton over token paths; states are node indices, 0 the root.

    ``credit[n]``: the boost a hypothesis holds in state ``n`` for the word it is in (since the last
    completed word on n's path; a completed word's whole boost, banked, when n ends a word).
    ``pending[n]``: what leaving n unfinished withdraws (0 at a word's end). ``paths``: (token path, boost
    per token) pairs."""

    def __init__(self, paths: Iterable[tuple[Sequence[int], float]]):
        self.children: list[dict[int, int]] = [{}]
        self.score = [0.0]  # boost accumulated from the root
        self.is_end = [False]
        for tokens, boost in sorted(paths, key=lambda path: -path[1]):  # a shared prefix takes the larger boost
            node = 0
            for token in tokens:
                if token not in self.children[node]:
                    self.children.append({})
                    self.score.append(self.score[node] + boost)
                    self.is_end.append(False)
                    self.children[node][token] = len(self.children) - 1
                node = self.children[node][token]
            self.is_end[node] = True
        size = len(self.children)
        self.credit = [0.0] * size
        self.pending = [0.0] * size
        self.fail = [0] * size
        self._link()
        self._boosts: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

    def _link(self) -> None:
        """Breadth first (parents before children): failure links, credit and pending."""
        banked = [0.0] * len(self)  # score of the deepest word end strictly above each node
        queue = deque([0])
        while queue:
            node = queue.popleft()
            for token, child in self.children[node].items():
                banked[child] = self.score[node] if self.is_end[node] else banked[node]
                self.credit[child] = self.score[child] - banked[child]
                self.pending[child] = 0.0 if self.is_end[child] else self.credit[child]
                queue.append(child)
                if node == 0:
                    continue
                fallback = self.fail[node]
                while fallback and token not in self.children[fallback]:
                    fallback = self.fail[fallback]
                self.fail[child] = self.children[fallback].get(token, 0)

    def __len__(self) -> int:
        return len(self.children)

    def step(self, state: int, token: int) -> int:
        """The state after ``token``: the longest listed prefix the text now ends with."""
        while True:
            if (child := self.children[state].get(token)) is not None:
                return child
            if state == 0:
                return 0
            state = self.fail[state]

    def walk(self, tokens: Iterable[int], state: int = 0) -> int:
        for token in tokens:
            state = self.step(state, token)
        return state

    def bonus(self, state: int, token: int) -> float:
        """Shallow-fusion score of ``token`` in ``state`` (ContextGraph): what it earns minus what it withdraws."""
        return self.credit[self.step(state, token)] - self.pending[state]

    def boosts(self, state: int) -> dict[int, float]:
        """What the processor adds in ``state``: ``bonus + pending[state]`` for every token that starts or
        continues a word (the withdrawal, equal for all other tokens, folded in); all other tokens 0."""
        added: dict[int, float] = {}
        node = state
        while True:
            for token in self.children[node]:
                added.setdefault(token, self.credit[self.step(state, token)])
            if node == 0:
                return added
            node = self.fail[node]

    def add_to(self, logits: torch.Tensor, state: int) -> torch.Tensor:
        """``logits`` (one row) plus ``boosts(state)``, in place, from tensors made once per state."""
        key = (state, logits.device, logits.dtype)
        if (cached := self._boosts.get(key)) is None:
            added = self.boosts(state)
            cached = (torch.tensor(list(added), dtype=torch.long, device=logits.device),
                      torch.tensor(list(added.values()), dtype=logits.dtype, device=logits.device))
            self._boosts[key] = cached
        return logits.index_add_(0, *cached)

    @classmethod
    def from_hotwords(cls, pairs: Sequence[tuple[str, float]], weight: float, tokenizer) -> HotwordTrie:
        """The trie of ``pairs`` (each token boosted by word weight x ``weight``); words the tokenizer
        cannot spell are left out (logged)."""
        paths = []
        for word, word_weight in pairs:
            if missing := unspellable(word, tokenizer):
                LOGGER.warning("hotword %r left out: the tokenizer has no token for %r", word, missing)
                continue
            if word_weight > 0:
                paths += [(path, word_weight * weight) for path in spellings(word, tokenizer)]
        return cls(paths)


# ----------------------------------------------------------------- the vLLM processor
def request_hotwords(extra: dict) -> tuple[tuple[tuple[str, float], ...], float]:
    """The (list, global weight) a request's ``extra_args`` asks for; raises ``HotwordError``."""
    pairs = parse_hotwords(str(extra.get(HOTWORDS_KEY) or ""))
    weight = check_weight(extra.get(HOTWORD_WEIGHT_KEY, DEFAULT_HOTWORD_WEIGHT))
    return pairs, weight


class HotwordBiasing(AdapterLogitsProcessor):
    """Per-request processor enabled by ``extra_args[HOTWORDS_KEY]``."""

    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool):
        super().__init__(vllm_config, device, is_pin_memory)
        self.model_config = vllm_config.model_config
        self.trie = lru_cache(maxsize=TRIE_CACHE_SIZE)(self._build_trie)

    @classmethod
    def validate_params(cls, params) -> None:
        """vLLM 0.32 calls this at admission: a bad list is answered HTTP 400 with the message."""
        extra = params.extra_args or {}
        if HOTWORDS_KEY in extra or HOTWORD_WEIGHT_KEY in extra:
            request_hotwords(extra)

    def is_argmax_invariant(self) -> bool:
        return False

    @property
    def tokenizer(self):
        """The model's tokenizer, loaded on the first request with hotwords (others never pay for it)."""
        if getattr(self, "_tokenizer", None) is None:
            config = self.model_config
            self._tokenizer = AutoTokenizer.from_pretrained(
                config.tokenizer, revision=config.tokenizer_revision, trust_remote_code=config.trust_remote_code)
        return self._tokenizer

    def _build_trie(self, text: str, weight: float) -> HotwordTrie:
        return HotwordTrie.from_hotwords(parse_hotwords(text), weight, self.tokenizer)

    def new_req_logits_processor(self, params):
        extra = params.extra_args or {}
        if not extra.get(HOTWORDS_KEY):
            return None
        try:
            pairs, weight = request_hotwords(extra)
        except HotwordError as error:  # validate_params answers it where vLLM calls that; never crash the engine
            LOGGER.warning("hotwords ignored: %s", error)
            return None
        if not pairs or weight == 0:
            return None
        trie = self.trie(format_hotwords(pairs), weight)
        if len(trie) == 1:
            return None
        history = [int(t) for t in extra.get(HISTORY_KEY, ())]
        start = trie.walk(history)
        walked = [0, start]  # output tokens already walked, the state after them

        def bias(output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
            if len(output_ids) < walked[0]:  # the request was restarted: walk its tokens again
                walked[:] = [0, start]
            walked[1] = trie.walk(output_ids[walked[0]:], walked[1])
            walked[0] = len(output_ids)
            return trie.add_to(logits, walked[1])

        return bias
