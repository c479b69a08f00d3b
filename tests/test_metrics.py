"""eval.metrics against the official FireRedASR scorer (fireredasr.utils.wer), run on the same corpus."""

import pytest

from eval.metrics import corpus_score, render_alignment, score_corpus, score_units, score_utterance
from eval.normalize import NormalizerOptions

official = pytest.importorskip("fireredasr.utils.wer")

# (reference, hypothesis): mixed Chinese/English, punctuation, full-width, special tokens, empty sides,
# repeated characters, numbers, kana, traditional characters, odd whitespace.
CORPUS = [
    ("今天天气很好", "今天天气很好"),
    ("今天天气很好。", "今天天汽很好"),
    ("我爱北京天安门", ""),
    ("", "多出来的字"),
    ("", ""),
    ("<|zh|><|asr|>你好世界", "你好<|en|>世界"),
    ("打开Wi-Fi设置", "打开wifi设置"),
    ("Hello, World! 你好", "hello world你好"),
    ("ＡＢＣ全角字母，１２３", "ABC全角字母123"),
    ("哈哈哈哈哈", "哈哈哈"),
    ("我有3个苹果", "我有三个苹果"),
    ("2024年3月5日", "二零二四年三月五日"),
    ("iPhone 15 Pro Max很贵", "I phone 15 pro max 很贵"),
    ("《红楼梦》是一本书……", "红楼梦是一本书"),
    ("“引号”和‘单引号’", "引号和单引号"),
    ("他说：「好的」", "他说好的"),
    ("  多个   空格  ", "多个空格"),
    ("<unk>未知<unk>词", "未知词"),
    ("don't stop", "do not stop"),
    ("中英混合mixed English和中文", "中英混合 mix english 和中文"),
    ("啊啊啊啊啊啊啊啊啊啊", "啊"),
    ("嗯", "嗯嗯嗯嗯嗯嗯嗯嗯嗯嗯嗯嗯"),
    ("C++和C#语言", "c加加和c井语言"),
    ("100%的把握", "百分之百的把握"),
    ("繁體中文測試", "繁体中文测试"),
    ("tab\there", "tab here"),
    ("にほんご日本語", "日本語"),
    ("a b c d e", "e d c b a"),
]


def official_infos(tmp_path, pairs, do_tn=False):
    """Score with the official code, reading Kaldi text files as its CLI does (rm_special=1)."""
    ref_file, hyp_file = tmp_path / "ref.txt", tmp_path / "hyp.txt"
    ref_file.write_text("".join(f"utt{k} {r}\n" for k, (r, _) in enumerate(pairs)), encoding="utf-8")
    hyp_file.write_text("".join(f"utt{k} {h}\n" for k, (_, h) in enumerate(pairs)), encoding="utf-8")
    refs = official.read_uttid2tokens(str(ref_file), do_tn, True)
    hyps = official.read_uttid2tokens(str(hyp_file), do_tn, True)
    return [official.compute_one_wer_info(refs[uttid], hyps[uttid]) for uttid in refs]


@pytest.mark.parametrize("tn", [False, True])
def test_counts_match_official_scorer(tmp_path, tn):
    pairs = CORPUS
    infos = official_infos(tmp_path, pairs, do_tn=tn)
    ours = [score_utterance(r, h, NormalizerOptions(tn=tn)) for r, h in pairs]
    assert [(s.n, s.errors) for s in ours] == [(info.r, info.e) for info in infos]
    corpus = score_corpus([r for r, _ in pairs], [h for _, h in pairs], NormalizerOptions(tn=tn))
    assert corpus.n == sum(info.r for info in infos)
    assert corpus.s + corpus.d + corpus.i == sum(info.s + info.d + info.i for info in infos)
    assert corpus.sentence_errors == sum(info.e > 0 for info in infos)
    assert corpus.error_rate == pytest.approx(sum(info.e for info in infos) / corpus.n)


def test_alignment_covers_both_sides_in_order():
    score = score_utterance("今天天气好, OK", "今天田气很好 ok ok")
    assert [unit for _, unit, _ in score.alignment if unit is not None] == list("今天天气好") + ["OK"]
    assert [unit for _, _, unit in score.alignment if unit is not None] == list("今天田气很好") + ["OK", "OK"]
    ops = [op for op, _, _ in score.alignment]
    assert (ops.count("sub"), ops.count("del"), ops.count("ins")) == (score.s, score.d, score.i) == (1, 0, 2)
    assert all((ref == hyp) == (op == "equal") for op, ref, hyp in score.alignment)


def test_render_alignment_lines_up_wide_characters():
    score = score_units(["今", "天", "OK"], ["今", "OKAY"])
    ref_line, hyp_line, marks = render_alignment(score.alignment).split("\n")
    assert ref_line.startswith("REF:") and hyp_line.startswith("HYP:")
    assert "*" in hyp_line or "*" in ref_line
    assert sorted(marks.split()) == sorted({"sub": "S", "del": "D", "ins": "I"}[op]
                                           for op, _, _ in score.alignment if op != "equal")


def test_empty_references_do_not_divide_by_zero():
    assert score_utterance("", "").errors == 0
    only_insertions = score_corpus(["", "。"], ["多", ""])
    assert (only_insertions.n, only_insertions.i, only_insertions.sentence_errors) == (0, 1, 1)
    assert only_insertions.error_rate == 1.0  # official convention: N=0 counts as 1
    empty = corpus_score([])
    assert (empty.error_rate, empty.ser, empty.sentences) == (0.0, 0.0, 0)


def test_wer_metric_uses_english_words():
    score = score_utterance("It's John's CAR, isn't it?", "its johns car is not it", metric="wer")
    assert score.n == 6
    assert score.errors == 2  # it's/its and john's/johns differ; isn't == is not
    corpus = score_corpus(["Hello world"], ["hello, world!"], metric="wer")
    assert (corpus.error_rate, corpus.metric, corpus.to_dict()["n"]) == (0.0, "wer", 2)


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        score_corpus(["a", "b"], ["a"])
