"""Build the hotword lists of the bundled biasing sets ``demo-hotword`` and ``demo-hotword-100``.

    python -m testkit.hotword_set          # writes eval/demo/hotword/hotwords.txt and hotwords_100.txt

Both sets are the ``demo-heldout`` clips (sentences the embedded ``trained`` model never heard, 71 % CER)
with a list. The 10 words are places and less common nouns of those sentences, one per sentence, each one
the model misses without a list. The 100-word list adds 90 distractors: words of the training
sentences of ``eval/demo/corpus.txt`` (picked by hand among its most frequent character pairs) that occur in no
held-out and no ``demo`` sentence, so that they are wrong wherever they appear in either set's transcripts
(checked here). Deterministic: same files on every run.
"""

from __future__ import annotations

from eval.bundled import DEMO_DIR, HOTWORD_DIR, HOTWORD_LIST_10, HOTWORD_LIST_100, read_sentences
from testkit.synth import heldout_sentences

TRUE_WORDS = ("图书馆", "太极拳", "上海", "北京", "咖啡", "足球", "电脑", "衣服", "地铁", "超市")
DISTRACTORS = ("价格", "举行", "历史", "新闻", "睡觉", "东西", "交通", "作文", "出门", "办法", "唱歌", "安静", "市场", "技术", "教室", "欢迎",
               "汽车", "漂亮", "爸爸", "空调", "经济", "结婚", "认真", "贷款", "车站", "风景", "食堂", "中午", "中文", "中秋", "中间", "健康",
               "农民", "准备", "发展", "号码", "同意", "回答", "国庆", "地区", "地方", "坐船", "堵车", "增加", "外面", "女孩", "奶奶", "婚礼",
               "学生", "安全", "实行", "工厂", "工资", "帮助", "弟弟", "钢琴", "感冒", "房间", "打算", "护士", "拍照", "排队", "收入", "改变",
               "放假", "数学", "文件", "早饭", "春节", "服务", "机场", "机票", "比较", "气温", "注意", "消息", "温度", "满意", "火锅", "爬山",
               "环境", "生产", "生活", "画画", "研究", "礼物", "篮球", "粮食", "精彩", "音乐")


def corpus_sentences() -> list[str]:
    """The training sentences that are not ``demo`` clips."""
    return [line.strip() for line in (DEMO_DIR / "corpus.txt").read_text(encoding="utf-8").splitlines()
            if line.strip()]


def check_distractors() -> None:
    """Every distractor is in the training corpus, in no held-out or ``demo`` sentence, and in no true word."""
    corpus = "\n".join(corpus_sentences())
    avoid = [text for _, text in heldout_sentences()] + [text for _, text in read_sentences(DEMO_DIR / "sentences.txt")]
    for word in DISTRACTORS:
        if word not in corpus or any(word in text for text in avoid) or any(word in t or t in word for t in TRUE_WORDS):
            raise ValueError(f"{word}: not a distractor (must be in corpus.txt only, apart from the true words)")


def build() -> list:
    heldout = [text for _, text in heldout_sentences()]
    for word in TRUE_WORDS:
        if sum(word in text for text in heldout) != 1:
            raise ValueError(f"{word}: expected in exactly one held-out sentence")
    check_distractors()
    HOTWORD_DIR.mkdir(parents=True, exist_ok=True)
    for path, words in ((HOTWORD_LIST_10, TRUE_WORDS), (HOTWORD_LIST_100, TRUE_WORDS + DISTRACTORS)):
        path.write_text("".join(f"{word}\n" for word in words), encoding="utf-8")  # the --hotwords file format
    return [HOTWORD_LIST_10, HOTWORD_LIST_100]


if __name__ == "__main__":
    for path in build():
        print(path)
