"""The pinned corpus: snapshot integrity, stable split, token cache."""
import json
import shutil

import numpy as np
import pytest

from sparsecirc.data import corpus
from sparsecirc.data.tokenizer import load_tokenizer
from sparsecirc.paths import DATA_DIR

SOURCES = json.loads((DATA_DIR / "corpus" / "SOURCES.json").read_text())


def test_committed_snapshot_matches_sources_and_size_budget():
    path = DATA_DIR / "corpus" / SOURCES["stdlib"]["file"]
    assert path.name == corpus.SNAPSHOT_NAME
    assert corpus.sha256_file(path) == SOURCES["stdlib"]["sha256"]
    assert path.stat().st_size == SOURCES["stdlib"]["bytes"] <= corpus.MAX_SNAPSHOT_BYTES


@pytest.fixture(scope="module")
def small():
    """Both splits of a corpus with 1500 simple programs."""
    return {s: corpus.load_corpus(s, n_simple=1500, seed=3).to_dict() for s in corpus.SPLITS}  # plain lists


def test_columns_and_sources(small):
    ds = small["train"]
    assert list(ds) == ["text", "source", "doc_id"]
    assert set(ds["source"]) == {"stdlib", "simple"}
    ids = ds["doc_id"]
    assert len(set(ids)) == len(ids)
    stdlib_ids = [i for i in ids if i.startswith("stdlib/")]
    assert stdlib_ids == sorted(stdlib_ids) and "stdlib/json/decoder.py" in ids + small["val"]["doc_id"]
    assert not any(i.startswith(("stdlib/test/", "stdlib/idlelib/")) or "/tests/" in i for i in ids)


def test_split_is_disjoint_complete_and_hash_based(small):
    train, val = small["train"], small["val"]
    assert not set(train["doc_id"]) & set(val["doc_id"])
    assert not set(train["text"]) & set(val["text"])
    n_train, n_val = len(train["text"]), len(val["text"])
    assert n_train + n_val == SOURCES["stdlib"]["documents"] + 1500
    assert 0.02 < n_val / (n_train + n_val) < 0.09  # VAL_PERCENT = 5
    assert all(corpus.split_of(t) == "val" for t in val["text"])
    assert all(corpus.split_of(t) == "train" for t in train["text"][:500])


def test_split_is_deterministic_and_stable_when_documents_are_added(small):
    again = corpus.load_corpus("val", n_simple=1500, seed=3).to_dict()
    assert again == small["val"]
    fewer = corpus.load_corpus("val", n_simple=500, seed=3, parts=("simple",)).to_dict()
    assert len(fewer["doc_id"]) > 0 and set(fewer["doc_id"]) <= set(small["val"]["doc_id"])


def test_unknown_split_or_part_raises_value_error_naming_valid_ones():
    with pytest.raises(ValueError, match="train, val"):
        corpus.load_corpus("validation")
    with pytest.raises(ValueError, match="stdlib, simple"):
        corpus.load_corpus("train", parts=("github",))
    with pytest.raises(ValueError, match="train, val"):
        corpus.corpus_tokens("test", None)


@pytest.fixture
def corpus_copy(tmp_path, monkeypatch):
    """A tmp copy of data/corpus that corpus.py reads instead of the committed one."""
    copy = tmp_path / "corpus"
    shutil.copytree(DATA_DIR / "corpus", copy)
    monkeypatch.setattr(corpus, "CORPUS_DIR", copy)
    return copy


def test_corrupted_snapshot_raises_clear_error(corpus_copy):
    path = corpus_copy / corpus.SNAPSHOT_NAME
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(corpus.SnapshotError, match=r"cpython-3\.11\.7-stdlib.*python -m sparsecirc corpus") as err:
        corpus.load_corpus("val", n_simple=10)
    assert "\n" not in str(err.value)


def test_missing_snapshot_raises_clear_error(corpus_copy):
    (corpus_copy / corpus.SNAPSHOT_NAME).unlink()
    with pytest.raises(corpus.SnapshotError, match="missing.*python -m sparsecirc corpus"):
        corpus.load_corpus("train", n_simple=10)
    assert len(corpus.load_corpus("train", n_simple=10, parts=("simple",))) > 0  # simple part needs no file


def test_corpus_tokens_layout_and_cache_hit(tmp_cache):
    tok = load_tokenizer()
    ids = corpus.corpus_tokens("val", tok, n_simple=400, seed=1, parts=("simple",))
    files = list((tmp_cache / "tokens").glob("val-*.npy"))
    assert len(files) == 1 and np.load(files[0]).dtype == np.uint16
    assert ids.ndim == 1 and str(ids.dtype) == "torch.int32"
    texts = list(corpus.load_corpus("val", n_simple=400, seed=1, parts=("simple",))["text"])
    assert int((ids == tok.eot_id).sum()) == len(texts) and int(ids[-1]) == tok.eot_id
    assert tok.decode(ids) == "".join(t + "<|endoftext|>" for t in texts)
    mtime = files[0].stat().st_mtime_ns
    again = corpus.corpus_tokens("val", tok, n_simple=400, seed=1, parts=("simple",))
    assert files[0].stat().st_mtime_ns == mtime and bool((again == ids).all())
    other = corpus.corpus_tokens("val", tok, n_simple=400, seed=2, parts=("simple",))
    assert len(list((tmp_cache / "tokens").glob("val-*.npy"))) == 2 and not np.array_equal(other, ids)


def test_corpus_tokens_val_both_parts(tmp_cache):
    tok = load_tokenizer()
    ids = corpus.corpus_tokens("val", tok)
    n_docs = int((ids == tok.eot_id).sum())
    text = tok.decode(ids)
    assert text.count("<|endoftext|>") == n_docs > 1000  # ~5% of the 20,602 documents
    assert 2.5 < (len(text) - len("<|endoftext|>") * n_docs) / len(ids) < 4.0  # characters per token
    assert int(ids.max()) < tok.vocab_size and int(ids.min()) >= 0


@pytest.mark.slow
def test_snapshot_rebuild_is_byte_identical(tmp_path):
    path = corpus.build_stdlib_snapshot(tmp_path)
    assert corpus.sha256_file(path) == SOURCES["stdlib"]["sha256"]
    assert json.loads((tmp_path / "SOURCES.json").read_text()) == SOURCES
