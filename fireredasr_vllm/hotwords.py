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
TRIE_CACHE_SIZE = 8  # lists kept parsed and built (a 1000-word list's table is some 15 MB)
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
    if found := first_unspellable(tuple(word for word, _ in pairs), tokenizer):
        word, missing = found
        raise HotwordError(f"hotword '{word}': the model's tokenizer has no token for {missing!r}, so the model "
                           "cannot write it; remove the word or write it with other characters")


@lru_cache(maxsize=TRIE_CACHE_SIZE)
def first_unspellable(words: tuple[str, ...], tokenizer) -> tuple[str, str] | None:
    """(word, its characters without a token) for the first such word, else None; cached, as every request
    of a batch checks the same list."""
    return next(((word, missing) for word in words if (missing := unspellable(word, tokenizer))), None)


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
        self._tables: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}

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

    def boosts(self) -> tuple[list[int], list[list[float]]]:
        """What the processor adds, as (trie tokens, one row of values per state): in state s, to each token
        that starts or continues a word, ``bonus + pending[s]`` (the withdrawal, equal for every other token,
        folded in); 0 to every other trie token, and nothing to tokens outside the trie."""
        tokens = sorted({token for children in self.children for token in children})
        column = {token: n for n, token in enumerate(tokens)}
        starts = [0.0] * len(tokens)
        for token, child in self.children[0].items():
            starts[column[token]] = self.credit[child]
        table = [starts]
        for state in range(1, len(self)):
            row, seen, node = list(starts), set(), state
            while node:  # the deepest match of a token wins: goto(state, token)
                for token, child in self.children[node].items():
                    if token not in seen:
                        seen.add(token)
                        row[column[token]] = self.credit[child]
                node = self.fail[node]
            table.append(row)
        return tokens, table

    def boost_table(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``boosts()`` as tensors on ``like``'s device and dtype (token ids, states x tokens), made once."""
        key = (like.device, like.dtype)
        if (cached := self._tables.get(key)) is None:
            tokens, table = self.boosts()
            cached = (torch.tensor(tokens, dtype=torch.long, device=like.device),
                      torch.tensor(table, dtype=like.dtype, device=like.device))
            self._tables[key] = cached
        return cached

    def add_to(self, logits: torch.Tensor, state: int) -> torch.Tensor:
        """``logits`` (one row) plus the boosts of ``state``, in place."""
        tokens, table = self.boost_table(logits)
        return logits.index_add_(0, tokens, table[state])

    def add_to_rows(self, logits: torch.Tensor, rows: list[int], states: list[int]) -> None:
        """Each of ``rows`` of a batch of logits plus the boosts of its state, in place, in one operation."""
        tokens, table = self.boost_table(logits)
        index = torch.tensor(rows, device=logits.device)[:, None]
        logits[index, tokens] += table[torch.tensor(states, device=logits.device)]

    @classmethod
    def from_hotwords(cls, pairs: Sequence[tuple[str, float]], weight: float, tokenizer) -> HotwordTrie:
        """The trie of ``pairs`` (each token boosted by word weight x ``weight``); words the tokenizer
        cannot spell are left out (logged)."""
        paths, left_out = [], []
        for word, word_weight in pairs:
            if unspellable(word, tokenizer):
                left_out.append(word)
            elif word_weight > 0:
                paths += [(path, word_weight * weight) for path in spellings(word, tokenizer)]
        if left_out:
            LOGGER.warning("%d hotword(s) left out, the tokenizer has no token for some of their characters: %s",
                           len(left_out), ", ".join(left_out[:10]) + (" ..." if len(left_out) > 10 else ""))
        return cls(paths)


# ----------------------------------------------------------------- the vLLM processor
def list_and_weight(extra: dict) -> tuple[str, str]:
    """A request's list and global weight as given (text; a weight may come as a number or a form string)."""
    return str(extra.get(HOTWORDS_KEY) or ""), str(extra.get(HOTWORD_WEIGHT_KEY, DEFAULT_HOTWORD_WEIGHT))


@lru_cache(maxsize=TRIE_CACHE_SIZE)
def request_hotwords(text: str, weight: str) -> tuple[tuple[tuple[str, float], ...], float]:
    """The (list, global weight) of ``list_and_weight``; raises ``HotwordError``. Cached: every request of a
    batch usually carries the same list."""
    return parse_hotwords(text), check_weight(weight)


class RequestBias:
    """One request's place in its trie, walked on from its history over its output tokens as they come.
    vLLM's adapter calls it as ``(output_ids, logits_row)``; ``HotwordBiasing.apply`` batches the rows."""

    def __init__(self, trie: HotwordTrie, history: Sequence[int]):
        self.trie = trie
        self.start = trie.walk(int(t) for t in history)
        self.walked, self.state = 0, self.start  # output tokens walked so far, the state after them

    def state_after(self, output_ids: list[int]) -> int:
        count = len(output_ids)
        if count == self.walked + 1:  # the usual step: one new token
            self.state = self.trie.step(self.state, output_ids[-1])
        elif count != self.walked:
            if count < self.walked:  # the request was restarted (preempted): walk its tokens again
                self.walked, self.state = 0, self.start
            self.state = self.trie.walk(output_ids[self.walked:], self.state)
        self.walked = count
        return self.state

    def __call__(self, output_ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        return self.trie.add_to(logits, self.state_after(output_ids))


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
            request_hotwords(*list_and_weight(extra))

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

    def _build_trie(self, text: str, weight: str) -> HotwordTrie:
        return HotwordTrie.from_hotwords(*request_hotwords(text, weight), self.tokenizer)

    def new_req_logits_processor(self, params):
        extra = params.extra_args or {}
        if not extra.get(HOTWORDS_KEY):
            return None
        try:
            pairs, weight = request_hotwords(*list_and_weight(extra))
            trie = self.trie(*list_and_weight(extra)) if pairs and weight else None
        except HotwordError as error:  # validate_params answers it where vLLM calls that; never crash the engine
            LOGGER.warning("hotwords ignored: %s", error)
            return None
        return RequestBias(trie, extra.get(HISTORY_KEY, ())) if trie is not None and len(trie) > 1 else None

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """The adapter's per-row loop, batched: all rows of one list get their boosts in one operation."""
        batches: dict[int, tuple[HotwordTrie, list[int], list[int]]] = {}
        for row, bound in self.req_info.items():
            request, output_ids = bound.func, bound.args[0]  # functools.partial(RequestBias, output_ids)
            trie, rows, states = batches.setdefault(id(request.trie), (request.trie, [], []))
            rows.append(row)
            states.append(request.state_after(output_ids))
        for trie, rows, states in batches.values():
            trie.add_to_rows(logits, rows, states)
        return logits
