"""The word lists and task markers of the language stage (stages/language/stage.py): which Latin words are English
function words, chat words or links inside names, which instructions ask for another language or for Latin text
that is no English prose, and the word-level helpers (pinyin, names, titles, acronym glosses, the prompt's words).
"""

from __future__ import annotations

import re

LATIN = "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
_WORD2 = re.compile(f"[{LATIN}]{{2,}}")
# Pinyin: one or more syllables (initial, final, optional tone mark); a word with a tone mark that is all
# syllables is pinyin, and so is a toneless syllable next to one ("nǐ hǎo ma").
_TONED = "āáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜ"
PINYIN_TONES = re.compile(f"[{_TONED}]")
PINYIN_WORD = re.compile(
    f"(?:(?:[zcs]h|[bpmfdtnlgkhjqxrzcsyw])?[aeiouü{_TONED}]+(?:ng|n|r)?(?![aeiouü{_TONED}]))+", re.I
)

TRANSLATION = re.compile(r"翻译|译成|译为|译作|翻成|译文|translat")
TARGET_ZH = re.compile(
    r"(?:译|翻)\s*(?:成|为|作|到)\s*(?:简体|繁体)?(?:中文|汉语|华语|普通话|粤语|文言文)|into\s+(?:chinese|mandarin)",
)
FOREIGN_LANGUAGE = re.compile(
    r"英语|英文|英式|美式|english|法语|法文|德语|德文|西班牙语|意大利语|葡萄牙语|俄语|日语|日文|韩语|韩文|"
    r"拉丁语|阿拉伯语|外语|外国|不同语言|其他语言|另一种语言|多种语言|french|spanish|german|japanese|korean",
)
# Task markers are matched against the lower-cased instruction.
# Tasks about words and grammar: their subject matter is (usually english) words.
WORD_TASK = re.compile(
    r"单词|词组|短语|语法|时态|语态|拼写|字母|押韵|同义词|近义词|反义词|词性|形容词|名词|动词|副词|介词|代词|冠词|"
    r"连词|习语|俚语|缩写|首字母|音节|后缀|前缀|词根|复数|过去式|分词|比较级|最高级|拼音|注音|同音|谐音|韵|方言|口音|"
    r"homophone|dialect|accent"
)
CODE_TASK = re.compile(
    r"代码|程序|函数|脚本|算法|编程|伪代码|正则|查询|数据库|sql|html|css|xml|json|api|http|python|java|c\+\+|"
    r"c#|php|ruby|golang|swift|kotlin|rust|bash|shell|linux|命令|网页|表单|数组|字典|类|方法|循环|变量|excel",
)
# English function words. Capitalised, they start sentences rather than name things.
FUNCTION_WORDS = frozenset(
    """a an the this that these those it its is are was were be been being am i you he she we they me him her
    us them my your his our their and or but if so then than in on at to of for with from by as into about not
    no yes do does did done have has had will would can could should may might must shall what which who whom
    whose how why when where there here all some any each every both one also only just very too please hello
    hi thank thanks let make write create generate give find describe explain list name identify""".split()
)
# Tasks whose answer is legitimately Latin text that is not English prose (checked on the lower-cased instruction).
OTHER_TEXT_TASKS = (
    (
        "encoding_task",
        re.compile(
            r"密码|加密|解密|密文|明文|凯撒|编码|解码|暗号|摩斯|摩尔斯|猪拉丁|倒序|逆序|倒着|反转|颠倒|打乱|"
            r"cipher|encrypt|decrypt|encod|decod|rot13|base64|pig latin|morse|anagram|reverse|scramble"
        ),
    ),
    ("notation_task", re.compile(r"国际象棋|棋谱|记谱|\bfen\b|乐谱|简谱|和弦|音符|化学式|分子式|notation|chord")),
    (
        "names_task",
        re.compile(
            r"歌|曲|小调|诗|押韵|口号|标语|广告语|菜|食|餐|饮料|酒|料理|起名|取名|命名|品牌|书名|片名|地名|人名|"
            r"参考书目|参考文献|书目|引文|引用|citation|bibliograph|\bapa\b|\bmla\b|"
            r"jingle|slogan|lyric|song|poem|rhyme|recipe|dish|food|brand"
        ),
    ),
    ("search_task", re.compile(r"搜索|检索|搜寻|关键词|关键字|布尔|search|keyword|boolean|google")),
)
# Chat words that are no names even when capitalised: interjections, discourse markers, feelings.
CHAT_WORDS = frozenset(
    """anyway btw so actually really well sorry thanks yes no oh wow okay cool nice great good bad sad happy amazing
    awesome perfect fine whatever maybe honestly seriously basically literally totally definitely exactly sure bye
    oops yeah yep nope lol omg recently finally tired bored boring excited lonely busy crazy""".split()
)
# Lower-case words that link the capitalised words of one name: "Lord of the Flies", "Katrina and the Waves".
NAME_LINKS = frozenset("of the and or in on an for to at by with from de la le du des von van der del da di".split())
# Words whose share tells English prose from code, data and lists (identifiers rarely are these).
PROSE_WORDS = frozenset(
    """the an is are was were be been of to and in that it this for with as on by at from or not can will has
    have which you we they their its there""".split()
)


