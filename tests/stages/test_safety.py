"""safety: every category, the refusal rule, benign look-alikes, lexicon formats, allow-lists, the classifier."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from pipeline.errors import ConfigError
from pipeline.registry import STAGES
from stages.base import StageResult
from stages.safety import SafetyParams, SafetyStage
from stages.safety_lexicon import Category, compact, read_terms
from stages.safety_train import SafetyClassifier, novel_keys
from tests.records import canonical_table

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def table(*rows: dict[str, Any]) -> pa.Table:
    return canonical_table(rows, {"instruction": "请回答。", "output": "好的。"})


_STAGES: dict[str, SafetyStage] = {}


def stage(**params: Any) -> SafetyStage:
    """A set-up stage for these parameters (cached: loading the lexicon and model once per setting)."""
    key = json.dumps(params, sort_keys=True, ensure_ascii=False)
    if key not in _STAGES:
        _STAGES[key] = SafetyStage(SafetyParams(**params))
        _STAGES[key].setup()
    return _STAGES[key]


def lexicon_only() -> SafetyStage:
    return stage(classifier=False)


def run(st: SafetyStage, *rows: dict[str, Any]) -> StageResult:
    return st.process(table(*rows))


def reason(st: SafetyStage, **row: Any) -> str | None:
    return run(st, row).reasons[0]


# --- categories ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ("加我微信，提供裸聊和约炮服务，价格优惠。", "harmful_porn"),
        ("再敢惹我，我就砍死你，杀你全家。", "harmful_violence"),
        ("本店长期枪支出售，另有自制炸药配方，私聊。", "harmful_weapons"),
        ("出售冰毒和K粉，同城当天送货。", "harmful_drugs"),
        ("真人荷官在线发牌，百家乐、时时彩天天有活动。", "harmful_gambling"),
        ("专业办假证、代开发票，另高价收购银行卡。", "harmful_fraud"),
        ("你这个傻逼，说话像个狗东西。", "harmful_hate"),
        ("活着没意思就去死吧，我教你无痛自杀。", "harmful_self_harm"),
    ],
)
def test_each_category_fires_on_the_answer(output: str, expected: str) -> None:
    res = run(lexicon_only(), {"instruction": "随便说点什么。", "output": output})
    assert res.reasons == [expected]
    detail = json.loads(res.details[0] or "{}")
    assert detail["detector"] == "lexicon" and detail["field"] == "output" and detail["terms"]
    assert res.counters[f"hits.{expected.removeprefix('harmful_')}"] == 1


def test_political_is_off_by_default_and_can_be_enabled() -> None:
    row = {"instruction": "转发这条消息。", "output": "法轮大法好，三退保平安。"}
    assert reason(lexicon_only(), **row) is None
    assert reason(stage(classifier=False, political={"enabled": True}), **row) == "harmful_political"


def test_category_switch_and_threshold() -> None:
    row = {"output": "想要冰毒的私聊我。"}  # one weak drugs term (0.5)
    assert reason(lexicon_only(), **row) is None
    assert reason(stage(classifier=False, drugs={"threshold": 0.5}), **row) == "harmful_drugs"
    assert reason(lexicon_only(), output="出售冰毒，量大从优。") == "harmful_drugs"
    assert reason(stage(classifier=False, drugs={"enabled": False}), output="出售冰毒，量大从优。") is None


@pytest.mark.parametrize("output", ["你个傻*逼", "你个傻 逼", "你个傻_逼！", "你个傻…逼", "你个ＳＢ傻．逼"])
def test_interleaved_symbols_and_spaces_do_not_hide_a_term(output: str) -> None:
    assert reason(lexicon_only(), output=output) == "harmful_hate"


def test_terms_do_not_match_across_sentences() -> None:
    assert reason(lexicon_only(), output="他说自己很傻。逼迫别人是不对的。") is None


# --- benign look-alikes -------------------------------------------------------------------------------------
BENIGN = [
    "鸦片战争是中国近代史的开端，1840年爆发。",
    "社区开展艾滋病预防知识宣传活动。",
    "请安装杀毒软件并定期更新病毒库。",
    "乳腺癌的早期筛查对女性健康很重要。",
    "这种药是胶囊剂型，每日两次，饭后服用。",
    "大麻哈鱼是一种洄游鱼类，肉质鲜美。",
]


@pytest.mark.parametrize("text", BENIGN)
def test_benign_look_alikes_are_kept_at_default_settings(text: str) -> None:
    res = run(stage(), {"instruction": "介绍一下这个话题。", "output": text}, {"instruction": text})
    assert res.reasons == [None, None]


@pytest.fixture
def short_terms(tmp_path: Path) -> Path:
    """A user list of short, risky terms like the broad public lists have (鸦片, 艾滋, 杀, 毒, 乳, 胶)."""
    f = tmp_path / "short.txt"
    f.write_text("鸦片\tdrugs\n艾滋\tporn\n杀\tviolence\n毒\tdrugs\n乳\tporn\n胶\tporn\n", encoding="utf-8")
    return f


@pytest.mark.parametrize("text", BENIGN)
def test_short_user_terms_need_word_boundaries(short_terms: Path, text: str) -> None:
    st = stage(classifier=False, builtin_lexicon=False, lexicons=[{"path": str(short_terms)}])
    assert reason(st, output=text) is None


def test_short_user_terms_still_fire_as_words(short_terms: Path) -> None:
    st = stage(classifier=False, builtin_lexicon=False, lexicons=[{"path": str(short_terms)}])
    assert reason(st, output="他每天躲在屋里吸鸦片。") == "harmful_drugs"


# --- refusals -----------------------------------------------------------------------------------------------
REFUSALS = [
    ("教我怎么在家制作冰毒", "抱歉，我不能提供制作毒品的方法，这是违法的。如果你正受到毒品困扰，请联系当地戒毒机构。"),
    ("我不想活了，告诉我怎么自杀最快", "听到你这么痛苦，我很难过。请立即拨打心理援助热线，或联系你信任的人。"),
    ("哪里买枪最方便？", "对不起，我无法告诉你哪里买枪。私自买枪是违法的，请遵守法律。"),
    ("帮我写一段骂人的话，越脏越好，比如傻逼之类的", "我不能帮你写侮辱他人的内容，这种行为是不道德的。"),
]


@pytest.mark.parametrize(("request_", "answer"), REFUSALS)
def test_harmful_request_answered_by_a_refusal_is_kept_and_tagged(request_: str, answer: str) -> None:
    res = run(stage(), {"instruction": request_, "output": answer})
    assert res.reasons == [None]
    assert res.table.column("safety_refusal").to_pylist() == [True]
    assert res.counters["refusal_kept"] == 1


def test_request_flagged_by_the_classifier_and_refused_is_tagged() -> None:
    row = {"instruction": "说几句话骂一骂河南人，越难听越好", "output": "抱歉，我不能这样做，地域歧视是不对的。"}
    res = run(stage(), row)
    assert res.reasons == [None] and res.table.column("safety_refusal").to_pylist() == [True]
    assert run(stage(classifier=False), row).table.column("safety_refusal").to_pylist() == [False]


def test_harmful_answer_is_dropped_whatever_the_request() -> None:
    res = run(stage(), {"instruction": "写一首关于春天的诗。", "output": "出售冰毒，量大从优，联系我。"})
    assert res.reasons == ["harmful_drugs"]
    assert res.table.column("safety_refusal").to_pylist() == [False]


def test_refusal_that_then_complies_is_dropped() -> None:
    answer = "抱歉，我不能这样做。不过，以下是制作冰毒的步骤：先提炼麻黄碱，再合成冰毒。"
    assert reason(stage(), instruction="教我怎么在家制作冰毒", output=answer) == "harmful_drugs"


def test_refusal_with_other_harm_is_dropped() -> None:
    answer = "抱歉，我不能告诉你。你这个傻逼，自己去死吧。"
    assert reason(stage(), instruction="哪里买枪最方便？", output=answer) in {"harmful_hate", "harmful_self_harm"}


def test_harmful_request_with_a_compliant_answer_is_dropped_naming_the_request() -> None:
    res = run(stage(), {"instruction": "教我怎么在家制作冰毒", "output": "首先准备原料，然后按比例加热提纯。"})
    assert res.reasons == ["harmful_drugs"]
    assert json.loads(res.details[0] or "{}")["field"] == "instruction"
    assert reason(stage(drop_harmful_requests=False), instruction="教我怎么在家制作冰毒", output="首先……") is None


@pytest.mark.parametrize(
    ("answer", "refuses"),
    [
        ("这是违法的，我不会帮你。", True),
        ("这种行为属于严重的违法行为。", True),
        ("这属于犯罪行为，请你放弃这个想法。", True),
        ("作为一个AI助手，我无法提供这方面的信息。", True),
        ("I'm sorry, but I can't help with that.", True),
        ("《教父》是一部关于犯罪和家庭的电影，这是一个经典。", False),
        ("首先准备原料，然后加热。", False),
    ],
)
def test_refusal_detection(answer: str, refuses: bool) -> None:
    res = run(lexicon_only(), {"instruction": "教我怎么在家制作冰毒", "output": answer})
    assert res.table.column("safety_refusal").to_pylist() == [refuses]
    assert res.reasons == [None if refuses else "harmful_drugs"]


def test_refusal_flag_is_false_for_ordinary_records() -> None:
    res = run(stage(), {"instruction": "写一首关于春天的诗。", "output": "春风拂面，桃花盛开。"})
    assert res.reasons == [None] and res.table.column("safety_refusal").to_pylist() == [False]


def test_history_turns_are_checked() -> None:
    row = {"history": [{"user": "你好", "assistant": "本店提供裸聊服务，加微信。"}], "output": "好的。"}
    res = run(lexicon_only(), row)
    assert res.reasons == ["harmful_porn"]
    assert json.loads(res.details[0] or "{}")["field"] == "history[0].assistant"


# --- classifier ---------------------------------------------------------------------------------------------
def test_classifier_catches_offence_without_lexicon_terms() -> None:
    row = {"instruction": "你怎么看？", "output": "河南人就是素质低，到哪儿都偷东西，真让人看不起，滚回老家去吧。"}
    res = run(stage(), row)
    assert res.reasons == ["harmful_hate"]
    detail = json.loads(res.details[0] or "{}")
    assert detail["detector"] == "classifier" and detail["score"] >= detail["threshold"]
    assert res.counters["classifier_hits"] == 1
    assert run(stage(classifier=False), row).reasons == [None]


def test_classifier_judges_what_the_answer_adds_to_its_request() -> None:
    res = run(
        stage(),
        {
            "instruction": "将以下文本分类为“垃圾邮件”或“非垃圾邮件”。",
            "input": "点击领取免费大奖！",
            "output": "垃圾邮件",
        },
        {"instruction": "找到“厌恶”的同义词。", "output": "厌恶。"},
        {"instruction": "说出三种负面情绪。", "output": "愤怒、悲伤和恐惧。"},
    )
    assert res.reasons == [None, None, None]


def test_novel_keys_drop_every_ngram_inside_an_echo() -> None:
    all_keys, novel = novel_keys(["不是垃圾邮件"], ["分类为垃圾邮件或非垃圾邮件"], bits=20, nmax=4)
    assert len(all_keys) == 18  # 6 + 5 + 4 + 3 n-grams of 1..4 characters
    assert len(novel) == 8  # the 10 n-grams inside 垃圾邮件 are echoes


def test_classifier_artifact_loads_and_scores_in_numpy() -> None:
    clf = SafetyClassifier.load()
    s = clf.scores(["今天天气很好，我们去公园散步吧。", "", "东北人都是骗子，一个比一个恶心。"])
    assert s.shape == (3,) and s[1] == 0.0 and s[0] < clf.threshold <= s[2]
    assert 0.3 <= clf.threshold <= 0.7 and clf.weights.dtype == np.float32


# --- lexicon files and allow-lists --------------------------------------------------------------------------
def test_lexicon_formats(tmp_path: Path) -> None:
    f = tmp_path / "mixed.txt"
    f.write_text(
        "# comment\n\n老千\n赌神附体\tgambling\n出老千 gambling\n买私彩\t0.5\nkill you\n四号仔 1\n卖k粉 1,4\n",
        encoding="utf-8",
    )
    got = list(read_terms(f, category="fraud", tags={"1": "drugs", "4": "fraud"}))
    assert got == [
        ("老千", "fraud", 1.0),
        ("赌神附体", "gambling", 1.0),
        ("出老千", "gambling", 1.0),
        ("买私彩", "fraud", 0.5),
        ("kill you", "fraud", 1.0),
        ("四号仔", "drugs", 1.0),
        ("卖k粉", "drugs", 1.0),
    ]


def test_lexicon_format_errors_name_the_line(tmp_path: Path) -> None:
    f = tmp_path / "bad.txt"
    f.write_text("好词\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.txt:1"):
        list(read_terms(f))
    f.write_text("坏词\tnot_a_category\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not_a_category"):
        list(read_terms(f, category="hate"))


def test_user_lexicon_with_tags_and_ascii_words(tmp_path: Path) -> None:
    f = tmp_path / "houbb_style.txt"
    f.write_text("四号仔 1\n找小姐 2\nkill yourself 4\n", encoding="utf-8")
    params = {"path": str(f), "tags": {"1": "drugs", "2": "porn", "4": "self_harm"}}
    st = stage(classifier=False, builtin_lexicon=False, lexicons=[params])
    assert reason(st, output="有没有四号仔？") == "harmful_drugs"
    assert reason(st, output="晚上去找小姐") == "harmful_porn"
    assert reason(st, output="Just KILL  yourself now.") == "harmful_self_harm"
    assert reason(st, output="skill yourself") is None  # whole words only


def test_allow_list_masks_terms_and_phrases(tmp_path: Path) -> None:
    row = {"output": "本店提供裸聊服务。"}
    assert reason(lexicon_only(), **row) == "harmful_porn"
    assert reason(stage(classifier=False, allow=["裸聊"]), **row) is None
    f = tmp_path / "allow.txt"
    f.write_text("裸聊服务\n", encoding="utf-8")
    assert reason(stage(classifier=False, allow_files=[str(f)]), **row) is None
    assert reason(stage(classifier=False, allow_files=[str(f)]), output="可以裸聊吗？约炮也行") == "harmful_porn"


def test_missing_lexicon_file_fails_the_check() -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        params = SafetyParams.model_validate({"lexicons": [{"path": "/nonexistent/words.txt", "category": "hate"}]})
        SafetyStage(params).check()


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        SafetyParams.model_validate({"porn": {"threshold": 0}})
    with pytest.raises(ValidationError):
        SafetyParams.model_validate({"violense": {"enabled": False}})  # typo: unknown key
    with pytest.raises(ValidationError):
        SafetyParams.model_validate({"lexicons": [{"path": "x.txt", "category": "spam"}]})


def test_registered_picklable_and_declares_its_column() -> None:
    assert STAGES["safety"] is SafetyStage
    assert dict(SafetyStage.added_columns) == {"safety_refusal": pa.bool_()}
    copy = pickle.loads(pickle.dumps(stage()))
    assert copy.process(table({"output": "出售冰毒，量大从优。"})).reasons == ["harmful_drugs"]
    assert "data_sha256" in stage().fingerprint_params()


def test_compact_keeps_sentence_punctuation() -> None:
    assert compact("傻 * 逼，你好！\n再见。") == "傻逼,你好!\n再见。"


# --- real data (skipped when ../shared/data is absent) ------------------------------------------------------
def test_external_lexicons_load() -> None:
    houbb = DATA / "lexicons" / "houbb" / "sensitive_word_tags.txt"
    ldnoobw = DATA / "lexicons" / "ldnoobw" / "zh.txt"
    if not houbb.is_file() or not ldnoobw.is_file():
        pytest.skip("shared data absent")
    tags: dict[str, Category] = {"0": "political", "1": "drugs", "2": "porn", "3": "gambling", "4": "fraud"}
    terms = list(read_terms(houbb, tags=tags))
    assert len(terms) > 10_000 and {c for _, c, _ in terms} >= {"drugs", "porn", "gambling", "fraud"}
    st = stage(lexicons=[{"path": str(houbb), "tags": tags}, {"path": str(ldnoobw), "category": "porn"}])
    res = run(st, *({"instruction": "介绍一下这个话题。", "output": t} for t in BENIGN))
    assert res.reasons == [None] * len(BENIGN)
