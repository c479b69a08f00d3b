"""Hotword biasing: the trie processor on scripted logits (through vLLM's own adapter), the list formats and
their errors, and the real engine (no list = no change; a listed word appears where it was wrong; the CLI
and the server take a list)."""

import json
from dataclasses import replace
from types import SimpleNamespace

import httpx
import jiwer
import pytest
import torch
from vllm import SamplingParams
from vllm.v1.sample.logits_processor import BatchUpdate

from eval.datasets import load_test_set
from fireredasr_engine import transcribe
from fireredasr_engine.client import RemoteEngine
from fireredasr_engine.hotwords import load_hotwords
from fireredasr_engine.options import DecodingOptions, parse_decoding
from fireredasr_vllm.hotwords import (HOTWORD_WEIGHT_KEY, HOTWORDS_KEY, MAX_HOTWORDS, HotwordBiasing, HotwordError,
                                      HotwordTrie, format_hotwords, parse_hotwords)
from fireredasr_vllm.penalty import HISTORY_KEY
from fireredasr_vllm.resolve import resolve_model
from fireredasr_vllm.serve import form_fields_to_xargs

VOCAB = 16
# A heldout clip the trained model gets wrong (它 says 他的英语成绩...) and the word that puts it right.
WRONG_CLIP, RIGHT_WORD, RIGHT_WEIGHT = "heldout_025", "朋友", 4.0
UNSPELLABLE = "龘"  # not in the trained model's 956-token vocabulary: only raw byte pieces spell it


def boosted(trie: HotwordTrie, history: list[int]) -> dict[int, float]:
    """What the processor adds to an all-zero logits row after ``history``, as {token: value}."""
    row = trie.add_to(torch.zeros(VOCAB), trie.walk(history))
    return {int(i): float(row[i]) for i in torch.nonzero(row).flatten()}


# ----------------------------------------------------------------- the trie on scripted logits
def test_a_word_is_boosted_from_its_first_token_and_more_the_further_it_gets():
    trie = HotwordTrie([([1, 2, 3], 1.5)])
    assert boosted(trie, []) == {1: 1.5}  # start
    assert boosted(trie, [1]) == {2: 3.0, 1: 1.5}  # continue: the prefix's boost is at stake too
    assert boosted(trie, [1, 2]) == {3: 4.5, 1: 1.5}
    assert boosted(trie, [7, 8]) == {1: 1.5}  # unrelated text: only starts


def test_an_unfinished_word_gives_its_boost_back_and_a_finished_one_keeps_it():
    trie = HotwordTrie([([1, 2, 3], 2.0)])
    assert trie.bonus(trie.walk([1, 2]), 9) == -4.0  # breaking off after two tokens withdraws both boosts
    assert trie.bonus(trie.walk([1]), 2) == 2.0
    finished = trie.walk([1, 2, 3])
    assert trie.bonus(finished, 9) == 0.0  # nothing withdrawn after a completed word
    assert sum(trie.bonus(trie.walk([1, 2, 3][:n]), t) for n, t in enumerate([1, 2, 3])) == 6.0
    assert sum(trie.bonus(trie.walk([1, 2][:n]), t) for n, t in enumerate([1, 2, 9])) == 0.0  # a loan, repaid


def test_per_word_weights_and_a_shared_prefix_taking_the_larger_boost():
    trie = HotwordTrie([([1, 2], 1.0), ([4, 5], 3.0), ([1, 6], 2.0)])
    assert boosted(trie, []) == {1: 2.0, 4: 3.0}
    assert boosted(trie, [4]) == {5: 6.0, 1: 2.0, 4: 3.0}


def test_a_broken_match_falls_back_to_the_longest_listed_prefix_that_still_matches():
    trie = HotwordTrie([([1, 2, 3], 1.0), ([2, 4], 1.0)])
    state = trie.walk([1, 2])
    assert trie.step(state, 4) == trie.walk([2, 4])  # "1 2" then 4: the text ends with the word "2 4"
    assert trie.bonus(state, 4) == 2.0 - 2.0  # withdraw "1 2", credit "2 4" whole
    assert boosted(trie, [1, 2]) == {3: 3.0, 4: 2.0, 1: 1.0, 2: 1.0}


@pytest.fixture(scope="module")
def processor() -> HotwordBiasing:
    """The processor vLLM builds, on the trained model's tokenizer (what the engine core gives it)."""
    model_config = SimpleNamespace(tokenizer=str(resolve_model("trained")), tokenizer_revision=None,
                                   trust_remote_code=False)
    return HotwordBiasing(SimpleNamespace(model_config=model_config), torch.device("cpu"), False)


def request(hotwords: str | None, weight: float | str = 1.0, history=()) -> SamplingParams:
    extra = {HISTORY_KEY: list(history), HOTWORD_WEIGHT_KEY: weight}
    if hotwords is not None:
        extra[HOTWORDS_KEY] = hotwords
    return SamplingParams(extra_args=extra)


