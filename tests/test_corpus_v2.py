"""Data v2's streamed corpus: disjoint splits, exact layout and length, the cache and its key, the config dial."""
import itertools

import numpy as np
import pytest

from sparsecirc.core.config import make_config
from sparsecirc.data import corpus, corpus_v2, simple_python_v2
from sparsecirc.data.lm import lm_tokens
from sparsecirc.data.tokenizer import load_tokenizer

SIMPLE = ("simple",)


@pytest.fixture(scope="module")
def tok2():
    return load_tokenizer(version="v2")


def test_val_and_train_program_ranges_are_disjoint_and_start_where_documented():
    val = list(corpus_v2.simple_programs("val", seed=0))
    assert len(val) == corpus_v2.VAL_PROGRAMS
    assert [i for i, _ in val] == list(range(corpus_v2.VAL_START, corpus_v2.VAL_START + corpus_v2.VAL_PROGRAMS))
    assert val[0][1] == simple_python_v2.program_at(0, corpus_v2.VAL_START)
    train = list(itertools.islice(corpus_v2.simple_programs("train", seed=0), 3000))
    assert [i for i, _ in train][:5] == [0, 1, 2, 3, 4] and all(i < corpus_v2.VAL_START for i, _ in train)
    assert not {t for _, t in train} & {t for _, t in val}  # no text in both splits
    assert corpus_v2.val_texts(0) == frozenset(t for _, t in val)


def test_train_stream_skips_a_program_whose_text_is_a_validation_program(monkeypatch):
    clash = simple_python_v2.program_at(0, 3)
    monkeypatch.setattr(corpus_v2, "val_texts", lambda seed=0, generator_version=3: frozenset({clash}))
    first = [i for i, _ in itertools.islice(corpus_v2.simple_programs("train", seed=0), 5)]
    assert first == [0, 1, 2, 4, 5]


def test_train_stream_layout_exact_length_and_cache_hit(tmp_cache, tok2):
    n = 5000
    ids = corpus_v2.corpus_tokens_v2("train", tok2, n_simple_tokens=n, parts=SIMPLE, progress=False)
    assert ids.shape == (n,) and str(ids.dtype) == "torch.int32"
    files = list((tmp_cache / "tokens").glob("train-v2-*.npy"))
    assert len(files) == 1 and np.load(files[0]).dtype == np.uint16
    k = int((ids == tok2.eot_id).sum())
    programs = [t for _, t in itertools.islice(corpus_v2.simple_programs("train", seed=0), k + 1)]
    full = "".join(p + "<|endoftext|>" for p in programs)
    assert full.startswith(tok2.decode(ids))  # documents in stream order, cut at exactly n tokens
    mtime = files[0].stat().st_mtime_ns
    again = corpus_v2.corpus_tokens_v2("train", tok2, n_simple_tokens=n, parts=SIMPLE, progress=False)
    assert files[0].stat().st_mtime_ns == mtime and bool((again == ids).all())
    longer = corpus_v2.corpus_tokens_v2("train", tok2, n_simple_tokens=n + 100, parts=SIMPLE, progress=False)
    assert bool((longer[:n] == ids).all())  # a longer stream extends the shorter one
    other = corpus_v2.corpus_tokens_v2("train", tok2, n_simple_tokens=n, seed=1, parts=SIMPLE, progress=False)
    assert not bool((other == ids).all()) and len(list((tmp_cache / "tokens").glob("train-v2-*.npy"))) == 3


def test_val_stream_is_whole_programs_and_ignores_the_train_size(tok2):
    arr, stats = corpus_v2.build_tokens_v2("val", tok2, parts=SIMPLE, progress=False)
    assert stats["programs"] == corpus_v2.VAL_PROGRAMS and int((arr == tok2.eot_id).sum()) == corpus_v2.VAL_PROGRAMS
    assert arr[-1] == tok2.eot_id and 200 * corpus_v2.VAL_PROGRAMS < len(arr) < 400 * corpus_v2.VAL_PROGRAMS
    key = corpus_v2.tokens_key("val", tok2, None, 0, SIMPLE)
    assert key == corpus_v2.tokens_key("val", tok2, 10**8, 0, SIMPLE) and key.startswith("val-v2-")


def test_stdlib_part_comes_first_and_matches_v1s_split(tok2):
    arr, stats = corpus_v2.build_tokens_v2("val", tok2, parts=("stdlib",), progress=False)
    docs = corpus.load_corpus("val", parts=("stdlib",))["text"]
    assert stats["stdlib_tokens"] == len(arr) and int((arr == tok2.eot_id).sum()) == len(docs)
    assert tok2.decode(arr.tolist()) == "".join(d + "<|endoftext|>" for d in docs)


