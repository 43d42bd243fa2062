"""The committed 2048-token BPEs (v1 and v2): pinned, exact round trip, task tokens are single tokens, v2 never
merges two `[`."""
import json
import random
import shutil

import pytest

from sparsecirc.data import simple_python_v2, versions
from sparsecirc.data import tokenizer as T
from sparsecirc.data.simple_python import generate_programs
from sparsecirc.paths import DATA_DIR


@pytest.fixture(scope="module")
def tok():
    return T.load_tokenizer()


def test_loads_with_pinned_sha_vocab_and_eot(tok):
    sources = json.loads((DATA_DIR / "tokenizer" / "SOURCES.json").read_text())[T.TOKENIZER_NAME]
    assert tok.sha256 == sources["sha256"]
    assert tok.vocab_size == 2048 and tok.eot_id == 2047
    assert tok.encode("<|endoftext|>") == [2047] and tok.id_to_token(2047) == "<|endoftext|>"


@pytest.mark.parametrize("s", T.REQUIRED_SINGLE_TOKENS)
def test_required_task_strings_are_single_tokens(tok, s):
    i = tok.single_token_id(s)
    assert tok.id_to_token(i) == s and tok.token_to_id(s) == i


@pytest.mark.parametrize("code, expected", [
    ('print("hello world")\n', ['("', '")']),
    ("foo('abc')\nx = 1\n", ["('", "')"]),
    ('log("x")', ['("', '")']),
    ("x = [[1, 2], [3, 4]]\n", ["],", "]]"]),
    ("grid = [\n    [1, 2],\n    [3, 4]]\n", ["],", "]]"]),
    ("ys = [[0], [[1, 2]]]\n", ["],", "]]", "]"]),
])
def test_task_tokens_appear_in_context(tok, code, expected):
    pieces = [tok.id_to_token(i) for i in tok.encode(code)]
    for s in expected:
        assert s in pieces, pieces


def test_single_token_id_rejects_multi_token_strings(tok):
    with pytest.raises(ValueError, match="not a single token"):
        tok.single_token_id("print('hello')")
    with pytest.raises(ValueError):
        tok.single_token_id("")