def test_the_processor_biases_only_requests_with_a_list_each_from_its_own_history(processor):
    tokenizer = processor.tokenizer
    word = tokenizer.encode("北京", add_special_tokens=False)
    vocab = len(tokenizer)
    beams = [request("北京:2", 1.5), request("北京:2", 1.5, history=word[:1]), request(None),
             request("北京", 0.0), request("北京:2", "1.5")]  # a weight from a server form arrives as text
    outputs = [[] for _ in beams]
    processor.update_state(BatchUpdate(batch_size=len(beams), removed=[], moved=[],
                                       added=[(i, params, None, outputs[i]) for i, params in enumerate(beams)]))
    logits = processor.apply(torch.zeros(len(beams), vocab))
    assert logits[0, word[0]] == 3.0 and torch.count_nonzero(logits[0]) == 1  # the start, 2 x 1.5
    assert logits[1, word[1]] == 6.0  # this beam already wrote 北: 京 finishes the word
    assert not logits[2:4].any()
    assert processor.new_req_logits_processor(beams[2]) is None  # no list, weight 0: no processor at all
    assert processor.new_req_logits_processor(beams[3]) is None
    assert torch.equal(logits[4], logits[0])
    outputs[0].append(word[0])  # vLLM appends to the request's output list in place
    logits = processor.apply(torch.zeros(len(beams), vocab))
    assert logits[0, word[1]] == 6.0 and logits[4, word[1]] == 0.0


def test_a_bad_list_in_a_request_is_refused_at_admission_and_never_crashes_the_engine(processor):
    params = request(",".join(f"w{n}" for n in range(MAX_HOTWORDS + 1)))
    with pytest.raises(HotwordError, match=f"the limit is {MAX_HOTWORDS}"):
        HotwordBiasing.validate_params(params)
    assert processor.new_req_logits_processor(params) is None


# ----------------------------------------------------------------- the list as users write it
def test_lists_parse_inline_or_from_a_file_with_optional_weights(tmp_path):
    assert parse_hotwords("张三, 李四:2\n\n，王五 1.5,,") == (("张三", 1.0), ("李四", 2.0), ("王五", 1.5))
    listed = (("iPhone 15", 1.0), ("北京", 2.5))
    assert parse_hotwords(format_hotwords(listed)) == listed
    names = tmp_path / "names.txt"
    names.write_text("\ufeff张三 2.5\n\n李四\n   \n", encoding="utf-8")
    assert load_hotwords(str(names)) == (("张三", 2.5), ("李四", 1.0))
    assert load_hotwords(None) == load_hotwords(" ") == ()


@pytest.mark.parametrize("text, message", [
    (",".join(f"词{n}" for n in range(10_000)), "10000 hotwords given; the limit is 1000"),
    ("张三:-1", "hotword '张三': weight -1 must be a finite number >= 0"),
    ("张三:nan", "must be a finite number"),
    (":2", "has a weight but no word"),
])
def test_bad_lists_get_one_clear_sentence(text, message):
    with pytest.raises(HotwordError, match=message):
        parse_hotwords(text)


def test_a_list_file_that_is_not_text_is_named(tmp_path):
    binary = tmp_path / "list.txt"
    binary.write_bytes(b"\xff\xfe\x00\xd8" * 10)
    with pytest.raises(HotwordError, match="is not UTF-8 text"):
        load_hotwords(str(binary))


def test_labels_name_the_list_only_when_one_is_given():
    assert DecodingOptions().label == "greedy" and parse_decoding("official").label == "official"
    listed = DecodingOptions(hotwords=(("a", 1.0), ("b", 1.0)), hotword_weight=2)
    assert listed.label == "greedy-hw2x2"
    assert replace(parse_decoding("official"), hotwords=(("a", 1.0),)).label == "official-hw2x1"


def test_the_server_moves_plain_form_fields_into_vllm_xargs():
    form = httpx.Request("POST", "http://x/", files={"file": ("a.wav", b"RIFF\r\n\r\ndata", "audio/wav")},
                         data={"model": "m", "hotwords": "张三,李四:2", "hotword_weight": "3",
                               "vllm_xargs": json.dumps({"other": 1})})
    body = form_fields_to_xargs(form.read(), form.headers["content-type"].encode())
    parsed = httpx.Request("POST", "http://x/", content=body, headers={"content-type": form.headers["content-type"]})
    text = parsed.read().decode("utf-8", "replace")
    assert 'name="hotwords"' not in text and b"RIFF\r\n\r\ndata" in body
    xargs = json.loads(text.split('name="vllm_xargs"\r\n\r\n')[1].split("\r\n")[0])
    assert xargs == {"other": 1, "hotwords": "张三,李四:2", "hotword_weight": "3"}
    plain = httpx.Request("POST", "http://x/", data={"model": "m"}, files={"file": ("a.wav", b"x", "audio/wav")})
    assert form_fields_to_xargs(plain.read(), plain.headers["content-type"].encode()) is None


