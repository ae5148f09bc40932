"""The fast mean-pooling encoder (the MiniLM row) gives Pyserini's AutoDocumentEncoder/AutoQueryEncoder vectors."""

import numpy as np
import pytest

from tests.tiny import DOCS, QUERIES, save_tiny_bert


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_tiny_bert(tmp_path_factory.mktemp("tiny"), dropout=0.0)


def test_passages_and_queries_match_pyserini(model_dir):
    from simlm_ir.encode.mean_pooling import MeanPoolingEncoder, PyseriniMeanPoolingEncoder

    ours, theirs = MeanPoolingEncoder(str(model_dir), device="cpu"), PyseriniMeanPoolingEncoder(str(model_dir))
    texts = list(DOCS.values())
    titles = ["-", "dpkg", "", "Emacs", None, "-", "gzip", "-", "-", "rsync", "-", "SQLite"]
    a = ours.encode_passages(texts, titles, batch_size=5)  # other batches, other padding than Pyserini's
    b = theirs.encode_passages(texts, titles, batch_size=64)
    assert a.shape == b.shape == (len(texts), 32)
    np.testing.assert_allclose(a, b, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    q = list(QUERIES.values())
    np.testing.assert_allclose(ours.encode_queries(q), theirs.encode_queries(q), atol=2e-5)
    # the title is part of the text: a passage with a title is not the passage without it
    assert not np.allclose(a[1], ours.encode_passages([texts[1]])[0], atol=1e-3)


def test_long_passages_are_cut_where_pyserini_cuts_them(model_dir):
    from simlm_ir.encode.mean_pooling import MeanPoolingEncoder, PyseriniMeanPoolingEncoder

    long = " ".join(DOCS.values()) * 3  # well over 256 tokens
    ours, theirs = MeanPoolingEncoder(str(model_dir), device="cpu"), PyseriniMeanPoolingEncoder(str(model_dir))
    np.testing.assert_allclose(ours.encode_passages([long, "short text"]), theirs.encode_passages([long, "short text"]),
                               atol=2e-5)


def test_progress_callback_counts_every_passage(model_dir):
    from simlm_ir.encode.mean_pooling import MeanPoolingEncoder

    seen = []
    MeanPoolingEncoder(str(model_dir), device="cpu").encode_passages(list(DOCS.values()), batch_size=5,
                                                                      on_batch=seen.append)
    assert sum(seen) == len(DOCS) and len(seen) == 3  # 12 passages in batches of at most 5
