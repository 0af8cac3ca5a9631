"""The categories of the ``safety`` stage and their place in TC260-003.

TC260-003《生成式人工智能服务安全基本要求》(2024), appendix A, names five top-level classes of unsafe content.
Every category of the stage belongs to exactly one of them; its reason code is ``harmful_<category>`` and a
drop's ``detail`` also names the class (``tc260``), so a report can be audited against the standard.

``political`` (the part of A.1 about state power and national security) is off by default: whether and how to
filter it is the user's decision (a recipe turns it on with ``political: {enabled: true}``).
"""

from __future__ import annotations

from typing import Literal

Category = Literal[
    "political",
    "violence",
    "porn",
    "weapons",
    "drugs",
    "gambling",
    "fraud",
    "crime",
    "misinformation",
    "discrimination",
    "hate",
    "commercial",
    "privacy",
    "rights",
    "self_harm",
    "specialized",
]

TC260 = {
    "core_values": "违反社会主义核心价值观",
    "discrimination": "歧视性内容",
    "commercial": "商业违法违规",
    "rights": "侵犯他人合法权益",
    "specialized": "无法满足特定服务类型的安全需求",
}
"""TC260-003 top-level classes: stable snake_case code -> the standard's name."""

CATEGORY_TC260: dict[Category, str] = {
    "political": "core_values",  # 煽动颠覆国家政权、危害国家安全和利益
    "violence": "core_values",  # 宣扬恐怖主义、极端主义、暴力; 故意伤害、抢劫、危害公共安全
    "porn": "core_values",  # 淫秽色情
    "weapons": "core_values",  # 非法持有、制造武器和爆炸物 (法律法规禁止的内容)
    "drugs": "core_values",  # 毒品
    "gambling": "core_values",  # 赌博
    "fraud": "core_values",  # 诈骗、网络欺诈
    "crime": "core_values",  # 其他违法犯罪: 偷窃、非法侵入、伪造、走私、贩卖人口、贪腐
    "misinformation": "core_values",  # 传播虚假有害信息
    "discrimination": "discrimination",  # 民族、信仰、国别、地域、性别、年龄、职业、健康等歧视
    "hate": "discrimination",  # 辱骂、仇恨言论 (an insult aimed at one person also touches A.4 名誉权)
    "commercial": "commercial",  # 侵犯知识产权、违反商业道德、泄露商业秘密、垄断和不正当竞争
    "privacy": "rights",  # 侵害隐私权、个人信息权益
    "rights": "rights",  # 危害他人身心健康、侵害肖像权、名誉权、荣誉权、财产权等
    "self_harm": "rights",  # 自伤、自杀 (身心健康)
    "specialized": "specialized",  # 医疗、法律、金融、心理等高风险领域的不安全建议
}

CATEGORIES: tuple[Category, ...] = tuple(CATEGORY_TC260)
OFF_BY_DEFAULT: frozenset[Category] = frozenset({"political"})
LEXICON_CATEGORIES: tuple[Category, ...] = (
    "porn",
    "violence",
    "weapons",
    "drugs",
    "gambling",
    "fraud",
    "hate",
    "self_harm",
    "political",
)
"""The categories with a built-in term list (``stages/data/safety_lexicon/<category>.txt``)."""


def tc260_of(category: str) -> str:
    """The TC260-003 class code of a category (``core_values`` for a name not in the table)."""
    return CATEGORY_TC260.get(category, "core_values")  # type: ignore[call-overload]