# ----------------------------------------------------------------- the real engine
@pytest.fixture(scope="module")
def wrong_clip(tmp_path_factory):
    utterance = next(u for u in load_test_set("demo-heldout").utterances if u.id == WRONG_CLIP)
    path = tmp_path_factory.mktemp("heldout") / f"{WRONG_CLIP}.flac"
    path.write_bytes(utterance.audio)
    return path, utterance.text


def test_no_list_decodes_token_identically_even_batched_beside_biased_requests(engine, demo_clips):
    plain = engine.transcribe_many(demo_clips)
    assert engine.engine_args().logits_processors[-1] == "fireredasr_vllm.hotwords:HotwordBiasing"
    listed = DecodingOptions(hotwords=(("医院", 1.0), ("图书馆", 1.0)), hotword_weight=8.0)
    futures = [(engine.submit(engine.prepare(clip), options), options)
               for clip in demo_clips for options in (DecodingOptions(hotwords=()), listed,
                                                      DecodingOptions(hotwords=listed.hotwords, hotword_weight=0))]
    unbiased = [future.result().token_ids for future, options in futures if options is not listed]
    assert unbiased == [t.token_ids for t in plain for _ in range(2)]
    biased = [future.result().token_ids for future, options in futures if options is listed]
    assert biased != [t.token_ids for t in plain]  # the biased ones ran in the same batches


def test_a_listed_word_appears_where_it_was_wrong(engine, wrong_clip):
    path, reference = wrong_clip
    plain = engine.transcribe(path)
    assert RIGHT_WORD not in plain.text
    options = DecodingOptions(hotwords=((RIGHT_WORD, 1.0),), hotword_weight=RIGHT_WEIGHT)
    step = engine.sampling_params(engine.prepare(path).samples, options, history=[7, 8]).extra_args
    assert step == {HOTWORDS_KEY: f"{RIGHT_WORD}:1", HOTWORD_WEIGHT_KEY: RIGHT_WEIGHT, HISTORY_KEY: [7, 8]}
    for decoding in (options, replace(options, beam_size=3)):
        biased = engine.transcribe(path, decoding)
        assert RIGHT_WORD in biased.text
        assert jiwer.cer(reference, biased.text) < jiwer.cer(reference, plain.text)


def test_a_word_the_tokenizer_cannot_spell_is_named(engine, demo_clips):
    with pytest.raises(HotwordError, match=f"hotword '{UNSPELLABLE}人': the model's tokenizer has no token for"):
        engine.transcribe(demo_clips[0], DecodingOptions(hotwords=(("医院", 1.0), (f"{UNSPELLABLE}人", 1.0))))
    assert engine.transcribe(demo_clips[0]).text  # still serving


def test_the_cli_takes_a_list_end_to_end(engine, wrong_clip, tmp_path, capsys):
    path, _ = wrong_clip
    out = tmp_path / "text"
    words = tmp_path / "words.txt"
    words.write_text(f"{RIGHT_WORD} {RIGHT_WEIGHT / 2}\n", encoding="utf-8")
    assert transcribe.main([str(path), "--output", str(out), "--hotwords", str(words), "--hotword-weight", "2"],
                           engine=engine) == 0
    assert RIGHT_WORD in out.read_text(encoding="utf-8")
    assert transcribe.main([str(path), "--hotwords", f"{UNSPELLABLE},{RIGHT_WORD}"], engine=engine) == 2
    assert f"error: hotword '{UNSPELLABLE}'" in capsys.readouterr().err
    assert transcribe.main([str(path), "--hotwords", ",".join(map(str, range(10_000)))], engine=engine) == 2
    assert "10000 hotwords given" in capsys.readouterr().err


def test_the_server_biases_through_vllm_xargs_and_the_form_field(asr_servers, engine, wrong_clip):
    path, _ = wrong_clip
    options = DecodingOptions(hotwords=((RIGHT_WORD, 1.0),), hotword_weight=RIGHT_WEIGHT)
    expected = engine.transcribe(path, options).text
    with RemoteEngine(asr_servers.url(0)) as remote:
        assert remote.transcribe(path, options).text == expected
    limit = engine.max_tokens_for(engine.prepare(path).samples, options)
    with open(path, "rb") as audio:
        answer = httpx.post(f"{asr_servers.url(0)}/v1/audio/transcriptions", timeout=300,
                            files={"file": (path.name, audio)},
                            data={"hotwords": RIGHT_WORD, "hotword_weight": str(RIGHT_WEIGHT),
                                  "max_completion_tokens": str(limit), "model": "fireredasr-llm"})
    assert answer.json()["text"] == expected
