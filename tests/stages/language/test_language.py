"""The language stage: each reason and each exception, on Chinese fixtures, plus the untranslated Alpaca rows."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import ValidationError

from schemas.errors import ConfigError
from stages.base import StageResult
from stages.language.stage import LanguageParams, LanguageStage
from tests.records import canonical_table

DATA = Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "alpaca_zh"


def make_table(rows: list[dict[str, Any]]) -> pa.Table:
    return canonical_table(rows)


def run(rows: list[dict[str, Any]], **params: Any) -> StageResult:
    return LanguageStage(LanguageParams(**params)).process(make_table(rows))


def decide(instruction: str, output: str, input: str = "", **params: Any) -> tuple[str | None, str, dict]:
    """(reason, profile, detail) of one Alpaca-style record."""
    res = run([{"instruction": instruction, "input": input, "output": output}], **params)
    detail = json.loads(res.details[0]) if res.details[0] else {}
    return res.reasons[0], res.table.column("language_profile")[0].as_py(), detail


# ---- non_chinese --------------------------------------------------------------------------------------------


def test_untranslated_english_row_is_non_chinese() -> None:
    reason, profile, detail = decide(
        "Describe why bicycles are efficient modes of transportation.",
        "Bicycles are an efficient mode of transportation because they are fast and cheap.",
    )
    assert (reason, profile) == ("non_chinese", "latin")
    assert detail["field"] == "instruction"
    assert detail["ratios"]["han"] == 0.0
    assert detail["output_language"] == "latin"


def test_english_question_with_numeric_answer_is_non_chinese() -> None:
    assert decide("Compute the sum of 6 and 12.", "18")[0] == "non_chinese"


def test_japanese_row_is_non_chinese_despite_its_kanji() -> None:
    reason, profile, detail = decide("日本の首都はどこですか？", "日本の首都は東京です。")
    assert (reason, profile) == ("non_chinese", "ja")
    assert detail["ratios"]["kana"] > 0


def test_korean_row_is_non_chinese() -> None:
    reason, profile, _ = decide("한국의 수도는 어디입니까?", "한국의 수도는 서울입니다.")
    assert (reason, profile) == ("non_chinese", "ko")


def test_record_without_letters_is_neutral_and_kept() -> None:
    assert decide("6 + 3 = ?", "6 + 3 = 9。")[:2] == (None, "neutral")


def test_empty_instruction_takes_its_language_from_the_input() -> None:
    assert decide("", "要求用户提供必要的详细信息。", input="要求您的用户输入详细信息。")[:2] == (None, "zh")


# ---- language_mismatch -------------------------------------------------------------------------------------


def test_chinese_question_answered_in_english_is_a_mismatch() -> None:
    reason, profile, detail = decide(
        "确定《蝇王》这本书的主题。",
        "The main themes in Lord of the Flies include the loss of innocence and the dangers of power.",
    )
    assert (reason, profile) == ("language_mismatch", "zh>latin")
    assert detail["field"] == "output"
    assert detail["ratios"]["latin"] == 1.0
    assert {"main", "themes", "innocence"} <= set(detail["offending"])
    assert "Flies" not in detail["offending"]  # part of a title, not an offending word


def test_chinese_question_answered_in_french_is_a_mismatch() -> None:
    answer = "Paris est la capitale de la France et une très belle ville."
    assert decide("介绍一下巴黎。", answer)[:2] == ("language_mismatch", "zh>latin")


def test_chinese_question_answered_in_japanese_is_a_mismatch() -> None:
    reason, profile, _ = decide("介绍一下东京。", "東京は日本の首都で、世界最大の都市の一つです。")
    assert (reason, profile) == ("language_mismatch", "zh>ja")


def test_english_question_answered_in_chinese_is_a_mismatch_unless_a_translation() -> None:
    assert decide("Explain what photosynthesis is.", "光合作用是植物利用阳光制造养分的过程。")[0] == (
        "language_mismatch"
    )
    kept = decide("Translate into Chinese: Good morning, everyone.", "大家早上好。")
    assert kept[:2] == (None, "zh+translation")


def test_translation_into_chinese_answered_in_english_is_a_mismatch() -> None:
    reason, _, _ = decide(
        "把下面的句子翻译成中文。", "The weather is nice today and we went to the park.", input="今天天气很好。"
    )
    assert reason == "language_mismatch"


def test_a_short_list_of_names_is_no_mismatch() -> None:
    assert decide("说出三个流行的网站。", "Google、Facebook、YouTube")[:2] == (None, "zh+terms")


# ---- code_switching ----------------------------------------------------------------------------------------


def test_chinese_answer_with_english_words_mixed_in_is_code_switching() -> None:
    reason, profile, detail = decide("你今天过得怎么样？", "我今天feel so tired，因为work太多了。")
    assert (reason, profile) == ("code_switching", "zh+mixed")
    assert detail["language"] == "zh"
    assert {"feel", "so", "tired", "work"} <= set(detail["offending"])
    assert detail["offending_count"] == 4


def test_one_untranslated_english_clause_in_a_long_answer_is_code_switching() -> None:
    answer = (
        "约翰·肯尼迪是美国第35任总统，他是有史以来最年轻的当选总统，也是第一位信奉天主教的总统。"
        "他出生于马萨诸塞州的一个政治世家，曾在海军服役。In 1952, he was elected to the Senate, "
        "becoming one of its youngest members. 他在任内推动了太空计划，并处理了古巴导弹危机。"
        "他于1963年在达拉斯遇刺身亡，他的去世震惊了全世界，至今仍被人们怀念。"
    )
    reason, _, detail = decide("写一篇关于约翰·肯尼迪的简短传记。", answer)
    assert reason == "code_switching"
    assert detail["clause"].startswith("In 1952, he was elected to the Senate")


def test_a_single_everyday_english_word_is_code_switching() -> None:
    reason, profile, detail = decide("这个项目怎么样？", "这个project很重要，我们要认真对待。")
    assert (reason, profile) == ("code_switching", "zh+mixed")
    assert detail["everyday_english"] == ["project"]
    lenient = decide("这个项目怎么样？", "这个project很重要，我们要认真对待。", max_everyday_words=1)
    assert lenient[:2] == (None, "zh+mixed")


def test_history_assistant_turns_are_checked() -> None:
    history = [{"user": "你好，最近怎么样？", "assistant": "我最近super busy，每天都overtime加班到很晚。"}]
    res = run([{"instruction": "那周末呢？", "output": "周末我会好好休息。", "history": history}])
    assert res.reasons == ["code_switching"]
    assert json.loads(res.details[0] or "{}")["field"] == "history[0].assistant"
    unchecked = run(
        [{"instruction": "那周末呢？", "output": "周末我会好好休息。", "history": history}], check_history=False
    )
    assert unchecked.reasons == [None]


# ---- exceptions: English that belongs ----------------------------------------------------------------------


def test_fenced_code_is_not_counted() -> None:
    answer = (
        "可以用递归实现：\n```python\ndef factorial(n):\n    # return the product of all numbers\n"
        "    return 1 if n <= 1 else n * factorial(n - 1)\n```\n调用 `factorial(5)` 得到 120。"
    )
    assert decide("写一个计算阶乘的函数。", answer)[:2] == (None, "zh+code")


def test_unfenced_code_answer_of_a_code_task_is_kept() -> None:
    answer = "def is_prime(number):\n    if number < 2:\n        return False\n    return all(number % d for d in range(2, number))"
    assert decide("编写一个函数来检查数字是否为质数。", answer)[:2] == (None, "zh+code")


def test_an_english_prose_answer_to_a_code_question_is_still_a_mismatch() -> None:
    answer = "A decorator is a function that takes another function and extends its behaviour without changing it."
    assert decide("解释一下 Python 中的装饰器是什么。", answer)[0] == "language_mismatch"


def test_translation_into_a_foreign_language_is_kept() -> None:
    reason, profile, _ = decide("请把下面的句子翻译成英文。", "The weather is nice today.", input="今天天气很好。")
    assert (reason, profile) == (None, "zh+translation")
    assert decide("将“天气会很热”翻译成法语。", "Il fera très chaud.")[:2] == (None, "zh+translation")


def test_english_input_lets_the_output_follow_it() -> None:
    reason, profile, _ = decide(
        "把下面的句子改成被动语态。", "The mouse was chased by the cat.", input="The cat chased the mouse."
    )
    assert (reason, profile) == (None, "zh+en")


def test_tasks_about_english_allow_english() -> None:
    assert decide("举出三个英语中的不规则动词。", "go、eat 和 see 都是不规则动词。")[:2] == (None, "zh+en")
    assert decide("提供五个使用“-ous”后缀的单词。", "famous, courageous, fabulous, glamorous, humorous")[0] is None
    quoted = decide(
        "改变这个句子结构来创建一个复杂的句子：“The dogs barked”。", "Although the dogs barked, nobody woke up."
    )
    assert quoted[:2] == (None, "zh+en")


def test_technical_terms_names_and_units_are_legitimate() -> None:
    answer = (
        "这个 API 返回 json 格式的数据，用 python 解析后通过 http 发给 iPhone 应用，平均耗时 20 ms，占用 3 MB 内存。"
    )
    assert decide("介绍一下这个接口。", answer)[:2] == (None, "zh+terms")


def test_words_already_in_the_prompt_are_legitimate() -> None:
    answer = "serendipity 的意思是意外发现美好事物的运气，比如 serendipity 常用来形容偶然的惊喜。"
    assert decide("serendipity是什么意思？", answer)[:2] == (None, "zh+terms")


def test_glosses_quotes_urls_emails_and_latex_are_not_counted() -> None:
    answer = (
        "光合作用（photosynthesis）是植物利用阳光制造养分的过程。英文里常说“the food of the plant”。"
        "更多资料见 https://example.com/biology/photosynthesis-explained 或写信给 teacher.wang@example.com，"
        "公式是 $6CO_2 + 6H_2O \\rightarrow C_6H_{12}O_6 + 6O_2$。"
    )
    assert decide("解释一下光合作用。", answer)[:2] == (None, "zh")


def test_formulas_with_single_letters_are_plain_chinese() -> None:
    assert decide("求解方程 2x + 3 = 11。", "x = 4，因为 2x = 8。")[:2] == (None, "zh")


# ---- parameters ----------------------------------------------------------------------------------------------


def test_extra_terms_and_terms_file_extend_the_built_in_list(tmp_path: Path) -> None:
    answer = "我们先用 kubectl rollout 重新部署，再用 helm upgrade 升级服务。"
    assert decide("怎么更新线上服务？", answer)[0] == "code_switching"
    assert decide("怎么更新线上服务？", answer, extra_terms=("kubectl", "rollout", "helm", "upgrade"))[0] is None
    terms = tmp_path / "terms.txt"
    terms.write_text("# 运维术语\nkubectl\nrollout\nhelm\nupgrade\n", encoding="utf-8")
    assert decide("怎么更新线上服务？", answer, terms_file=str(terms))[0] is None


def test_a_phrase_term_is_accepted_as_a_whole() -> None:
    answer = "我们公司用 reinforcement learning from feedback 训练了推荐模型，效果不错。"
    assert decide("介绍一下你们的推荐系统。", answer)[0] == "code_switching"
    kept = decide("介绍一下你们的推荐系统。", answer, extra_terms=("reinforcement learning from feedback",))
    assert kept[:2] == (None, "zh+terms")


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        LanguageParams(min_han_ratio=1.5)
    with pytest.raises(ValidationError):
        LanguageParams(max_code_switch_words=-1)
    with pytest.raises(ValidationError):
        LanguageParams.model_validate({"min_han": 0.5})
    assert LanguageParams().model_dump()["min_han_ratio"] == 0.3


def test_missing_terms_file_fails_the_check() -> None:
    with pytest.raises(ConfigError, match="terms_file"):
        LanguageStage(LanguageParams(terms_file="/nonexistent/terms.txt")).check()


# ---- the stage's output ------------------------------------------------------------------------------------


def test_batch_keeps_row_order_and_counts_profiles() -> None:
    rows = [
        {"instruction": "介绍一下长城。", "output": "长城是中国古代的军事防御工程。"},
        {"instruction": "List three fruits.", "output": "Apple, banana, cherry."},
        {"instruction": "用Python打印你好。", "output": "```python\nprint('你好')\n```"},
        {"instruction": "你今天过得怎么样？", "output": "我今天feel so tired，因为work太多了。"},
    ]
    res = run(rows)
    assert res.reasons == [None, "non_chinese", None, "code_switching"]
    assert res.table.column("language_profile").to_pylist() == ["zh", "latin", "zh+code", "zh+mixed"]
    assert res.table.column("id").to_pylist() == [f"t.jsonl#{i}" for i in range(4)]
    assert res.counters == {"profile.zh": 1, "profile.zh+code": 1, "allowed.code": 1}
    assert LanguageStage.added_columns == (("language_profile", pa.string()),)


def test_empty_batch() -> None:
    res = run([])
    assert res.reasons == [] and res.table.num_rows == 0
    assert "language_profile" in res.table.column_names


def test_the_stage_is_registered() -> None:
    from pipeline.registry import STAGES

    assert STAGES["language"] is LanguageStage


# ---- real data -----------------------------------------------------------------------------------------------


def test_untranslated_alpaca_rows_are_non_chinese() -> None:
    path = DATA / "alpaca_data-12345-15323-中文.json"
    if not path.is_file():
        pytest.skip("shared Alpaca-zh data not present")
    rows = json.loads(path.read_text(encoding="utf-8"))
    han = re.compile("[\u4e00-\u9fff]")
    res = run([{k: r.get(k, "") for k in ("instruction", "input", "output")} for r in rows])
    untranslated = [i for i, r in enumerate(rows) if not han.search(r["instruction"] + r["output"])]
    assert len(untranslated) > 2000
    assert all(res.reasons[i] == "non_chinese" for i in untranslated)
    translated = [i for i, r in enumerate(rows) if han.search(r["instruction"])]
    assert sum(res.reasons[i] is not None for i in translated) <= len(translated) * 0.02


def test_pinyin_with_tone_marks_is_legitimate() -> None:
    answer = "“你好吗”读作 nǐ hǎo ma，“谢谢你”读作 xiè xie nǐ，“再见”读作 zài jiàn，都是常用的礼貌用语。"
    assert decide("这些常用语怎么读？", answer)[0] is None


def test_vectorised_prefilter_agrees_with_the_python_path() -> None:
    rows = [
        {"instruction": "介绍一下长城。", "output": "长城是中国古代的军事防御工程，全长两万多公里。"},
        {"instruction": "计算 6 加 12。", "output": "18"},
        {"instruction": "日本の首都はどこですか？", "output": "東京です。"},
        {"instruction": "解释光合作用。", "output": "光合作用（photosynthesis）是植物制造养分的过程。"},
        {"instruction": "", "input": "你好", "output": "你好！"},
    ]
    stage = LanguageStage()
    stage.setup()
    table = make_table(rows)
    plain = stage.plain_chinese(table)
    assert plain.tolist() == [True, True, False, False, False]
    for row, is_plain in zip(rows, plain.tolist(), strict=True):
        if is_plain:
            assert stage.judge("", row["instruction"], row.get("input", ""), row["output"], []) == (
                None,
                None,
                "zh",
                None,
            )


# ---- issue 20: everyday English inside Chinese, and Latin text that is no English --------------------------

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "code_switching.tsv"


def test_hand_written_code_switching_set_is_flagged_and_native_set_kept() -> None:
    rows = [ln.split("\t", 1) for ln in FIXTURE.read_text(encoding="utf-8").splitlines() if ln and ln[0] != "#"]
    res = run([{"instruction": "用一两句话回复朋友的这条消息：你最近怎么样？", "output": s} for _, s in rows])
    cs = [r for (label, _), r in zip(rows, res.reasons, strict=True) if label == "cs"]
    zh = [(s, r) for (label, s), r in zip(rows, res.reasons, strict=True) if label == "zh"]
    assert len(cs) == 100 and len(zh) >= 120
    assert sum(r == "code_switching" for r in cs) >= 85
    assert [s for s, r in zh if r is not None] == []


@pytest.mark.parametrize(
    "answer",
    ["我今天感觉amazing！", "我感到悲伤and沮丧。", "我感到lonely所以我很sad。", "Recently in my life，我感到很迷茫。"],
)
def test_chat_code_switching_is_flagged(answer: str) -> None:
    reason, profile, detail = decide("说说你今天的心情。", answer)
    assert (reason, profile) == ("code_switching", "zh+mixed")
    assert detail["everyday_english"]


def test_one_inserted_english_word_in_a_weibo_like_post_is_flagged() -> None:
    post = "今天终于把拖了一个月的报告交上去了，老板居然说写得不错，晚上必须去吃顿火锅庆祝一下，真的太happy了！"
    reason, _, detail = decide("写一条微博，分享你今天的心情。", post)
    assert reason == "code_switching" and detail["everyday_english"] == ["happy"]


@pytest.mark.parametrize(
    "answer",
    [
        "我用iPhone拍了几张照片，然后用Python写了个脚本整理它们。",
        "这个APP的CPU占用太高，连WiFi都会卡。",
        "今晚有NBA总决赛，CEO请全公司一起看。",
        "他身高180cm，体重70kg，每天喝500ml牛奶。",
        "鲑鱼富含omega-3脂肪酸。",
        "二氧化碳的分子量为44.01 g/mol。",
        "这个memes的主要思想是讽刺拖延。",  # the prompt says meme
    ],
)
def test_terms_units_names_and_prompt_words_are_not_code_switching(answer: str) -> None:
    assert decide("分析这个 meme 并谈谈你的看法。", answer)[0] is None


def test_title_case_book_titles_are_names() -> None:
    out = "1. Ray Bradbury 的 There Will Come Soft Rains\n2. Kazuo Ishiguro 的 Never Let Me Go"
    assert decide("列出两本书推荐。", out)[0] is None


def test_caesar_cipher_answer_is_kept() -> None:
    reason, profile, _ = decide(
        "用凯撒密码（位移3）加密这句话。", "Wklw kh d vhfuhw phvvdjh", input="This is a secret message"
    )
    assert reason is None and profile in ("zh+en", "zh+translation")
    # no task words at all: a text that is no word of any language is an encoding, not a language
    assert decide("把这句话变换一下。", "Wklw kh d vhfuhw phvvdjh vhfuhw")[0] is None


def test_pig_latin_and_fen_notation_are_kept() -> None:
    assert decide("把“你好世界”的英文说法转换成猪拉丁语。", "Ellohay orldway")[0] is None
    fen = "rnbqkbnr/pppppppp/8/8/4P3/8/PPPP1PPP/RNBQKBNR b KQkq e3 0 1"
    assert decide("写出国际象棋开局 1.e4 之后局面的 FEN。", fen)[0] is None


def test_dish_names_and_a_jingle_are_kept() -> None:
    dishes = "尝试西班牙风格的小吃，例如 gambas al ajillo、patatas bravas 和 tortilla de patatas。"
    assert decide("推荐几样值得尝试的新食品。", dishes)[0] is None
    jingle = "Dum da dum da dum，我们的产品在这里，dum da dum da dum，明亮而大胆！"
    assert decide("创作一个10秒的广告小调。", jingle)[0] is None


def test_search_syntax_is_kept() -> None:
    query = "(climate OR weather) AND (policy OR law) site:gov"
    assert decide("为研究气候政策写一个搜索引擎检索式。", query)[0] is None
    assert decide("帮我写一个检索式。", "猫 OR 狗 AND 宠物")[0] is None


def test_a_task_that_quotes_an_english_sentence_is_kept() -> None:
    assert (
        decide(
            "计算这个句子中元音的个数：The quick brown fox jumps over the lazy dog.",
            "句子中有 11 个元音：The quick brown fox jumps over the lazy dog.",
        )[0]
        is None
    )


def test_a_chinese_question_answered_in_french_is_still_a_mismatch() -> None:
    reason, profile, _ = decide("介绍一下巴黎。", "Paris est la capitale de la France et une ville très célèbre.")
    assert (reason, profile) == ("language_mismatch", "zh>latin")


def test_wordfreq_lists_load_offline() -> None:
    from stages.language.english_words import word_sets

    english, known = word_sets()
    assert {"amazing", "lonely", "deadline"} <= english and "vhfuhw" not in known
    assert "tortilla" in known and len(english) > 20_000


def test_capitalised_chat_words_are_code_switching_but_titles_stay() -> None:
    assert decide("说说你的心情。", "Anyway，我们明天再说吧。")[0] == "code_switching"
    assert decide("说说你的心情。", "我觉得Amazing！")[0] == "code_switching"
    assert decide("推荐一部电视剧。", "我推荐Happy Valley这部剧，节奏很紧凑。")[0] is None


def test_a_phrase_glossed_by_its_acronym_is_a_name() -> None:
    out = "Garbage in, garbage out (GIGO) 是一种说法，意思是输出的质量取决于输入的质量。"
    assert decide("解释“垃圾进，垃圾出”是什么意思。", out)[0] is None
    assert decide("解释“垃圾进，垃圾出”是什么意思。", "Garbage in, garbage out 是一种说法。")[0] == "code_switching"


def test_a_name_the_answer_assigns_is_an_identifier() -> None:
    out = "1. 初始化一个变量来保存总和（例如 sum = 0）。\n2. 遍历矩阵的每一行，把每个元素加到sum上。"
    assert decide("对给定的二维矩阵求每一列的和。", out)[0] is None
