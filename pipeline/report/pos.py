"""Part-of-speech tags for the report's sample of instructions, at the cost of the sample, not of jieba's loading.

The report tags at most :data:`pipeline.report.collect.SAMPLE_SIZE` short clauses. With ``jieba.posseg`` that
costs about a second whatever the input size: loading jieba's 500k-entry prefix dictionary, reading its 350k
word tags and importing the tagger's HMM tables. :class:`SampleTagger` runs the same algorithm (jieba's
``POSTokenizer.cut`` with ``HMM=True`` over jieba's own dictionary, copied below from jieba 0.42, MIT licence)
over the part of those tables that the texts it tags can reach:

* every dictionary lookup the algorithm makes is of a substring of the text, and jieba's prefix dictionary holds
  every prefix of its words, so the entries a text can reach are found length by length (a substring of length
  ``n + 1`` is looked up only when its first ``n`` characters are an entry);
* the HMM for unknown words needs only the emission and state tables of the text's characters.

The tables come from jieba's own loaded objects, written once as Arrow files (and a small marshal file) to a
cache folder beside jieba's own cache (``tempfile.gettempdir()``), named after the sizes and times of jieba's
dictionary and model files and the Python version; each run memory-maps them and reads only the matching rows.
Where the folder cannot be written, or another user made it, the tables are built in memory (the old cost, the
same tags). ``tests/pipeline/report/test_pos.py`` checks the tags against
``jieba.posseg`` itself.
"""

from __future__ import annotations

import hashlib
import importlib.util
import marshal
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterable, Iterator
from math import log
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

FORMAT = 1  # of the cache folder's files
MIN_FLOAT = -3.14e100
MIN_INF = float("-inf")

# jieba.posseg's patterns
_RE_HAN_DETAIL = re.compile("([\u4e00-\u9fd5]+)")
_RE_SKIP_DETAIL = re.compile(r"([\.0-9]+|[a-zA-Z0-9]+)")
_RE_HAN_INTERNAL = re.compile(r"([\u4E00-\u9FD5a-zA-Z0-9+#&\._]+)")
_RE_SKIP_INTERNAL = re.compile(r"(\r\n|\s)")
_RE_ENG = re.compile("[a-zA-Z0-9]+")
_RE_NUM = re.compile(r"[\.0-9]+")

_WORDS = pa.schema([("word", pa.string()), ("freq", pa.int64()), ("tag", pa.string())])
_EMIT = pa.schema([("char", pa.string()), ("state", pa.int32()), ("prob", pa.float64())])
_CHAR_STATES = pa.schema([("char", pa.string()), ("states", pa.list_(pa.int32()))])


def _jieba_dir() -> Path:
    spec = importlib.util.find_spec("jieba")
    if spec is None or spec.origin is None:  # pragma: no cover - jieba is a dependency
        raise ImportError("the report's part-of-speech sample needs jieba: pip install jieba")
    return Path(spec.origin).parent


