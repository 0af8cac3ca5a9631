"""dedup_semantic: paraphrases merged, other records kept, IVF == exact on small data, determinism, offline
failure, and that the embeddings (fingerprints) serve a re-run with another threshold.

The model is the tiny deterministic one of tests/conftest.py (bag of characters and a few synonyms); the
thresholds here (hybrid 0.55, cosine 0.78) suit it, not a real model. The real default threshold is
calibrated by bench/calibrate_semantic.py.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from schemas.errors import ConfigError
from schemas.record import CANONICAL_SCHEMA
from stages.base import StageResult
from stages.dedup.semantic import (
    REASON,
    SemanticDedupParams,
    SemanticDedupStage,
    SemanticFingerprint,
    leader_labels,
    priority_rank,
)
from stages.dedup.semantic_index import Pairs, SearchConfig, SparseRows, row_dots, similar_pairs

THRESHOLD = {"hybrid": 0.55, "cosine": 0.78}

# (instruction, input): two paraphrase pairs that share meaning more than characters, and unrelated records.
RECORDS: list[tuple[str, str]] = [
    ("写一首关于春天的诗", ""),  # 0
    ("解释一下光合作用的原理", ""),  # 1
    ("创作一首描写春天的诗歌", ""),  # 2: paraphrase of 0
    ("把这段话翻译成英文", "今天天气很好"),  # 3
    ("请说明光合作用的原理是什么", ""),  # 4: paraphrase of 1
    ("推荐几本适合初学者的Python书", ""),  # 5
    ("介绍一下长城的历史", ""),  # 6
]


def make_table(
    records: list[tuple[str, str]],
    seqs: list[int] | None = None,
    quality: list[float] | None = None,
    outputs: list[str] | None = None,
) -> pa.Table:
    seqs = seqs if seqs is not None else list(range(len(records)))
    n = len(records)
    table = pa.Table.from_pydict(
        {
            "id": [f"data.json#{s}" for s in seqs],
            "source": ["data.json"] * n,
            "system": [""] * n,
            "instruction": [r[0] for r in records],
            "input": [r[1] for r in records],
            "output": outputs if outputs is not None else ["好的。"] * n,
            "history": [[] for _ in range(n)],
        },
        schema=CANONICAL_SCHEMA,
    )
    table = table.append_column("_seq", pa.array(seqs, pa.int64()))
    if quality is not None:
        table = table.append_column("quality_score", pa.array(quality, pa.float64()))
    return table


def make_stage(model_dir: Path, similarity: str = "hybrid", **params: object) -> SemanticDedupStage:
    values = {
        "model": str(model_dir),
        "similarity": similarity,
        "threshold": THRESHOLD[similarity],
        "device": "cpu",
        **params,
    }
    return SemanticDedupStage(SemanticDedupParams.model_validate(values))


def run(stage: SemanticDedupStage, batches: list[pa.Table]) -> list[StageResult]:
    stage.check()
    resolution = stage.resolve([stage.fingerprint(b) for b in batches])
    return [stage.decide(b, resolution) for b in batches]


def decisions(results: list[StageResult]) -> dict[str, tuple[str | None, str | None]]:
    """id -> (reason, detail) over all batches."""
    out: dict[str, tuple[str | None, str | None]] = {}
    for result in results:
        for rid, reason, detail in zip(
            result.table.column("id").to_pylist(), result.reasons, result.details, strict=True
        ):
            out[rid] = (reason, detail)
    return out


@pytest.mark.parametrize("similarity", ["hybrid", "cosine"])
def test_paraphrases_are_merged_and_different_meanings_kept(tiny_model_dir: Path, similarity: str) -> None:
    stage = make_stage(tiny_model_dir, similarity)
    got = decisions(run(stage, [make_table(RECORDS)]))
    dropped = {rid: json.loads(d or "{}") for rid, (reason, d) in got.items() if reason is not None}
    assert {rid: reason for rid, (reason, _) in got.items() if reason} == {
        "data.json#2": REASON,
        "data.json#4": REASON,
    }
    # no quality_score: the earliest record of each pair is kept
    assert dropped["data.json#2"]["duplicate_of"] == "data.json#0"
    assert dropped["data.json#4"]["duplicate_of"] == "data.json#1"
    for detail in dropped.values():
        assert THRESHOLD[similarity] <= detail["similarity"] <= 1.0
        assert detail["cluster_size"] == 2
        assert 0.0 < detail["cosine"] <= 1.0


def test_higher_quality_twin_is_kept(tiny_model_dir: Path) -> None:
    stage = make_stage(tiny_model_dir)
    quality = [0.3, 0.5, 0.9, 0.5, 0.2, 0.5, 0.5]
    got = decisions(run(stage, [make_table(RECORDS, quality=quality)]))
    assert got["data.json#0"][0] == REASON
    assert json.loads(got["data.json#0"][1] or "")["duplicate_of"] == "data.json#2"
    assert got["data.json#4"][0] == REASON  # 0.2 < 0.5: the later, better one (1) stays
    assert got["data.json#2"][0] is None and got["data.json#1"][0] is None


def test_ivf_path_equals_exact_path_on_small_data(tiny_model_dir: Path) -> None:
    table = make_table(RECORDS * 12, seqs=list(range(len(RECORDS) * 12)))
    flat = decisions(run(make_stage(tiny_model_dir, index="flat"), [table]))
    ivf_stage = make_stage(tiny_model_dir, index="ivf")
    ivf = decisions(run(ivf_stage, [table]))
    assert flat == ivf
    assert sum(reason is not None for reason, _ in flat.values()) == len(RECORDS) * 12 - 5


def test_ivf_search_equals_flat_search_on_clustered_vectors() -> None:
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((300, 48)).astype(np.float32)
    vectors = np.repeat(centres, 5, axis=0) + 0.15 * rng.standard_normal((1500, 48)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    exact = similar_pairs(vectors, SearchConfig(threshold=0.9, index="flat"))
    approx = similar_pairs(vectors, SearchConfig(threshold=0.9, index="ivf", nlist=8, nprobe=8))
    assert exact.kind == "flat" and approx.kind == "ivf"
    assert len(exact) > 1000
    assert np.array_equal(exact.left, approx.left) and np.array_equal(exact.right, approx.right)
    np.testing.assert_allclose(exact.similarity, approx.similarity, atol=1e-5)
    assert np.all(exact.similarity >= 0.9) and np.all(exact.left < exact.right)


def test_decisions_do_not_depend_on_batching_or_runs(tiny_model_dir: Path) -> None:
    table = make_table(RECORDS)
    once = decisions(run(make_stage(tiny_model_dir), [table]))
    again = decisions(run(make_stage(tiny_model_dir), [table]))
    split = decisions(run(make_stage(tiny_model_dir, batch_size=2), [table.slice(0, 3), table.slice(3)]))
    assert once == again == split


def test_fingerprints_serve_a_rerun_with_another_threshold(tiny_model_dir: Path) -> None:
    first = make_stage(tiny_model_dir, "cosine")
    table = make_table(RECORDS)
    fingerprints = [pickle.loads(pickle.dumps(first.fingerprint(table)))]
    assert isinstance(fingerprints[0], SemanticFingerprint)
    assert fingerprints[0].embeddings.dtype == np.float16
    assert fingerprints[0].ngrams is None  # only the hybrid similarity needs them
    stricter = make_stage(tiny_model_dir, "cosine", threshold=0.83, nprobe=4, clustering="union_find")
    assert stricter.embedding_params() == first.embedding_params()
    assert stricter.fingerprint_params() != first.fingerprint_params()
    # resolve needs no model: the stored embeddings are enough
    resolution = stricter.resolve(fingerprints)
    got = decisions([stricter.decide(table, resolution)])
    assert [rid for rid, (reason, _) in got.items() if reason] == ["data.json#2"]  # 0.80 < 0.83 < 0.86
    assert make_stage(tiny_model_dir, "cosine", max_length=16).embedding_params() != first.embedding_params()
    assert make_stage(tiny_model_dir).embedding_params() != first.embedding_params()  # hybrid adds n-grams


def test_output_field_can_be_embedded_too(tiny_model_dir: Path) -> None:
    records = [("写一首关于春天的诗", ""), ("写一首关于春天的诗", "")]
    outputs = ["春风吹绿了江南岸，桃花笑映小河湾。", "今天股市大涨，银行板块领涨。"]
    table = make_table(records, outputs=outputs)
    by_instruction = decisions(run(make_stage(tiny_model_dir, mode="instruction"), [table]))
    with_output = decisions(
        run(make_stage(tiny_model_dir, mode="instruction", fields=["instruction", "output"]), [table])
    )
    pair = decisions(run(make_stage(tiny_model_dir), [table]))  # the default: the answers must agree too
    assert by_instruction["data.json#1"][0] == REASON
    assert with_output["data.json#1"][0] is None
    assert pair["data.json#1"][0] is None


def test_records_with_nothing_to_embed_are_kept_not_collapsed(tiny_model_dir: Path) -> None:
    stage = make_stage(tiny_model_dir)
    table = make_table([("", ""), ("  ", ""), ("写一首关于春天的诗", "")])
    results = run(stage, [table])
    assert results[0].reasons == [None, None, None]
    resolution = stage.resolve([stage.fingerprint(table)])
    assert stage.resolution_counters(resolution)["empty_text"] == 2


def test_leader_grouping_never_chains_but_union_find_does() -> None:
    # A~B (0.95) and B~C (0.93), A and C not similar: the leader keeps A and C, union-find keeps only A.
    pairs = Pairs(np.array([0, 1]), np.array([1, 2]), np.array([0.95, 0.93], np.float32), "flat")
    rank = priority_rank(np.full(3, np.nan), np.array([0, 1, 2]))
    assert leader_labels(pairs, rank).tolist() == [0, 0, 2]
    # a better-ranked C (quality) leads instead: C keeps, drops B; A (not similar to C) stays
    rank = priority_rank(np.array([0.1, 0.1, 0.9]), np.array([0, 1, 2]))
    assert leader_labels(pairs, rank).tolist() == [0, 2, 2]


def test_a_model_that_cannot_be_loaded_offline_fails_before_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    stage = SemanticDedupStage(SemanticDedupParams(model="zhcurate-test/no-such-model", threshold=0.9, device="cpu"))
    with pytest.raises(ConfigError) as failure:
        stage.check()
    message = str(failure.value)
    assert "zhcurate-test/no-such-model" in message
    assert "HF_HUB_OFFLINE" in message and "local" in message


def test_another_model_needs_an_explicit_threshold(tiny_model_dir: Path) -> None:
    stage = SemanticDedupStage(SemanticDedupParams(model=str(tiny_model_dir), device="cpu"))
    with pytest.raises(ConfigError, match="threshold"):
        stage.check()


def test_params_are_validated() -> None:
    with pytest.raises(ValidationError):
        SemanticDedupParams.model_validate({"fields": []})
    with pytest.raises(ValidationError):
        SemanticDedupParams.model_validate({"fields": ["instruction", "answer"]})
    with pytest.raises(ValidationError):
        SemanticDedupParams.model_validate({"threshold": 1.5})
    with pytest.raises(ValidationError):
        SemanticDedupParams.model_validate({"treshold": 0.9})


def test_hybrid_similarity_is_the_embedders_pair_similarity(tiny_model_dir: Path) -> None:
    from stages.dedup.embedder import NgramIdf, load_model, pair_similarity

    stage = make_stage(tiny_model_dir, threshold=0.3)
    table = make_table(RECORDS)
    fingerprint = stage.fingerprint(table)
    resolution = stage.resolve([fingerprint])
    got = decisions([stage.decide(table, resolution)])
    model = load_model(str(tiny_model_dir))
    texts = [a + ("\n" + b if b else "") for a, b in RECORDS]
    emb = model.encode(texts, normalize_embeddings=True)
    idf = NgramIdf.load(tiny_model_dir)
    dropped = [(rid, detail) for rid, (reason, detail) in got.items() if reason is not None]
    assert len(dropped) >= 2
    for rid, detail in dropped:
        row, kept = int(rid.split("#")[1]), int(json.loads(detail or "")["duplicate_of"].split("#")[1])
        expected = pair_similarity([texts[row]], [texts[kept]], emb[[row]], emb[[kept]], idf=idf)[0]
        assert json.loads(detail or "")["similarity"] == pytest.approx(expected, abs=2e-3)


def test_search_caps_partners_per_record_and_ignores_empty_rows() -> None:
    rng = np.random.default_rng(3)
    base = rng.standard_normal(16).astype(np.float32)
    clique = np.tile(base / np.linalg.norm(base), (10, 1))
    vectors = np.vstack([clique, np.zeros((2, 16), np.float32)])
    capped = similar_pairs(vectors, SearchConfig(threshold=0.95, index="flat", max_neighbors=3))
    full = similar_pairs(vectors, SearchConfig(threshold=0.95, index="flat"))
    assert len(full) == 45  # every pair of the 10 equal rows, none with the zero rows
    partners = np.bincount(np.concatenate([capped.left, capped.right]), minlength=12)
    assert partners[10:].tolist() == [0, 0]
    assert 3 <= len(capped) < 45 and partners[:10].min() >= 3


def test_stage_pickles_without_its_model_and_reloads_it(tiny_model_dir: Path) -> None:
    stage = make_stage(tiny_model_dir)
    stage.check()
    copy = pickle.loads(pickle.dumps(stage))
    assert copy._model is None
    table = make_table(RECORDS)
    np.testing.assert_array_equal(copy.fingerprint(table).embeddings, stage.fingerprint(table).embeddings)


def test_row_dots_match_scipy_over_stacked_batches() -> None:
    from scipy.sparse import random as sparse_random

    matrix = sparse_random(40, 500, density=0.05, format="csr", random_state=5, dtype=np.float32)
    parts = [SparseRows.from_csr(matrix[:15]), SparseRows.from_csr(matrix[15:])]
    rows = SparseRows.stack(parts)
    left, right = np.array([0, 3, 14, 15, 39, 7]), np.array([1, 3, 15, 30, 0, 7])
    half = matrix.copy()
    half.data = half.data.astype(np.float16).astype(np.float32)
    expected = np.asarray(half[left].multiply(half[right]).sum(axis=1)).ravel()
    np.testing.assert_allclose(row_dots(rows, left, right), expected, rtol=1e-5, atol=1e-6)
    assert len(rows) == 40


def test_builtin_model_runs_offline_with_its_calibrated_threshold() -> None:
    from stages.dedup.embedder import DEFAULT_MODEL_DIR, DEFAULT_THRESHOLD
    from stages.dedup.semantic_sides import PAIR_REQUEST_THRESHOLD

    if not (DEFAULT_MODEL_DIR / "modules.json").is_file():
        pytest.skip("the built-in model is not packaged in this checkout")
    stage = SemanticDedupStage(SemanticDedupParams(device="cpu"))
    stage.check()
    assert stage.threshold() == PAIR_REQUEST_THRESHOLD  # the answers confirm: under the single-text value
    assert SemanticDedupStage(SemanticDedupParams(mode="instruction")).threshold() == DEFAULT_THRESHOLD
    unrelated = [RECORDS[i] for i in (0, 1, 3, 5, 6)]
    copies = [("写一首关于春天的诗。", ""), ("请解释一下光合作用的原理", "")]
    results = run(stage, [make_table(unrelated + copies)])
    got = decisions(results)
    assert [rid for rid, (reason, _) in got.items() if reason] == ["data.json#5", "data.json#6"]
    assert json.loads(got["data.json#5"][1] or "")["duplicate_of"] == "data.json#0"


def test_calibration_script_recommends_a_threshold_from_labelled_pairs(tiny_model_dir: Path, tmp_path: Path) -> None:
    from pipeline.tools import calibrate

    pairs = tmp_path / "pairs.tsv"
    lines = [
        "写一首关于春天的诗\t创作一首描写春天的诗歌\t1",
        "解释一下光合作用的原理\t请说明光合作用的原理是什么\t1",
        "写一首关于春天的诗\t解释一下光合作用的原理\t0",
        "把这段话翻译成英文\t推荐几本适合初学者的Python书\t0",
        "介绍一下长城的历史\t写一首关于春天的诗\t0",
    ]
    pairs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "calibration.json"
    argv = ["--model", str(tiny_model_dir), "--similarity", "cosine", "--pairs", str(pairs), "--json", str(out)]
    # tiny-model cosines: the paraphrases 0.86 and 0.80, the negatives below 0.3
    assert calibrate.main([*argv, "--support", "1"]) == 0
    chosen = json.loads(out.read_text(encoding="utf-8"))["chosen"]
    assert chosen["threshold"] == 0.5 and chosen["precision"] == 1.0 and chosen["recall"] == 1.0
    # a negative that shares most characters (cosine 0.86) leaves no threshold with precision >= 0.9 and recall
    with pairs.open("a", encoding="utf-8") as handle:
        handle.write("写一首关于春天的诗\t写一首关于秋天的诗\t0\n")
    assert calibrate.main([*argv, "--support", "1"]) == 0
    assert json.loads(out.read_text(encoding="utf-8"))["chosen"] is None
    assert calibrate.main([*argv[:4], "--pairs", str(tmp_path / "missing.tsv")]) == 2


def test_an_empty_batch_has_an_empty_fingerprint(tiny_model_dir: Path) -> None:
    stage = make_stage(tiny_model_dir)
    empty = make_table(RECORDS).slice(0, 0)
    fingerprint = stage.fingerprint(empty)  # the hashing vectorizer cannot transform no texts: no n-grams asked
    assert fingerprint.embeddings.shape[0] == 0 and fingerprint.ngrams is not None and len(fingerprint.ngrams) == 0
    full = stage.fingerprint(make_table(RECORDS))
    assert stage.resolve([fingerprint, full]).counters == stage.resolve([full]).counters


def test_rows_taken_from_two_row_sets_dot_as_one_matrix() -> None:
    from scipy.sparse import random as sparse_random

    from stages.dedup.semantic_index import pair_dots

    matrix = sparse_random(30, 400, density=0.06, format="csr", random_state=2, dtype=np.float32)
    first, second = SparseRows.from_csr(matrix[:12]), SparseRows.from_csr(matrix[12:])
    both = SparseRows.stack([first, second])
    taken = second.take(np.array([5, 0, 5]))
    assert len(taken) == 3 and np.array_equal(
        taken.indices[: taken.indptr[1]], second.indices[second.indptr[5] : second.indptr[6]]
    )
    left, right = np.array([0, 11, 3, 7]), np.array([0, 17, 9, 4])
    expected = row_dots(both, left, right + 12)
    np.testing.assert_array_equal(pair_dots(first, left, second, right), expected)  # the same bits


def test_ivf_trained_from_its_sample_alone_is_the_local_quantizer() -> None:
    import faiss

    from stages.dedup.semantic_index import _build_index, train_ivf, training_sample

    rng = np.random.default_rng(11)
    vectors = rng.standard_normal((3000, 32)).astype(np.float16)
    vectors /= np.linalg.norm(vectors.astype(np.float32), axis=1, keepdims=True).astype(np.float16)
    config = SearchConfig(threshold=0.9, index="ivf", nlist=16, train_size=1000, seed=3)
    sample = training_sample(len(vectors), config)
    assert sample.size == 1000 and np.all(np.diff(sample) > 0)
    local = _build_index(faiss, vectors, config, "ivf")
    alone = train_ivf(faiss, vectors[sample], len(vectors), config)  # e.g. on another machine, from the rows only
    centroids = [index.quantizer.reconstruct_n(0, 16) for index in (local, alone)]
    np.testing.assert_array_equal(centroids[0], centroids[1])
    assert alone.ntotal == 0 and alone.nprobe == local.nprobe == 16