def test_cache_key_holds_what_the_stream_depends_on(tok2, monkeypatch):
    key = corpus_v2.tokens_key("train", tok2, 1000, 0, corpus_v2.PARTS)
    assert key != corpus_v2.tokens_key("train", tok2, 1001, 0, corpus_v2.PARTS)
    assert key != corpus_v2.tokens_key("train", tok2, 1000, 1, corpus_v2.PARTS)
    assert key != corpus_v2.tokens_key("train", load_tokenizer(), 1000, 0, corpus_v2.PARTS)
    assert key == corpus_v2.tokens_key("train", tok2, 1000, 0, corpus_v2.PARTS, 3)  # 3 is the default
    assert key != corpus_v2.tokens_key("train", tok2, 1000, 0, corpus_v2.PARTS, 4)
    assert key != corpus_v2.tokens_key("train", tok2, 1000, 0, corpus_v2.PARTS, 5)
    with pytest.raises(ValueError, match="generator version"):
        corpus_v2.tokens_key("train", tok2, 1000, 0, corpus_v2.PARTS, 6)
    monkeypatch.setattr(simple_python_v2, "source_sha256", lambda: "0" * 64)
    assert key != corpus_v2.tokens_key("train", tok2, 1000, 0, corpus_v2.PARTS)


@pytest.mark.parametrize("kw, msg", [({"split": "test"}, "unknown split 'test'"),
                                     ({"parts": ("github",)}, "unknown or no parts"),
                                     ({"n_simple_tokens": None}, "needs n_simple_tokens"),
                                     ({"n_simple_tokens": 0}, "got 0"),
                                     ({"seed": -1}, "seed must be")])
def test_bad_arguments_name_the_value(tok2, kw, msg):
    args = {"split": "train", "n_simple_tokens": 100, "parts": SIMPLE, "seed": 0} | kw
    with pytest.raises(ValueError, match=msg):
        corpus_v2.corpus_tokens_v2(args.pop("split"), tok2, progress=False, **args)


def test_load_corpus_v2_documents_and_ids():
    ds = corpus_v2.load_corpus_v2("train", n_programs=5, parts=SIMPLE, seed=2)
    assert ds["doc_id"] == [f"simple_v2/2/{i}" for i in range(5)]
    assert ds["text"] == simple_python_v2.generate_programs(5, seed=2)
    with pytest.raises(ValueError, match="endless"):
        corpus_v2.load_corpus_v2("train")


def test_lm_tokens_reads_the_models_data_version(tmp_cache, tok2):
    cfg = make_config("ci", model={"data_version": "v2"}, data={"n_simple_tokens": 3000, "parts": ["simple"]})
    train, val = lm_tokens(cfg)
    assert train.shape == (3000,) and int(val.max()) < tok2.vocab_size
    assert bool((train == corpus_v2.corpus_tokens_v2("train", tok2, n_simple_tokens=3000, parts=SIMPLE)).all())
    with pytest.raises(ValueError, match="set data.n_simple_tokens"):
        lm_tokens(make_config("ci", model={"data_version": "v2"}))
    assert bool((lm_tokens(cfg, "val") == val).all()) and bool((lm_tokens(cfg, "train") == train).all())
    with pytest.raises(ValueError, match="split must be"):
        lm_tokens(cfg, "test")


@pytest.mark.slow
def test_a_60m_token_stream_builds_in_minutes(tok2):
    """Scale: programs/s and tokens/s of the v2 train stream (one core; prints the measurement)."""
    arr, stats = corpus_v2.build_tokens_v2("train", tok2, n_simple_tokens=60_000_000, parts=SIMPLE, progress=False)
    print(stats)
    assert len(arr) == 60_000_000 and stats["seconds"] < 600


def test_version_4_streams_are_version_4_programs(tok2):
    val = list(itertools.islice(corpus_v2.simple_programs("val", seed=0, generator_version=4), 3))
    assert [t for _, t in val] == simple_python_v2.generate_programs(3, 0, start=corpus_v2.VAL_START, version=4)
    train = [t for _, t in itertools.islice(corpus_v2.simple_programs("train", seed=0, generator_version=4), 400)]
    assert train == simple_python_v2.generate_programs(400, 0, version=4)
    assert train != simple_python_v2.generate_programs(400, 0)  # version 3 differs somewhere in 400 programs
    ds = corpus_v2.load_corpus_v2("train", n_programs=4, parts=SIMPLE, generator_version=4)
    assert list(ds["text"]) == train[:4]
