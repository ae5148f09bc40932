"""Adding ColBERT and the SimLM+BM25 fusions to a lineup by name; held-out splits for tuning."""

from simlm_ir.bench.lineup import default_tune_split, extend_systems
from simlm_ir.search.fusion import FusionSystem
from simlm_ir.search.run_cache import CachedSystem


class Named:
    def __init__(self, name):
        self.name, self.note = name, ""


def test_default_tune_split_is_held_out():
    assert default_tune_split("debian-known-item/test") == "debian-known-item/dev"
    assert default_tune_split("msmarco-passage/trec-dl-2019/judged") == "msmarco-passage/dev/small"
    assert default_tune_split("beir/scifact/test") is None  # BEIR scifact has no dev split
    assert default_tune_split("msmarco-passage/dev/small") is None


def test_fusions_wrap_their_components_and_skip_with_one_line(tmp_path):
    said = []
    systems = extend_systems([Named("BM25"), Named("SimLM")], ["hybrid", "rrf", "colbert"], "debian-known-item/test",
                             colbert="work/colbert-default-does-not-exist", say=said.append)
    assert [type(s).__name__ for s in systems] == ["CachedSystem", "CachedSystem", "ColBERTSystem",
                                                   "FusionSystem", "FusionSystem"]
    hybrid, rrf = systems[3], systems[4]
    assert hybrid.primary is systems[1] and hybrid.secondary is systems[0] and rrf.primary is systems[1]
    assert hybrid.tune_on == "debian-known-item/dev" and hybrid.name == "SimLM + BM25 (hybrid)"
    said.clear()
    extend_systems([Named("BM25")], ["hybrid"], "x/test", say=said.append)
    assert len(said) == 1 and "fuse the SimLM and BM25" in said[0]
    said.clear()
    out = extend_systems([Named("BM25"), Named("SimLM")], ["hybrid"], "beir/scifact/test", say=said.append)
    assert not any(isinstance(s, FusionSystem) for s in out) and "pass --alpha or --tune-on" in said[0]
    out = extend_systems([Named("BM25"), Named("SimLM")], ["hybrid"], "beir/scifact/test", alpha=0.3)
    assert out[-1].alpha == 0.3 and out[-1].note == "alpha=0.3 on BM25"
    assert all(isinstance(s, CachedSystem) for s in out[:2])


def test_colbert_rows_exact_and_plaid(tmp_path, monkeypatch):
    from simlm_ir.modeling import checkpoints

    systems = extend_systems([], ["colbert", "colbert-plaid"], "x/test", colbert="owner/colbert", plaid_nbits=4)
    assert [(s.name, s.engine, s.nbits) for s in systems] == [("ColBERT exact fp16", "exact", 4),
                                                              ("ColBERT PLAID 4-bit", "plaid", 4)]
    assert systems[1].exact_twin == "ColBERT exact fp16" and not hasattr(systems[0], "exact_twin")
    only = extend_systems([], ["colbert-plaid"], "x/test", colbert="owner/colbert")
    assert [s.name for s in only] == ["ColBERT PLAID 2-bit"] and not hasattr(only[0], "exact_twin")
    # neither a shipped checkpoint nor one trained under work/: skipped, with the command to train one
    monkeypatch.setattr(checkpoints, "DEFAULT_COLBERT_DIR", tmp_path / "not-shipped")
    monkeypatch.chdir(tmp_path)
    said = []
    assert extend_systems([], ["colbert", "colbert-plaid"], "x/test", say=said.append) == []
    assert len(said) == 1 and "not shipped" in said[0] and "simlm_ir.train.colbert" in said[0]
    (tmp_path / "work" / "colbert-default").mkdir(parents=True)
    (tmp_path / "work" / "colbert-default" / "config.json").write_text("{}")
    found = extend_systems([], ["colbert"], "x/test", say=said.append)
    assert [s.checkpoint for s in found] == ["work/colbert-default"]
