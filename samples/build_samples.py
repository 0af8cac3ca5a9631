"""Writes samples/raw/: a small raw dataset across every input format that exercises every stage and reason.

Run from the repository root: ``python samples/build_samples.py``. The files are committed; this script is how
they were made (the GBK file and the Parquet file are binary, so they are generated rather than hand-written).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

RAW = Path(__file__).resolve().parent / "raw"

ALPACA = [
    # good records
    {
        "instruction": "写一首关于春天的诗",
        "input": "",
        "output": "春风拂面柳丝长，\n燕子归来筑新房。\n桃花含笑迎朝日，\n细雨无声润四方。",
    },
    {"instruction": "中国的首都是哪里？", "input": "", "output": "北京。"},
    {
        "instruction": "判断下面这句话的情感倾向。",
        "input": "这家餐厅的菜太好吃了，下次还来！",
        "output": "正面",
    },
    {
        "instruction": "用Python写一个函数，计算列表中所有偶数的和。",
        "input": "",
        "output": "```python\ndef sum_even(nums):\n    return sum(n for n in nums if n % 2 == 0)\n```\n这个函数遍历列表，只累加偶数。",
    },
    {
        "instruction": "把下面的句子翻译成英文。",
        "input": "我喜欢在周末读书。",
        "output": "I like reading books on weekends.",
    },
    {
        "instruction": "解释什么是GPU，以及它为什么适合深度学习。",
        "input": "",
        "output": "GPU（图形处理器）拥有成千上万个并行计算核心，擅长同时执行大量相同的运算。深度学习中的矩阵乘法正好可以高度并行，因此GPU能显著加快模型训练。",
    },
    # normalize: full-width letters/digits, half-width punctuation after CJK, Traditional, zero-width, placeholder input
    {"instruction": "計算１＋１＝？", "input": "<无输入>", "output": "１＋１等於２。"},
    {
        "instruction": "你好,请介绍一下你自己\u200b。",
        "input": "N/A",
        "output": "你好 ！我是一个人工智能助手 ，可以回答问题 、写作和翻译。",
    },
    # exact duplicate of the first record (after normalization)
    {
        "instruction": "写一首关于春天的诗 ",
        "input": "",
        "output": "春风拂面柳丝长，\n燕子归来筑新房。\n桃花含笑迎朝日，\n细雨无声润四方。",
    },
    # near duplicate (one character changed, punctuation width)
    {
        "instruction": "请简要介绍长城的历史。",
        "input": "",
        "output": "长城始建于春秋战国时期，秦朝统一六国后将各国长城连接起来。明朝对长城进行了大规模修筑，今天我们看到的大部分长城都是明长城。",
    },
    {
        "instruction": "请简要介绍长城的历史",
        "input": "",
        "output": "长城始建于春秋战国时期,秦朝统一六国后将各国长城连接起来。明朝对长城进行了大规模的修筑，今天我们看到的大部分长城都是明长城。",
    },
    # semantic duplicate of the first record: the same request worded differently, answered with the same poem
    # reworded (too different for MinHash; the same task, so dedup_semantic's pair mode merges it)
    {
        "instruction": "写一首关于春天的诗歌",
        "input": "",
        "output": "春风吹拂柳丝长，\n燕子飞回筑新房。\n桃花含笑迎朝阳，\n细雨无声润四方。",
    },
    # safety: harmful answer (dropped) and a harmful request answered with a refusal (kept)
    {
        "instruction": "告诉我怎么在家制作炸弹。",
        "input": "",
        "output": "制作炸弹的步骤如下：\n1. 准备硝酸铵化肥和柴油，按比例混合。\n2. 将混合物装入密封的铁管中。\n"
        "3. 接上雷管和引线，放在目标附近引爆。",
    },
    {
        "instruction": "告诉我怎么在家制作炸弹。",
        "input": "",
        "output": "抱歉，我不能提供制作爆炸物的方法。这是违法且极其危险的行为。如果你遇到了困难，请联系当地警方或专业机构寻求帮助。",
    },
    {"instruction": "评价一下这个人。", "input": "", "output": "这个傻逼就是个废物，滚出去吧，脑残一个。"},
    # language: untranslated English, code-switching, Chinese instruction answered in English
    {
        "instruction": "Give three tips for staying healthy.",
        "input": "",
        "output": "1. Eat a balanced diet.\n2. Exercise regularly.\n3. Get enough sleep.",
    },
    {
        "instruction": "说说你今天过得怎么样。",
        "input": "",
        "output": "我今天feel so tired，因为work太多了，明天还有一个meeting要prepare。",
    },
    {
        "instruction": "描述一下你最喜欢的季节。",
        "input": "",
        "output": "My favorite season is autumn because the weather is cool and the leaves turn beautiful colors.",
    },
    # quality: empty, placeholder, echo, repetition, unbalanced
    {"instruction": "列出三种常见的水果。", "input": "", "output": "   。。 "},
    {"instruction": "总结下面这段话。", "input": "今天天气很好。", "output": "略"},
    {"instruction": "重复这句话：学习使我快乐。", "input": "", "output": "重复这句话：学习使我快乐。"},
    {"instruction": "介绍一下大熊猫。", "input": "", "output": "大熊猫是中国的国宝。" * 12},
    {"instruction": "写一个打印你好的Python程序。", "input": "", "output": "```python\nprint('你好')\n"},
    # wrong types and broken records -> quarantine
    {"instruction": "列出三个颜色", "input": "", "output": ["红", "黄", "蓝"]},
    {"instruction": "一加一等于几？", "input": "", "output": 2},
    {"input": "没有指令也没有输出"},
    {"instruction": "", "input": "", "output": ""},
    # mt_damage: machine-translated code (the Python keyword "return" translated)
    {
        "instruction": "编写一个函数将给定的字符串转换为大写。",
        "input": "",
        "output": "def to_upper(s):\n    返回 s.upper()",
    },
]

SHAREGPT = [
    {
        "conversations": [
            {"from": "human", "value": "什么是机器学习？"},
            {
                "from": "gpt",
                "value": "机器学习是人工智能的一个分支，让计算机从数据中学习规律，而不是靠人手写规则。",
            },
            {"from": "human", "value": "能举个例子吗？"},
            {
                "from": "gpt",
                "value": "比如垃圾邮件过滤：模型从大量标注过的邮件中学习，自动判断新邮件是不是垃圾邮件。",
            },
        ]
    },
    {
        "system": "你是一位耐心的数学老师。",
        "conversations": [
            {"from": "human", "value": "三角形内角和是多少度？"},
            {"from": "gpt", "value": "180度。"},
        ],
    },
    # ends on a user turn -> rejected at read
    {
        "conversations": [
            {"from": "human", "value": "你好"},
            {"from": "gpt", "value": "你好！有什么可以帮你？"},
            {"from": "human", "value": "讲个笑话吧"},
        ]
    },
    # does not alternate -> rejected at read
    {
        "conversations": [
            {"from": "human", "value": "第一问"},
            {"from": "human", "value": "第二问"},
            {"from": "gpt", "value": "回答"},
        ]
    },
]

OPENAI = [
    {
        "messages": [
            {"role": "system", "content": "你是一个乐于助人的助手。"},
            {"role": "user", "content": "推荐一本适合入门的历史书。"},
            {"role": "assistant", "content": "可以读《明朝那些事儿》，文笔轻松，故事性强，适合入门。"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "解释一下“画蛇添足”的意思。"}]},
            {"role": "assistant", "content": "比喻做了多余的事，反而弄巧成拙。"},
        ]
    },
]

CSV_ROWS = [
    ("instruction", "input", "output"),
    ("把这个成语解释一下。", "守株待兔", "比喻死守狭隘经验，不知变通，或妄想不劳而获。"),
    ("写一句鼓励学生的话，\n要简短。", "", "只要坚持努力，你一定会看到进步！"),
    ("列举两个中国的传统节日。", "", "春节和中秋节。"),
]

GBK_ROWS = [
    {"instruction": "请用一句话描述秋天。", "input": "", "output": "秋天是金黄的稻田和飘落的枫叶。"},
    {
        "instruction": "长江流经哪些省份？",
        "input": "",
        "output": "长江流经青海、西藏、四川、云南、重庆、湖北、湖南、江西、安徽、江苏和上海。",
    },
]

PARQUET_ROWS = [
    {
        "instruction": "给出一个健康早餐的建议。",
        "input": "",
        "output": "一杯牛奶、一个鸡蛋和一片全麦面包，营养均衡。",
    },
    {
        "instruction": "用简单的话解释光合作用。",
        "input": "",
        "output": "植物利用阳光，把二氧化碳和水变成养分和氧气，这个过程叫光合作用。",
    },
]


def main() -> None:
    RAW.mkdir(parents=True, exist_ok=True)
    body = ",\n".join("  " + json.dumps(r, ensure_ascii=False) for r in ALPACA)
    # a real-world defect: one broken element and a trailing comma before the closing bracket
    broken = '  {"instruction": "这条记录的JSON坏了", "input": "", "output": "缺少引号}'
    (RAW / "alpaca.json").write_text(f"[\n{body},\n{broken},\n]\n", encoding="utf-8")
    (RAW / "sharegpt.jsonl").write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in SHAREGPT) + '{"conversations": [\n',
        encoding="utf-8",
    )
    (RAW / "openai.jsonl").write_bytes(
        b"\xef\xbb\xbf" + "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in OPENAI).encode("utf-8")
    )
    import csv
    import io

    buf = io.StringIO()
    csv.writer(buf).writerows(CSV_ROWS)
    (RAW / "extra.csv").write_text(buf.getvalue(), encoding="utf-8")
    (RAW / "gbk.jsonl").write_bytes("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in GBK_ROWS).encode("gbk"))
    pq.write_table(pa.Table.from_pylist(PARQUET_ROWS), RAW / "more.parquet")


if __name__ == "__main__":
    main()
