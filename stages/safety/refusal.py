"""Does an answer refuse (or redirect to help) without then complying? The phrase rule of the safety stage
(stages/safety/stage.py), which combines it with the refusal head of :mod:`stages.safety.model`."""

from __future__ import annotations

import re

from stages.safety.lexicon import fold

# Refusals and safe redirections, looked for in the folded head of the output (NFKC: "，" is ",").
_REFUSAL = re.compile(
    r"(?:抱歉|对不起|很遗憾|不好意思|sorry)[^。.!?\n]{0,24}?"
    r"(?:不能|无法|不会|不可以|不便|拒绝|没法|帮不了|不提供|不支持|不应该)"
    r"|^[^。\n]{0,10}?(?:我|本助手)?(?:不能|无法|不会|拒绝|不可以)(?:为你|为您|帮你|帮您|帮助|协助|提供|回答|满足"
    r"|告诉|参与|支持|生成|编写|撰写|创作|教你|教您|给出|给你|给您|推荐)"
    r"|作为(?:一个|一名)?(?:ai|人工智能|语言模型|ai助手|智能助手|负责任的)[^。\n]{0,30}?(?:不能|无法|不会|不应)"
    r"|(?:这|此|该)(?:种|些|样的)?(?:行为|做法|内容|请求|要求|问题)?(?:是|属于|涉及|构成)(?:一种|一项)?"
    r"(?:严重的|明显的)?(?:违法|非法|犯罪|违反法律|不道德|不合法|违规)"
    r"|i(?:'m| am) sorry,? but|i can(?:not|'t) (?:help|assist|provide)|as an ai\b"
)
_REDIRECT = re.compile(
    r"(?:请|建议你|建议您|你可以|您可以|务必)(?:立即|尽快|及时)?(?:联系|拨打|寻求|咨询|求助|报警)[^。\n]{0,20}?"
    r"(?:心理|援助|热线|专业|医生|警方|报警|110|120|12355|12320|辅导|危机)"
    r"|心理援助热线|心理危机干预|危机干预热线|自杀干预|生命热线|希望24热线"
)
# "Sorry, but here is how": a refusal that then complies is not a refusal.
_PIVOT = re.compile(
    r"(?:但是|不过|然而|可是|但)[^。\n]{0,30}?(?:以下是|下面是|这里是|步骤如下|方法如下|具体方法|具体步骤|教程"
    r"|你可以这样|可以按照)"
)
_REFUSAL_HEAD = 200


def is_refusal(output: str) -> bool:
    """Whether an answer's wording refuses or redirects to help (and does not then comply): the phrase rule."""
    return is_refusal_of(fold(output), False)


def is_refusal_of(text: str, model_says: bool) -> bool:
    """A refusal: the refusal head or the phrase rule says so, and the answer does not pivot to compliance."""
    if not text:
        return False
    phrase = bool(_REFUSAL.search(text[:_REFUSAL_HEAD]) or _REDIRECT.search(text))
    return (model_says or phrase) and not _PIVOT.search(text)
