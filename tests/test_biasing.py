"""eval.biasing: B-CER / U-CER (fbai-speech is21_deep_bias/score.py with characters as units) and hotword
recall / precision / F1, on cases counted by hand."""

import pytest

from eval.biasing import find_occurrences, score_biasing, summarize_biasing, word_units
from eval.metrics import score_utterance


def test_substitution_inside_a_hotword_is_a_biased_error():
    # ref 他 坐 火 车 去 上 海 开 会 (9 units); 上海 biased (2); hyp 上 -> 尚: 1 biased S, nothing else.
    score = score_biasing("他坐火车去上海开会", "他坐火车去尚海开会", ["上海"])
    assert (score.b_n, score.b_errors, score.u_n, score.u_errors) == (2, 1, 7, 0)
    assert (score.ref_occurrences, score.hyp_occurrences, score.hits) == (1, 0, 0)


def test_errors_outside_hotwords_are_unbiased_and_a_hit_is_counted():
    # hyp drops 去 (unbiased D) and substitutes 会 -> 回 (unbiased S); 上海 recognized.
    score = score_biasing("他坐火车去上海开会", "他坐火车上海开回", ["上海", "北京"])
    assert (score.b_n, score.b_errors, score.u_n, score.u_errors) == (2, 0, 7, 2)
    assert (score.ref_occurrences, score.hyp_occurrences, score.hits) == (1, 1, 1)


def test_an_inserted_hotword_counts_as_biased_insertions():
    # ref has no listed word: all 4 units unbiased; hyp inserts 北京 (2 units inside an occurrence of a
    # listed word: biased I) and 了 (unbiased I).
    score = score_biasing("我们开会", "我们北京开会了", ["北京"])
    assert (score.b_n, score.b_errors, score.u_n, score.u_errors) == (0, 2, 4, 1)
    assert (score.ref_occurrences, score.hyp_occurrences, score.hits) == (0, 1, 0)


def test_biased_and_unbiased_errors_add_up_to_the_plain_count():
    reference, hypothesis, words = "爷爷喜欢在公园里打太极拳", "爷爷喜在公元里打太集权啊", ["太极拳", "公园"]
    score, plain = score_biasing(reference, hypothesis, words), score_utterance(reference, hypothesis)
    assert score.b_n + score.u_n == plain.n
    assert score.b_errors + score.u_errors == plain.errors
    # biased: 公园 (园 -> 元: 1 S) and 太极拳 (极拳 -> 集权: 2 S) = 5 units, 3 errors; unbiased: 欢 deleted, 啊 inserted.
    assert (score.b_n, score.b_errors, score.u_n, score.u_errors) == (5, 3, 7, 2)


def test_words_are_normalized_like_the_texts():
    # punctuation and case are scoring-irrelevant in both the texts and the list; English words are units.
    score = score_biasing("我买了iPhone，手机。", "我买了IPHONE手机", ["iphone", "《手机》"])
    assert (score.ref_occurrences, score.hyp_occurrences, score.hits) == (2, 2, 2)
    assert (score.b_n, score.u_n) == (3, 3)  # IPHONE, 手, 机 | 我, 买, 了


def test_longest_listed_word_wins_and_occurrences_do_not_overlap():
    words = word_units(["北京", "北京大学", "大学"])
    assert [w for _, _, w in find_occurrences(list("在北京大学学习大学"), words)] == [
        tuple("北京大学"), tuple("大学")]
    assert find_occurrences(list("哈哈哈"), word_units(["哈哈"])) == [(0, 2, ("哈", "哈"))]


def test_repeated_words_count_hits_up_to_the_reference_occurrences():
    # ref: 上海 twice, hyp: three times -> 2 hits, recall 2/2, precision 2/3.
    score = score_biasing("上海到上海", "上海到上海上海", ["上海"])
    assert (score.ref_occurrences, score.hyp_occurrences, score.hits) == (2, 3, 2)


def test_corpus_summary_rates():
    scores = [score_biasing("他坐火车去上海开会", "他坐火车去尚海开会", ["上海"]),   # b 2/1, u 7/0, occ 1/0/0
              score_biasing("他坐火车去上海开会", "他坐火车上海开回", ["上海"]),     # b 2/0, u 7/2, occ 1/1/1
              score_biasing("我们开会", "我们北京开会了", ["北京"])]               # b 0/2, u 4/1, occ 0/1/0
    summary = summarize_biasing(scores)
    assert summary.b_cer == pytest.approx(3 / 4)
    assert summary.u_cer == pytest.approx(3 / 18)
    assert summary.hotword_recall == pytest.approx(1 / 2)
    assert summary.hotword_precision == pytest.approx(1 / 2)
    assert summary.hotword_f1 == pytest.approx(2 * 1 / (2 + 2))
    assert summarize_biasing([s.to_dict() for s in scores]) == summary  # rows read back from a run folder


def test_no_listed_word_anywhere_leaves_rates_undefined():
    summary = summarize_biasing([score_biasing("今天天气很好", "今天天气很好", ["上海"])])
    assert (summary.b_cer, summary.hotword_recall, summary.hotword_precision, summary.hotword_f1) == (
        None, None, None, None)
    assert summary.u_cer == 0.0


def test_missed_words_give_zero_f1():
    summary = summarize_biasing([score_biasing("去上海", "去尚海", ["上海"])])
    assert (summary.hotword_recall, summary.hotword_precision, summary.hotword_f1) == (0.0, None, 0.0)
