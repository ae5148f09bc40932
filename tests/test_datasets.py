import json
import os
import zipfile
from pathlib import Path

import pytest

from simlm_ir.data.datasets import load_collection
from simlm_ir.data.embedded import DEFAULT_DATASET, NAME
from simlm_ir.errors import DatasetNotAvailableError


def test_embedded_collection_through_ir_datasets():
    import ir_datasets

    test = load_collection(DEFAULT_DATASET)
    train = load_collection(f"{NAME}/train")
    assert len(test.queries) > 450 and len(train.queries) > 3500
    assert not set(test.queries) & set(train.queries), "train and test queries must not overlap"
    assert all(len(d) >= 1 for d in test.qrels.values())
    doc_ids = {p.id for p in test.passages()}
    assert len(doc_ids) > 4500
    assert all(d in doc_ids for docs in test.qrels.values() for d in docs)
    # it is a real ir_datasets dataset, files in ir_datasets' cache layout
    ds = ir_datasets.load(DEFAULT_DATASET)
    assert ds.has_docs() and ds.has_queries() and ds.has_qrels()
    assert (os.environ["IR_DATASETS_HOME"] + f"/{NAME}/docs.jsonl") == str(ds.docs_path())


def test_missing_collection_names_the_file_to_place():
    home = os.environ["IR_DATASETS_HOME"]  # ir_datasets fixes its paths when first imported
    with pytest.raises(DatasetNotAvailableError) as err:
        load_collection("beir/nfcorpus/test").queries
    msg = str(err.value)
    assert msg.startswith("beir/nfcorpus/test: queries not on disk")
    assert f"{home}/beir/nfcorpus/source.zip" in msg


def test_unknown_dataset_id():
    with pytest.raises(DatasetNotAvailableError, match="not an ir_datasets id"):
        load_collection("no-such/collection").queries


def test_beir_layout_is_read_offline():
    """A BEIR zip placed where ir_datasets expects it is used as is (no download, no checksum)."""
    base = Path(os.environ["IR_DATASETS_HOME"]) / "beir" / "scifact"
    base.mkdir(parents=True)
    with zipfile.ZipFile(base / "source.zip", "w") as z:
        z.writestr("scifact/corpus.jsonl", "\n".join(json.dumps(d) for d in [
            {"_id": "4983", "title": "Microstructural development of human brain",
             "text": "Alterations of the architecture of cerebral white matter in the developing human brain can "
                     "affect cortical development."},
            {"_id": "5836", "title": "Induction of myelodysplasia",
             "text": "Myelodysplastic syndromes are a group of clonal hematopoietic stem cell diseases."},
        ]) + "\n")
        query = {"_id": "1", "text": "0-dimensional biomaterials show inductive properties."}
        z.writestr("scifact/queries.jsonl", json.dumps(query) + "\n")
        z.writestr("scifact/qrels/test.tsv", "query-id\tcorpus-id\tscore\n1\t4983\t1\n")
    col = load_collection("beir/scifact/test")
    passages = list(col.passages())
    assert [p.id for p in passages] == ["4983", "5836"]
    assert passages[0].title == "Microstructural development of human brain"
    assert col.queries == {"1": "0-dimensional biomaterials show inductive properties."}
    assert col.qrels == {"1": {"4983": 1}}


def test_local_collection_in_pyserini_formats(tmp_path):
    from simlm_ir.data.datasets import LocalCollection
    from simlm_ir.errors import InputFormatError

    (tmp_path / "corpus.jsonl").write_text('{"id": "d1", "contents": "Lucene powers Anserini"}\n'
                                           '{"id": "d2", "title": "FAISS", "text": "vector search"}\n')
    (tmp_path / "topics.tsv").write_text("1\twhat powers anserini\n2\tvector search library\n")
    (tmp_path / "qrels.txt").write_text("1 0 d1 1\n2 0 d2 2\n9 0 d1 1\n")
    col = LocalCollection(str(tmp_path / "corpus.jsonl"), str(tmp_path / "topics.tsv"), str(tmp_path / "qrels.txt"),
                          "mini")
    assert [p.id for p in col.passages()] == ["d1", "d2"]
    with pytest.warns(UserWarning, match="1 judged queries are not in the topics"):
        assert col.qrels == {"1": {"d1": 1}, "2": {"d2": 2}}
    assert col.slug == "mini" and col.corpus_source.endswith("corpus.jsonl")

    (tmp_path / "bad.tsv").write_text("1\tok\n2\t   \n")
    with pytest.raises(InputFormatError, match=r"bad.tsv:2: query '2' is empty"):
        LocalCollection(str(tmp_path / "corpus.jsonl"), str(tmp_path / "bad.tsv"), str(tmp_path / "qrels.txt")).queries
    (tmp_path / "bad_qrels.txt").write_text("1 0 d1 1\n2 d2 1\n")
    with pytest.raises(InputFormatError, match=r"bad_qrels.txt:2: expected 4 columns"):
        LocalCollection(str(tmp_path / "corpus.jsonl"), str(tmp_path / "topics.tsv"),
                        str(tmp_path / "bad_qrels.txt")).qrels
