"""eval.normalize: official FireRedASR tokenization, the optional steps, and the English normalizer."""

import pytest

from eval.normalize import NormalizerOptions, english_words, normalize, normalize_english, to_units

official = pytest.importorskip("fireredasr.utils.wer")

TEXTS = [
    "<|zh|><|asr|>今天天气很好。",
    "打开Wi-Fi设置，然后重启！",
    "Hello, World! 你好（测试）",
    "ＡＢＣ全角，１２３【注】",
    "<unk>未知<unk>词   多个  空格",
    "“引号”‘单引号’《书名》……",
    "iPhone 15 Pro Max很贵; C++/C#=OK",
    "にほんご日本語 naïve café",
    "2024年3月5日有100%的把握",
    "",
]


def official_tokens(tmp_path, texts, do_tn=False):
    path = tmp_path / "text"
    path.write_text("".join(f"u{k} {t}\n" for k, t in enumerate(texts)), encoding="utf-8")
    return list(official.read_uttid2tokens(str(path), do_tn, True).values())


@pytest.mark.parametrize("tn", [False, True])
def test_units_equal_official_tokens(tmp_path, tn):
    assert [to_units(t, NormalizerOptions(tn=tn)) for t in TEXTS] == official_tokens(tmp_path, TEXTS, tn)


def test_units_split_cjk_keep_words_and_upper_case():
    assert to_units("<|zh|>你好,world！ don't") == ["你", "好", "WORLD", "DON'T"]
    assert normalize("  你好 ,  世界 hello  ") == "你 好 世 界 HELLO"
    assert to_units("。，！？") == []


def test_options_change_only_their_own_step():
    assert to_units("繁體中文") == ["繁", "體", "中", "文"]
    assert to_units("繁體中文", NormalizerOptions(t2s=True)) == ["繁", "体", "中", "文"]
    assert to_units("ＡＢＣ１２３") == ["ＡＢＣ１２３"]
    assert to_units("ＡＢＣ１２３", NormalizerOptions(nfkc=True)) == ["ABC123"]
    assert to_units("我有3个苹果", NormalizerOptions(tn=True)) == list("我有三个苹果")
    assert NormalizerOptions(t2s=True).to_dict() == {"t2s": True, "nfkc": False, "tn": False}


def test_english_normalizer():
    assert normalize_english("He said: \"I can't, WON'T!\" [noise] (laughs)") == "he said i can not will not"
    assert english_words("It's John's car-park; they're 'quoted' 3.5") == [
        "it's", "john's", "car", "park", "they", "are", "quoted", "3", "5"]
    assert normalize("Don’t STOP.", metric="wer") == "do not stop"
    assert to_units("", metric="wer") == []


def test_unknown_metric_is_rejected():
    with pytest.raises(ValueError, match="unknown metric 'bleu'"):
        to_units("x", metric="bleu")
