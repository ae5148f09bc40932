"""benchmarks/make_extra_train.py: extra training queries from the packages the embedded collection
left out, and never one that could show a dev or test query or document to training."""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

from simlm_ir.data.corpus import Passage
from simlm_ir.data.debian import in_sample

ROOT = Path(__file__).resolve().parent.parent


def script():
    spec = importlib.util.spec_from_file_location("make_extra_train", ROOT / "benchmarks" / "make_extra_train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_extra_queries_leave_out_every_package_that_touches_the_collection():
    m = script()
    sampled = next(f"pkg{i}" for i in range(1000) if in_sample(f"pkg{i}"))  # in the 1-in-12 sample
    free = [f"free{i}" for i in range(1000) if not in_sample(f"free{i}")][:8]
    docs = [Passage("coldoc", "-", "Collection document text.")]
    split = SimpleNamespace(passages=lambda: docs, queries={"colq": "A collection query"})
    splits = {"train": split, "dev": SimpleNamespace(queries={"devq": "The dev query"}),
              "test": SimpleNamespace(queries={"testq": "The test query"})}
    records = sorted([
        (sampled, "synopsis of a sampled package", "its own description"),
        (free[0], "a good extra synopsis", "a good extra description"),
        (free[1], "the  TEST query", "another description"),  # a test query's text, any case/space
        (free[2], "fresh synopsis", "Collection   document text."),  # a collection document's text
        (free[3], "synopsis two", "a good extra description"),  # repeats a kept description
        (free[4], "a good extra synopsis", "yet another description"),  # repeats a kept synopsis
        (free[0], "the same package again", "a second version's description"),  # a package's second stanza
        ("colq", "renamed synopsis", "renamed description"),  # named by a collection query id
        ("zz-sibling", "sibling of the sampled one", "its own description"),  # its text is the sampled doc
    ])
    kept, dropped = m.extra_queries(records, splits)
    assert [k[0] for k in kept] == [free[0]]
    assert dropped == {"in_sample": 2, "named_in_collection": 1, "same_document_text": 1, "same_query_text": 1,
                       "repeated": 3}


def test_a_damaged_translation_file_is_one_error_naming_it(tmp_path):
    import pytest

    from simlm_ir.data.debian import read_translation
    from simlm_ir.errors import InputFormatError

    for name in ("Translation-en.lz4", "Translation-en.gz", "Translation-en.xz"):
        bad = tmp_path / name
        bad.write_bytes(b"not compressed at all")
        with pytest.raises(InputFormatError, match=rf"^{bad}: "):
            list(read_translation(bad))
    plain = tmp_path / "Translation-en"
    plain.write_text("Package: a\nDescription-en: synopsis\n long text\n\n")
    assert list(read_translation(plain)) == [("a", "synopsis", "long text")]
