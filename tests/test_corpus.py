import json

import pytest

from simlm_ir.data.corpus import NO_TITLE, Passage, read_jsonl_corpus, write_jsonl_corpus
from simlm_ir.data.datasets import iter_passages
from simlm_ir.errors import InputFormatError


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_reads_pyserini_and_beir_style_lines(tmp_path):
    f = write(tmp_path / "c.jsonl", [
        json.dumps({"id": "d1", "contents": "Lucene is a search library."}),
        json.dumps({"_id": "d2", "title": "FAISS", "text": "Vector search."}),
        "",
        json.dumps({"id": 3, "title": "", "text": "No title here."}),
    ])
    got = list(read_jsonl_corpus(f))
    assert got == [Passage("d1", NO_TITLE, "Lucene is a search library."),
                   Passage("d2", "FAISS", "Vector search."),
                   Passage("3", NO_TITLE, "No title here.")]
    assert got[1].contents == "FAISS\nVector search."
    assert got[0].contents == "Lucene is a search library."


@pytest.mark.parametrize("bad, problem", [
    ("{not json", "not valid JSON"),
    (json.dumps({"contents": "no id"}), "has no 'id'"),
    (json.dumps({"id": "x", "body": "?"}), "neither 'contents' nor 'text'"),
    (json.dumps(["a", "list"]), "expected a JSON object"),
])
def test_bad_lines_name_file_and_line(tmp_path, bad, problem):
    f = write(tmp_path / "c.jsonl", [json.dumps({"id": "ok", "contents": "fine"}), bad])
    with pytest.raises(InputFormatError) as err:
        list(read_jsonl_corpus(f))
    assert f"{f}:2:" in str(err.value) and problem in str(err.value)


def test_duplicate_ids_are_an_error_across_files(tmp_path):
    write(tmp_path / "a.jsonl", [json.dumps({"id": "d1", "contents": "x"})])
    write(tmp_path / "b.jsonl", [json.dumps({"id": "d1", "contents": "y"})])
    with pytest.raises(InputFormatError, match=r"b.jsonl:1: duplicate document id 'd1'"):
        list(iter_passages(tmp_path))


def test_duplicate_check_is_exact_across_chunks_and_under_hash_collisions(tmp_path, monkeypatch):
    import numpy as np

    import simlm_ir.data.corpus as corpus

    monkeypatch.setattr(corpus, "DUPLICATE_CHECK_CHUNK", 3)  # duplicates across chunks, files and runs
    ids = [f"d{i}" for i in range(10)]
    line = lambda i: json.dumps({"id": i, "contents": f"text of {i}"})  # noqa: E731
    write(tmp_path / "a.jsonl", [line(i) for i in ids[:5]])
    write(tmp_path / "b.jsonl", [line(i) for i in ids[5:]])
    assert [p.id for p in iter_passages(tmp_path)] == ids
    write(tmp_path / "b.jsonl", [line(i) for i in ids[5:] + ["d1"]])
    with pytest.raises(InputFormatError, match=r"b.jsonl:6: duplicate document id 'd1' \(first at .*a.jsonl:2\)"):
        list(iter_passages(tmp_path))
    write(tmp_path / "b.jsonl", [line(i) for i in ids[5:]])
    # Every id hashing alike: each candidate is checked against the earlier id, so no false error.
    monkeypatch.setattr(corpus.IdSet, "keys", staticmethod(lambda batch: np.zeros(len(batch), np.int64)))
    assert [p.id for p in iter_passages(tmp_path)] == ids


def test_missing_corpus_and_empty_dir(tmp_path):
    with pytest.raises(InputFormatError, match="directory holds no .jsonl or .jsonl.gz files"):
        list(read_jsonl_corpus(tmp_path))


def test_gzipped_jsonl_reads_like_plain_and_errors_name_the_line(tmp_path):
    import gzip

    rows = [json.dumps({"id": "a", "contents": "first passage"}), json.dumps({"id": "b", "title": "T", "text": "x"})]
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write("\n".join(rows) + "\n")
    assert [(p.id, p.title, p.text) for p in iter_passages(tmp_path / "c.jsonl.gz")] == [
        ("a", "-", "first passage"), ("b", "T", "x")]
    assert [p.id for p in iter_passages(tmp_path)] == ["a", "b"]  # a directory of *.jsonl.gz
    with gzip.open(tmp_path / "c.jsonl.gz", "wt", encoding="utf-8") as fh:
        fh.write(rows[0] + "\n{not json\n")
    with pytest.raises(InputFormatError, match=r"c.jsonl.gz:2"):
        list(iter_passages(tmp_path / "c.jsonl.gz"))


def test_write_round_trip(tmp_path):
    ps = [Passage("a", "T", "text a"), Passage("b", NO_TITLE, "text b")]
    assert write_jsonl_corpus(ps, tmp_path / "out.jsonl") == 2
    assert list(read_jsonl_corpus(tmp_path / "out.jsonl")) == ps