def glossed_name(m: re.Match[str]) -> str:
    """The phrase of a ``phrase (ACRONYM)`` match whose last words' initials spell the acronym, as one
    accepted name; the match unchanged otherwise."""
    words = re.findall(r"[A-Za-z]+", m.group(1))
    acronym = m.group(2).lower()
    tail = words[-len(acronym) :]
    if len(tail) == len(acronym) and "".join(w[0].lower() for w in tail) == acronym:
        head = m.group(1)[: m.group(1).rfind(tail[0])] if len(words) > len(tail) else ""
        return f"{head} Phrase ({m.group(2)})"
    return m.group(0)


def title_next(words: tuple[str, ...], k: int) -> bool:
    """Whether the word after ``words[k]`` is capitalised too (a title or a name: "Happy Valley")."""
    return k + 1 < len(words) and words[k + 1][0].isupper()


def inside_name(words: tuple[str, ...], k: int) -> bool:
    """Whether the link word ``words[k]`` sits between two capitalised words ("Board of Education")."""
    j = k - 1
    while j >= 0 and words[j] in NAME_LINKS:
        j -= 1
    if j < 0 or not words[j][0].isupper():
        return False
    j = k + 1
    while j < len(words) and words[j] in NAME_LINKS:
        j += 1
    return j < len(words) and words[j][0].isupper()


def pinyin_words(words: tuple[str, ...]) -> set[int]:
    """Positions of pinyin words: tone-marked syllables and the toneless syllables next to them."""
    if all(w.isascii() for w in words):
        return set()
    shaped = [PINYIN_WORD.fullmatch(w) is not None for w in words]
    toned = {k for k, w in enumerate(words) if shaped[k] and PINYIN_TONES.search(w)}
    return toned | {k for k in range(len(words)) if shaped[k] and (k - 1 in toned or k + 1 in toned)}


_SUFFIXES = ("ing", "es", "ed", "ly", "s", "d")


def stems(word: str) -> list[str]:
    """``word`` without one inflection suffix, every way it can be read (``memes`` → ``mem``, ``meme``)."""
    return [word[: -len(x)] for x in _SUFFIXES if word.endswith(x) and len(word) - len(x) >= 3]


def in_vocab(word: str, vocab: set[str]) -> bool:
    """``word`` or a stem of it is among the prompt's words or their stems (:func:`prompt_words`)."""
    return word in vocab or any(s in vocab for s in stems(word))


def prompt_words(*texts: str) -> set[str]:
    """The lower-cased Latin words of the prompt texts: an answer may repeat them."""
    words = {w.lower() for t in texts if t for w in _WORD2.findall(t)}
    return words | {s for w in words for s in stems(w)}


def offending(words: tuple[str, ...], vocab: set[str], terms: frozenset[str]) -> list[str]:
    """The words that are neither ``terms``, names, acronyms, parts of names, nor in the prompt (``vocab``)."""
    pinyin = pinyin_words(words)
    out = []
    last = len(words) - 1
    for k, w in enumerate(words):
        lw = w.lower()
        if lw in terms or k in pinyin or (vocab and in_vocab(lw, vocab)):
            continue
        if not w.islower():
            if w.isupper():
                continue  # an acronym or an operator (search syntax: OR, AND, NOT)
            if lw not in FUNCTION_WORDS and not (lw in CHAT_WORDS and not title_next(words, k)):
                continue  # a name ("Google"); but "Anyway，我们走吧" and "我觉得Amazing" are no names
            if k < last and words[k + 1][0].isupper():
                continue  # a title in title case: "The Tickle Monster", "There Will Come Soft Rains"
        elif lw in NAME_LINKS and inside_name(words, k):
            continue
        out.append(w)
    return out
