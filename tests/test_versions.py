"""The data-version registry: v1 is what every committed artifact was made with, v2 is registered beside it."""
import json

import pytest
from tokenizers import Regex, pre_tokenizers

from sparsecirc.data import simple_python, simple_python_v2, tokenizer, versions
from sparsecirc.paths import DATA_DIR


def test_registry_names_and_v1_matches_the_committed_data():
    assert list(versions.DATA_VERSIONS) == ["v1", "v2"] and versions.DEFAULT_VERSION == "v1"
    v1, v2 = versions.get_version("v1"), versions.get_version("v2")
    assert v1.tokenizer_file == tokenizer.TOKENIZER_NAME == "tinypy-2048.json"
    assert v1.split_pattern == tokenizer.SPLIT_PATTERN
    sources = json.loads((DATA_DIR / "tokenizer" / "SOURCES.json").read_text())
    assert sources[v1.tokenizer_file]["split_pattern"] == v1.split_pattern  # the v1 tokenizer was trained with it
    assert (v1.tasks_dir, v2.tasks_dir) == ("tasks", "tasks_v2")
    assert v1.generator_module is simple_python and not v1.streamed
    assert v2.generator_module is simple_python_v2 and v2.streamed
    assert v2.tokenizer_file != v1.tokenizer_file


@pytest.mark.parametrize("bad", ["v3", "V1", "", None, 1])
def test_unknown_version_is_a_clear_error(bad):
    with pytest.raises(ValueError, match=r"unknown data version .*valid: v1, v2"):
        versions.get_version(bad)


def _pieces(pattern: str, text: str) -> list[str]:
    split = pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    return [p for p, _ in split.pre_tokenize_str(text)]


@pytest.mark.parametrize("text", ["x =[[1, 2], [3]]", "grid = [[[0]]]", "a=[ [1], [2] ]", "f([[x]])", 's = "[[" + t',
                                  "ys = [[0], [[1, 2]]]\n", "m[i][j] = [['a', 'b']]"])
def test_v2_split_never_puts_two_brackets_in_a_piece(text):
    pieces = _pieces(versions.SPLIT_PATTERN_V2, text)
    assert "".join(pieces) == text
    assert all(p.count("[") <= 1 for p in pieces), pieces
    assert all(p in ("[", " [") for p in pieces if "[" in p), pieces  # `[` alone, at most one leading space


def test_v2_split_keeps_the_task_punctuation_together():
    for s in ("]]", "],", '("', "('", '")', "')", "):", "==", "+="):
        assert _pieces(versions.SPLIT_PATTERN_V2, s) == [s]
    assert _pieces(versions.SPLIT_PATTERN_V2, "x =[[1") == ["x", " =", "[", "[", "1"]
    assert _pieces(versions.SPLIT_PATTERN_V1, "x =[[1") == ["x", " =[[", "1"]  # what v1 did
    assert _pieces(versions.SPLIT_PATTERN_V2, 'print("hi")') == ["print", '("', "hi", '")']