def cache_dir() -> Path:
    """The cache folder for the installed jieba (its name changes when jieba's dictionary or model does)."""
    root = _jieba_dir()
    stamp: list[Any] = [FORMAT, sys.version]  # marshal's format is Python's
    for name in ("dict.txt", "posseg/char_state_tab.py", "posseg/prob_emit.py", "posseg/prob_trans.py"):
        st = (root / name).stat()
        stamp += [st.st_size, st.st_mtime_ns]
    key = hashlib.sha1("-".join(str(s) for s in stamp).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"zhcurate-jieba-pos-{key}"


def _build_tables() -> dict[str, Any]:
    """jieba's own loaded dictionary, word tags and POS HMM, as tables (the slow path: about 2 s, once)."""
    import logging

    import jieba
    from jieba import posseg

    jieba.setLogLevel(logging.WARNING)
    tok = jieba.Tokenizer()
    tok.initialize()
    tags = posseg.dt.word_tag_tab
    by_len: dict[int, list[str]] = {}
    for word in tok.FREQ:
        by_len.setdefault(len(word), []).append(word)
    words = [
        pa.record_batch(
            [
                pa.array(ws, pa.string()),
                pa.array([tok.FREQ[w] for w in ws], pa.int64()),
                pa.array([tags.get(w) for w in ws]),
            ],
            schema=_WORDS,
        )
        for _, ws in sorted(by_len.items())
    ]
    lengths = sorted(by_len)
    states = sorted(posseg.trans_P)
    index = {s: i for i, s in enumerate(states)}
    emit_rows = [(c, index[s], p) for s in states for c, p in posseg.emit_P[s].items()]
    emit = pa.table(
        [
            pa.array([r[0] for r in emit_rows]),
            pa.array([r[1] for r in emit_rows], pa.int32()),
            pa.array([r[2] for r in emit_rows]),
        ],
        schema=_EMIT,
    )
    chars = list(posseg.char_state_tab_P)
    char_states = pa.table(
        [
            pa.array(chars),
            pa.array([[index[s] for s in posseg.char_state_tab_P[c]] for c in chars], pa.list_(pa.int32())),
        ],
        schema=_CHAR_STATES,
    )
    meta = {
        "total": tok.total,
        "lengths": lengths,
        "states": [list(s) for s in states],
        "start": [posseg.start_P[s] for s in states],
        "trans": [[[index[t], p] for t, p in posseg.trans_P[s].items()] for s in states],
    }
    return {"words": words, "emit": emit, "char_states": char_states, "meta": meta}


def _write(folder: Path, tables: dict[str, Any]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp-", dir=folder.parent))
    with pa.OSFile(str(tmp / "words.arrow"), "wb") as f, pa.ipc.new_file(f, _WORDS) as w:
        for batch in tables["words"]:
            w.write_batch(batch)
    for name in ("emit", "char_states"):
        with pa.OSFile(str(tmp / f"{name}.arrow"), "wb") as f, pa.ipc.new_file(f, tables[name].schema) as w:
            w.write_table(tables[name])
    (tmp / "meta.marshal").write_bytes(marshal.dumps(tables["meta"]))
    try:
        os.replace(tmp, folder)
    except OSError:  # another process wrote it first
        for p in tmp.iterdir():
            p.unlink()
        tmp.rmdir()


def _load() -> dict[str, Any]:
    folder = cache_dir()
    if (folder / "meta.marshal").is_file() and not _ours(folder):
        return _build_tables()  # a folder of that name made by someone else: not read
    if not (folder / "meta.marshal").is_file():
        tables = _build_tables()
        try:
            _write(folder, tables)
        except OSError:
            return tables  # a read-only temp folder: use them from memory
    words = pa.ipc.open_file(pa.memory_map(str(folder / "words.arrow")))
    return {
        "words": [words.get_batch(i) for i in range(words.num_record_batches)],
        "emit": pa.ipc.open_file(pa.memory_map(str(folder / "emit.arrow"))).read_all(),
        "char_states": pa.ipc.open_file(pa.memory_map(str(folder / "char_states.arrow"))).read_all(),
        "meta": marshal.loads((folder / "meta.marshal").read_bytes()),
    }


def _ours(folder: Path) -> bool:
    """Whether this user made the folder (it sits in the shared temp folder; marshal data is not for strangers)."""
    getuid = getattr(os, "getuid", None)
    return getuid is None or folder.stat().st_uid == getuid()


def _matching(table: pa.Table | pa.RecordBatch, column: str, wanted: Iterable[str]) -> list[dict[str, Any]]:
    values = pa.array(list(wanted), pa.string())
    if len(values) == 0:
        return []
    return table.filter(pc.is_in(table.column(column), value_set=values)).to_pylist()


class SampleTagger:
    """jieba's part-of-speech tagging (``jieba.posseg.cut(text, HMM=True)``, jieba's own dictionary) of texts
    made known first with :meth:`add`; tagging a text that was not added raises ``KeyError``."""

    def __init__(self) -> None:
        self._tables: dict[str, Any] | None = None
        self.freq: dict[str, int] = {}
        self.tags: dict[str, str] = {}
        self.emit: list[dict[str, float]] = []
        self.char_states: dict[str, tuple[tuple[str, str], ...]] = {}
        self._known: set[str] = set()  # texts added
        self._chars: set[str] = set()
        self._lock = threading.Lock()

    def add(self, texts: Iterable[str]) -> None:
        """Read the dictionary entries and HMM rows that ``texts`` can reach."""
        with self._lock:
            new = {t for t in texts if t and t not in self._known}
            if not new:
                return
            if self._tables is None:
                self._tables = _load()
                meta = self._tables["meta"]
                self.total = meta["total"]
                self.states = [tuple(s) for s in meta["states"]]
                self.start = {s: p for s, p in zip(self.states, meta["start"])}
                self.trans = {s: {self.states[t]: p for t, p in row} for s, row in zip(self.states, meta["trans"])}
                self.emit_by_state: dict[tuple[str, str], dict[str, float]] = {s: {} for s in self.states}
            self._add_words(new)
            self._add_chars({c for t in new for c in t} - self._chars)
            self._known |= new

    def _add_words(self, texts: set[str]) -> None:
        tables = self._tables
        assert tables is not None
        by_len = dict(zip(tables["meta"]["lengths"], tables["words"]))
        starts = [(t, k) for t in texts for k in range(len(t))]  # substrings t[k:k+n] that may be entries
        n = 1
        while starts and n in by_len:
            wanted = {t[k : k + n] for t, k in starts}
            found = _matching(by_len[n], "word", wanted - self.freq.keys())
            for row in found:
                self.freq[row["word"]] = row["freq"]
                if row["tag"] is not None:
                    self.tags[row["word"]] = row["tag"]
            starts = [(t, k) for t, k in starts if k + n < len(t) and t[k : k + n] in self.freq]
            n += 1

    def _add_chars(self, chars: set[str]) -> None:
        tables = self._tables
        assert tables is not None
        for row in _matching(tables["emit"], "char", chars):
            self.emit_by_state[self.states[row["state"]]][row["char"]] = row["prob"]
        for row in _matching(tables["char_states"], "char", chars):
            self.char_states[row["char"]] = tuple(self.states[i] for i in row["states"])
        self._chars |= chars

    def posseg(self, text: str) -> list[tuple[str, str]]:
        """``(word, tag)`` pairs, as ``[(p.word, p.flag) for p in jieba.posseg.cut(text)]`` gives them."""
        if not text:
            return []
        if text not in self._known:
            raise KeyError(f"SampleTagger: add the text before tagging it: {text[:40]!r}")
        return list(self._cut_internal(text))

    # ------------------------------------------------------------ jieba 0.42 (MIT), jieba/__init__.py
    def _get_dag(self, sentence: str) -> dict[int, list[int]]:
        freq, dag, n = self.freq, {}, len(sentence)
        for k in range(n):
            tmplist = []
            i = k
            frag = sentence[k]
            while i < n and frag in freq:
                if freq[frag]:
                    tmplist.append(i)
                i += 1
                frag = sentence[k : i + 1]
            if not tmplist:
                tmplist.append(k)
            dag[k] = tmplist
        return dag

    def _calc(self, sentence: str, dag: dict[int, list[int]]) -> dict[int, tuple[float, int]]:
        n, freq = len(sentence), self.freq
        route: dict[int, tuple[float, int]] = {n: (0, 0)}
        logtotal = log(self.total)
        for idx in range(n - 1, -1, -1):
            route[idx] = max(
                (log(freq.get(sentence[idx : x + 1]) or 1) - logtotal + route[x + 1][0], x) for x in dag[idx]
            )
        return route

    # ------------------------------------------------------------ jieba 0.42 (MIT), jieba/posseg/
    def _viterbi(self, obs: str) -> list[tuple[str, str]]:
        states, start_p, trans_p, emit_p = self.char_states, self.start, self.trans, self.emit_by_state
        v: list[dict[tuple[str, str], float]] = [{}]
        mem_path: list[dict[tuple[str, str], Any]] = [{}]
        all_states = trans_p.keys()
        for y in states.get(obs[0], all_states):
            v[0][y] = start_p[y] + emit_p[y].get(obs[0], MIN_FLOAT)
            mem_path[0][y] = ""
        for t in range(1, len(obs)):
            v.append({})
            mem_path.append({})
            prev_states = [x for x in mem_path[t - 1].keys() if len(trans_p[x]) > 0]
            prev_states_expect_next = {y for x in prev_states for y in trans_p[x].keys()}
            obs_states = set(states.get(obs[t], all_states)) & prev_states_expect_next
            if not obs_states:
                obs_states = prev_states_expect_next if prev_states_expect_next else set(all_states)
            prev_v = v[t - 1]
            for y in obs_states:
                emit = emit_p[y].get(obs[t], MIN_FLOAT)
                # jieba scores every predecessor; one without a transition to y scores -inf and cannot win
                # unless all do, and then the full expression below decides as jieba does
                best = max(
                    ((prev_v[y0] + tr[y] + emit, y0) for y0 in prev_states if y in (tr := trans_p[y0])),
                    default=(MIN_INF, None),
                )
                if best[0] == MIN_INF:
                    best = max((prev_v[y0] + trans_p[y0].get(y, MIN_INF) + emit, y0) for y0 in prev_states)
                v[t][y], mem_path[t][y] = best
        _, state = max((v[-1][y], y) for y in mem_path[-1].keys())
        route: list[Any] = [None] * len(obs)
        i = len(obs) - 1
        while i >= 0:
            route[i] = state
            state = mem_path[i][state]
            i -= 1
        return route

    def _cut_hmm(self, sentence: str) -> Iterator[tuple[str, str]]:
        pos_list = self._viterbi(sentence)
        begin, nexti = 0, 0
        for i, char in enumerate(sentence):
            pos = pos_list[i][0]
            if pos == "B":
                begin = i
            elif pos == "E":
                yield sentence[begin : i + 1], pos_list[i][1]
                nexti = i + 1
            elif pos == "S":
                yield char, pos_list[i][1]
                nexti = i + 1
        if nexti < len(sentence):
            yield sentence[nexti:], pos_list[nexti][1]

    def _cut_detail(self, sentence: str) -> Iterator[tuple[str, str]]:
        for blk in _RE_HAN_DETAIL.split(sentence):
            if _RE_HAN_DETAIL.match(blk):
                yield from self._cut_hmm(blk)
            else:
                for x in _RE_SKIP_DETAIL.split(blk):
                    if x:
                        if _RE_NUM.match(x):
                            yield x, "m"
                        elif _RE_ENG.match(x):
                            yield x, "eng"
                        else:
                            yield x, "x"

    def _buffered(self, buf: str) -> Iterator[tuple[str, str]]:
        tags = self.tags
        if len(buf) == 1:
            yield buf, tags.get(buf, "x")
        elif not self.freq.get(buf):
            yield from self._cut_detail(buf)
        else:
            for elem in buf:
                yield elem, tags.get(elem, "x")

    def _cut_dag(self, sentence: str) -> Iterator[tuple[str, str]]:
        route = self._calc(sentence, self._get_dag(sentence))
        tags = self.tags
        x, buf, n = 0, "", len(sentence)
        while x < n:
            y = route[x][1] + 1
            l_word = sentence[x:y]
            if y - x == 1:
                buf += l_word
            else:
                if buf:
                    yield from self._buffered(buf)
                    buf = ""
                yield l_word, tags.get(l_word, "x")
            x = y
        if buf:
            yield from self._buffered(buf)

    def _cut_internal(self, sentence: str) -> Iterator[tuple[str, str]]:
        for blk in _RE_HAN_INTERNAL.split(sentence):
            if _RE_HAN_INTERNAL.match(blk):
                yield from self._cut_dag(blk)
            else:
                for x in _RE_SKIP_INTERNAL.split(blk):
                    if _RE_SKIP_INTERNAL.match(x):
                        yield x, "x"
                    else:
                        for xx in x:
                            if _RE_NUM.match(xx):
                                yield xx, "m"
                            elif _RE_ENG.match(x):
                                yield xx, "eng"
                            else:
                                yield xx, "x"


_TAGGER: SampleTagger | None = None
_TAGGER_LOCK = threading.Lock()


def sample_tagger() -> SampleTagger:
    """The process-wide :class:`SampleTagger` (its tables grow with the texts added)."""
    global _TAGGER
    with _TAGGER_LOCK:
        if _TAGGER is None:
            _TAGGER = SampleTagger()
        return _TAGGER