ROUND_TRIP = [
    "", " ", "\n", "\t\tx\r\n", "def f(x):\n    return x  # ünïcödé ✓ 😀\n", "日本語のテキスト\u200b",
    "a\x00b\x7f\u0301", "<|endoftext|> in the middle <|endoftext|>", "    \n\n  \t\n", "\\n '''\"\"\"",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_round_trip_exact(tok, text):
    assert tok.decode(tok.encode(text)) == text


def test_round_trip_random_text_and_programs(tok):
    rng = random.Random(0)
    texts = ["".join(chr(rng.choice([rng.randint(0, 127), rng.randint(128, 0x2FFF), rng.randint(0x1F300, 0x1F64F)]))
                     for _ in range(rng.randint(1, 200))) for _ in range(200)]
    texts = [t for t in texts if not any(0xD800 <= ord(c) <= 0xDFFF for c in t)] + generate_programs(200, seed=5)
    for text, ids in zip(texts, tok.encode_batch(texts)):
        assert tok.decode(ids) == text
        assert ids == tok.encode(text)


def test_id_to_token_and_token_to_id_are_inverse(tok):
    checked = 0
    for i in range(tok.vocab_size):
        s = tok.id_to_token(i)
        if "\\x" not in s:  # tokens holding part of a multi-byte character are shown escaped
            assert tok.token_to_id(s) == i
            checked += 1
    assert checked > 1900
    assert tok.id_to_token(tok.single_token_id("\n    ")) == "\n    "  # Ċ/Ġ shown as newline/space


@pytest.fixture
def tok_copy(tmp_path, monkeypatch):
    copy = tmp_path / "tokenizer"
    shutil.copytree(DATA_DIR / "tokenizer", copy)
    monkeypatch.setattr(T, "TOKENIZER_DIR", copy)
    return copy / T.TOKENIZER_NAME


def test_modified_tokenizer_raises_clear_error(tok_copy):
    tok_copy.write_bytes(tok_copy.read_bytes() + b"\n")  # still loads, but is not the pinned file
    with pytest.raises(T.TokenizerError, match=r"tinypy-2048\.json.*python -m sparsecirc tokenizer"):
        T.load_tokenizer()
    assert T.load_tokenizer(tok_copy, verify=False).vocab_size == 2048


def test_missing_tokenizer_raises_clear_error(tok_copy):
    tok_copy.unlink()
    with pytest.raises(T.TokenizerError, match="missing"):
        T.load_tokenizer()


def test_small_training_run_puts_eot_last_and_round_trips():
    texts = generate_programs(300, seed=9)
    small = T.CodeTokenizer(T.train_bpe(texts, vocab_size=400), sha256="test")
    assert small.vocab_size == 400 and small.eot_id == 399
    for text in texts[:20] + ROUND_TRIP:
        assert small.decode(small.encode(text)) == text


@pytest.mark.slow
def test_retraining_reproduces_the_committed_tokenizer(tmp_path, tok):
    shutil.copy(DATA_DIR / "tokenizer" / "SOURCES.json", tmp_path / "SOURCES.json")
    path = T.train_tokenizer(tmp_path / T.TOKENIZER_NAME)
    assert T.load_tokenizer(path).sha256 == tok.sha256


# --- data version 2: tinypy2-2048 -------------------------------------------------------------------------------
V1_SHA256 = "88b990cffd8bb735806f76b89066c4730de679502b58c9d3e4d3173e9424ed23"  # the committed v1 file, never retrained


@pytest.fixture(scope="module")
def tok2():
    return T.load_tokenizer(version="v2")


def test_v1_tokenizer_is_unchanged_and_the_default(tok):
    assert tok.sha256 == V1_SHA256
    assert T.load_tokenizer(version="v1").sha256 == V1_SHA256 == T.load_tokenizer("v1").sha256
    assert T.load_tokenizer(DATA_DIR / "tokenizer" / "tinypy-2048.json").sha256 == V1_SHA256  # a path still works


def test_v2_loads_with_its_own_pinned_sha_vocab_and_eot(tok2):
    sources = json.loads((DATA_DIR / "tokenizer" / "SOURCES.json").read_text())["tinypy2-2048.json"]
    assert tok2.sha256 == sources["sha256"] != V1_SHA256
    assert T.load_tokenizer("v2").sha256 == tok2.sha256 == T.load_tokenizer(T.tokenizer_path("v2")).sha256
    assert tok2.vocab_size == 2048 and tok2.eot_id == 2047 and tok2.encode("<|endoftext|>") == [2047]
    assert sources["split_pattern"] == versions.SPLIT_PATTERN_V2
    assert sources["trained_on"]["generator_version"] == simple_python_v2.GENERATOR_VERSION
    stored = json.loads((DATA_DIR / "tokenizer" / "tinypy2-2048.json").read_text())["pre_tokenizer"]
    assert stored["pretokenizers"][0]["pattern"]["Regex"] == versions.SPLIT_PATTERN_V2  # the file splits with it


def test_unknown_version_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown data version 'v9'; valid: v1, v2"):
        T.load_tokenizer(version="v9")


@pytest.mark.parametrize("s", T.REQUIRED_SINGLE_TOKENS + ("[", " [", "]"))
def test_v2_required_task_strings_are_single_tokens(tok2, s):
    i = tok2.single_token_id(s)
    assert tok2.id_to_token(i) == s and tok2.token_to_id(s) == i


def test_v2_no_vocabulary_entry_holds_two_brackets(tok2):
    entries = [tok2.id_to_token(i) for i in range(tok2.vocab_size)]
    assert not [e for e in entries if "[[" in e or e.count("[") > 1]
    assert {e for e in entries if "[" in e} == {"[", " ["}  # a `[` is always a token of its own
    assert len(tok2.encode("[[")) == 2 and len(tok2.encode(" [[")) == 2


@pytest.mark.parametrize("code", ["x =[[1, 2], [3]]", "x = [[1, 2], [3]]\n", "grid=[[[0]]]", "y = [ [1], [2] ]",
                                  "m = [\n    [1, 2],\n    [3, 4]]\n", "print([[a, b] for a in xs])"])
def test_v2_nested_lists_read_one_bracket_per_token(tok2, code):
    pieces = [tok2.id_to_token(i) for i in tok2.encode(code)]
    assert all(p.count("[") <= 1 for p in pieces), pieces
    assert sum(p.count("[") for p in pieces) == code.count("[")


def test_v2_nested_list_pieces():
    tok2 = T.load_tokenizer(version="v2")
    assert [tok2.id_to_token(i) for i in tok2.encode("x =[[1, 2], [3]]")] == [
        "x", " =", "[", "[", "1", ",", " 2", "],", " [", "3", "]]"]


def test_v2_round_trip_exact(tok2):
    texts = ROUND_TRIP + simple_python_v2.generate_programs(100, seed=5) + generate_programs(50, seed=5)
    for text, ids in zip(texts, tok2.encode_batch(texts)):
        assert tok2.decode(ids) == text
        assert ids == tok2.encode(text)


def test_modified_v2_tokenizer_names_its_rebuild_command(tmp_path, monkeypatch):
    copy = tmp_path / "tokenizer"
    shutil.copytree(DATA_DIR / "tokenizer", copy)
    monkeypatch.setattr(T, "TOKENIZER_DIR", copy)
    path = copy / "tinypy2-2048.json"
    path.write_bytes(path.read_bytes() + b"\n")
    with pytest.raises(T.TokenizerError, match=r"tinypy2-2048\.json.*python -m sparsecirc tokenizer --version v2"):
        T.load_tokenizer(version="v2")
    assert T.load_tokenizer().sha256 == V1_SHA256  # the other version is unaffected


@pytest.mark.slow
def test_retraining_reproduces_the_committed_v2_tokenizer(tmp_path, tok2):
    shutil.copy(DATA_DIR / "tokenizer" / "SOURCES.json", tmp_path / "SOURCES.json")
    path = T.train_tokenizer(tmp_path / "tinypy2-2048.json", version="v2")
    assert T.load_tokenizer(path).sha256 == tok2.sha256
