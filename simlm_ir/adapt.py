"""Domain adaptation in one command: SimLM pre-training on your unlabelled corpus, then the shipped recipe.

    python -m simlm_ir.adapt --corpus my_corpus.jsonl --output adapted \\
        [--topics topics.tsv --qrels qrels.txt]            # + a leaderboard: BM25, shipped, adapted

SimLM's selling point is that its pre-training needs no labels: RLM through a representation
bottleneck on the target corpus teaches the [CLS] vector that corpus's text. This command

1. continues RLM pre-training of the shipped default (``simlm_ir/resources/simlm-default``) on the
   user's corpus (:func:`simlm_ir.train.pretrain.pretrain`). The generator is ``mlm-warmup`` (a
   small BERT trained with plain MLM on the same corpus first) by default, or ``unigram``, or any
   masked-LM checkpoint: the shipped re-ranker is a cross-encoder, not a masked LM, and the paper's
   ELECTRA generator is not on disk offline. The run says which one it used;
2. re-runs the shipped fine-tuning recipe (``benchmarks/train_default.py``, settings read from the
   shipped model's ``simlm_ir_recipe.json``) on the shipped training data, up to the stage the
   shipped model was exported from: BM25 negatives -> stage 1 -> negatives mined by stage 1 ->
   stage 2 -> scores of the shipped re-ranker (the recipe's teacher, reused rather than retrained)
   -> stage 3 (distillation);
3. with ``--topics`` and ``--qrels``, evaluates the adapted model beside the shipped default and BM25
   on the user's corpus in one leaderboard (``OUTPUT/runs/<name>/leaderboard.md``).

Every stage writes its result under ``--output`` and is skipped when it is already done, so an
interrupted run continues where it stopped (training stages resume from their checkpoints).
The final checkpoint is ``OUTPUT/model``: a HF directory any ``--encoder simlm:`` flag takes.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from simlm_ir.errors import SimLMIRError
from simlm_ir.modeling.checkpoints import DEFAULT_SIMLM_DIR
from simlm_ir.util.cli import arg, config_parser, parse_config
from simlm_ir.util.io import atomic_write

LOG_NAME = "adapt_log.json"
CONFIG_NAME = "adapt_config.json"
MODEL_DIR = "model"

# Pre-training scale per preset; the fine-tuning recipe is the shipped one whatever the preset.
PRESETS = {
    # 2 CPU cores (the estimate printed at start says how long on the machine at hand)
    "cpu": {"pretrain_steps": 100, "pretrain_batch_size": 16, "generator_warmup_steps": 50},
    # one GPU: an epoch or more of a mid-sized corpus
    "gpu": {"pretrain_steps": 3000, "pretrain_batch_size": 64, "generator_warmup_steps": 500},
}


# The recipe's fine-tuning stages in order (benchmarks/train_default.py); a shipped model exported
# from stage 1 or 2 is re-made by the stages up to that one.
RECIPE_STAGES = ("mine-bm25", "stage1", "mine-dense", "stage2", "teacher", "stage3")


def recipe_stages(recipe: dict) -> tuple[str, ...]:
    """The fine-tuning stages that made the shipped model: up to its ``export_stage`` (older recipes: 3)."""
    last = recipe.get("export_stage", "stage3")
    if last not in RECIPE_STAGES:
        raise SimLMIRError(f"simlm_ir_recipe.json: export_stage {last!r} is not one of the recipe's stages")
    return RECIPE_STAGES[: RECIPE_STAGES.index(last) + 1]


def _recipe_settings(model_dir: Path = DEFAULT_SIMLM_DIR) -> dict:
    """The fine-tuning settings the shipped default was trained with."""
    recipe = model_dir / "simlm_ir_recipe.json"
    if not recipe.exists():
        raise SimLMIRError(f"{recipe}: missing; the shipped default's recipe settings are needed to re-run it")
    settings = json.loads(recipe.read_text())["settings"]
    # a recipe that left the distillation settings to the trainer (None) means the trainer's defaults
    from simlm_ir.train.finetune import KD_EPOCHS, KD_GROUP_SIZE, KD_LR

    for key, default in (("kd_group_size", KD_GROUP_SIZE), ("kd_lr", KD_LR), ("kd_epochs", KD_EPOCHS)):
        if settings.get(key) is None:
            settings[key] = default
    return settings


@dataclass
class AdaptConfig:
    """Everything that defines an adaptation run (written to ``adapt_config.json`` in the output)."""

    corpus: str = arg(help="your unlabelled corpus: JSONL file (optionally .gz) or directory, BEIR directory, "
                           "or ir_datasets id")
    output: str = arg(help="output directory (stages, checkpoints, runs; the adapted model in OUTPUT/model)")
    topics: str | None = arg(None, "evaluation topics (TSV qid<TAB>text or BEIR queries JSONL)")
    qrels: str | None = arg(None, "evaluation qrels (TREC 'qid 0 docid rel' or BEIR TSV)")
    name: str | None = arg(None, "leaderboard name (default: the topics file's stem)")
    preset: str = arg("cpu", "pre-training scale: 'cpu' (2 CPU cores) or 'gpu'")
    init: str = arg("simlm", "checkpoint to adapt (default: the shipped SimLM default)")
    generator: str = arg("mlm-warmup", "RLM generator: 'mlm-warmup' (small BERT trained by MLM on your corpus "
                         "first), 'unigram', or a masked-LM checkpoint")
    pretrain_steps: int | None = arg(None, "RLM steps (default: from --preset)")
    pretrain_batch_size: int | None = arg(None, "passages per RLM step (default: from --preset)")
    generator_warmup_steps: int | None = arg(None, "MLM steps of the mlm-warmup generator (default: from --preset)")
    pretrain_lr: float = arg(1e-4, "RLM learning rate (the shipped recipe's)")
    max_length: int = arg(144, "passage tokens in pre-training (SimLM: 144)")
    train_data: str = arg("debian-known-item/train", "labelled training data of the fine-tuning recipe "
                          "(ir_datasets id with a train split, or a BEIR directory with qrels/train.tsv)")
    reranker: str = arg("reranker-default", "teacher cross-encoder for the distillation stage "
                        "(default: the shipped one)")
    train_queries: int | None = arg(None, "training queries (default: the shipped recipe's)")
    mine_depth: int = arg(100, "negatives are mined from this depth (the recipe's)")
    seed: int | None = arg(None, "seed (default: the shipped recipe's)")
    device: str = arg("auto", "cpu, cuda, cuda:1 or auto")
    hits: int = arg(1000, "depth of the evaluation runs")
    progress: bool = arg(True, "progress bars")

    def resolved(self) -> "AdaptConfig":
        """A copy with the preset's and the shipped recipe's values filled in."""
        if self.preset not in PRESETS:
            raise SimLMIRError(f"--preset must be one of {sorted(PRESETS)}, not {self.preset!r}")
        if (self.topics is None) != (self.qrels is None):
            raise SimLMIRError("give both --topics and --qrels (or neither)")
        values = asdict(self)
        for k, v in PRESETS[self.preset].items():
            if values[k] is None:
                values[k] = v
        recipe = _recipe_settings()
        values["train_queries"] = values["train_queries"] or recipe["train_queries"]
        values["seed"] = recipe["seed"] if values["seed"] is None else values["seed"]
        return AdaptConfig(**values)


# Fields whose change makes an existing output a different run.
RUN_DEFINING = ("corpus", "init", "generator", "pretrain_steps", "pretrain_batch_size", "generator_warmup_steps",
                "pretrain_lr", "max_length", "train_data", "reranker", "train_queries", "mine_depth", "seed")


# -- planning and estimating --------------------------------------------------------------------

@dataclass
class Stage:
    name: str
    what: str
    units: float  # cost in passage-token forward+backward passes of the encoder (for the estimate)


def training_collection(train_data: str):
    """The labelled training split: an ir_datasets id as given, or a BEIR directory's ``train`` split."""
    from simlm_ir.data.datasets import load_collection

    return load_collection(train_data, split="train")


def plan(cfg: AdaptConfig, corpus_passages: int, corpus_tokens: float, train_corpus_passages: int,
         eval_queries: int) -> list[Stage]:
    """The stages in order, with a rough cost each (forward-only passes count 1/3 of forward+backward)."""
    from simlm_ir.train.loop import steps_for

    recipe = _recipe_settings()
    q = min(cfg.train_queries, len(training_collection(cfg.train_data).qrels))
    ft_steps = steps_for(q, recipe["batch_size"], recipe["epochs"], 0)
    L = cfg.max_length
    gen = cfg.generator_warmup_steps * cfg.pretrain_batch_size * L * 0.15 if cfg.generator == "mlm-warmup" else 0
    stages = [
        Stage("pretrain", f"RLM pre-training on your corpus ({cfg.pretrain_steps} steps x {cfg.pretrain_batch_size} "
                          f"passages, generator {cfg.generator})",
              gen + cfg.pretrain_steps * cfg.pretrain_batch_size * L * 1.5),
        Stage("mine-bm25", f"BM25 negatives for {q} training queries of {cfg.train_data}", 0),
        Stage("stage1", f"fine-tuning stage 1 (BM25 negatives, {ft_steps} steps)",
              ft_steps * recipe["batch_size"] * (recipe["group_size"] * L + 32)),
        Stage("mine-dense", "negatives mined by stage 1", train_corpus_passages * L / 3),
        Stage("stage2", f"fine-tuning stage 2 (stage-1 negatives, {ft_steps} steps)",
              ft_steps * recipe["batch_size"] * (recipe["group_size"] * L + 32)),
        Stage("teacher", f"teacher scores by {cfg.reranker}", q * recipe["kd_group_size"] * 192 / 3),
        Stage("stage3", f"fine-tuning stage 3 (distillation, {ft_steps} steps)",
              ft_steps * recipe["batch_size"] * (recipe["kd_group_size"] * L + 32)),
        Stage("export", f"the adapted model -> {Path(cfg.output) / MODEL_DIR}", 0),
    ]
    keep = recipe_stages(recipe)
    stages = [s for s in stages if s.name in keep or s.name not in RECIPE_STAGES]
    if cfg.topics:
        stages.append(Stage("evaluate", f"BM25, shipped and adapted SimLM on {eval_queries} queries",
                            2 * corpus_tokens / 3 + 2 * eval_queries * 32 / 3))
    return stages


def calibrate(init: str, batch: int, length: int, device: str = "auto") -> float:
    """Seconds per passage-token of one forward+backward pass of the encoder, measured here."""
    import torch

    from simlm_ir.encode.encoder import SimLMEncoder

    enc = SimLMEncoder(init, device=None if device == "auto" else device)
    model = enc.model.train()
    ids = torch.randint(1000, 2000, (batch, length), device=enc.device)
    mask = torch.ones_like(ids)
    times = []
    for _ in range(2):  # the first pass pays for allocation
        t0 = time.perf_counter()
        model(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0].sum().backward()
        if enc.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times[-1] / (batch * length)


# -- running ------------------------------------------------------------------------------------

class AdaptRun:
    """One adaptation run in ``cfg.output``: its stages, log and resumption."""

    def __init__(self, cfg: AdaptConfig, say=print):
        self.cfg = cfg.resolved()
        self.out = Path(self.cfg.output)
        self.work = self.out / "work"
        self.say = say
        self.log_path = self.out / LOG_NAME
        self.log = json.loads(self.log_path.read_text()) if self.log_path.exists() else {"stages": {}}
        self.train = training_collection(self.cfg.train_data)

    def check_output(self) -> None:
        """An output dir holds one run: refuse settings that would change a run already begun there."""
        self.out.mkdir(parents=True, exist_ok=True)
        cfg_file = self.out / CONFIG_NAME
        if cfg_file.exists():
            saved = json.loads(cfg_file.read_text())
            diffs = [f"{k}: {saved.get(k)!r} -> {getattr(self.cfg, k)!r}" for k in RUN_DEFINING
                     if saved.get(k) != getattr(self.cfg, k)]
            if diffs:
                raise SimLMIRError(f"{cfg_file}: this output holds a run with other settings ({'; '.join(diffs)}); "
                                   "choose another --output")
        with atomic_write(cfg_file) as fh:
            json.dump(asdict(self.cfg), fh, indent=2)

    def done(self, stage: str) -> bool:
        return stage in self.log["stages"]

    def mark(self, stage: str, seconds: float, **info) -> None:
        self.log["stages"][stage] = {"seconds": round(seconds, 1), **info}
        with atomic_write(self.log_path) as fh:
            json.dump(self.log, fh, indent=2)

    # each stage: inputs from earlier stages, output written atomically or resumable
    def run_pretrain(self) -> dict:
        from simlm_ir.train.pretrain import PretrainConfig, pretrain

        c = self.cfg
        pcfg = PretrainConfig(corpus=c.corpus, init=c.init, output=str(self.out / "pretrained"),
                              generator=c.generator, generator_warmup_steps=c.generator_warmup_steps,
                              max_length=c.max_length, lr=c.pretrain_lr, warmup_steps=max(1, c.pretrain_steps // 10),
                              max_steps=c.pretrain_steps, batch_size=c.pretrain_batch_size, seed=c.seed,
                              save_steps=max(1, c.pretrain_steps // 4), logging_steps=10,
                              resume=(self.out / "pretrained" / "run_config.json").exists(), device=c.device,
                              progress=c.progress)
        result = pretrain(pcfg)
        run_config = json.loads((self.out / "pretrained" / "run_config.json").read_text())
        return {"generator": run_config.get("generator"), "steps": result.steps,
                "final_loss": result.losses[max(result.losses)] if result.losses else None}

    def _subset(self, src: Path, dst: Path) -> None:
        from simlm_ir.train.data import read_train_file, write_train_file

        examples = read_train_file(src)
        rng = random.Random(self.cfg.seed)
        keep = sorted(rng.sample(range(len(examples)), min(self.cfg.train_queries, len(examples))))
        write_train_file([examples[i] for i in keep], dst)

    def run_mine(self, method: str, encoder=None) -> dict:
        from simlm_ir.train.mine import mine

        name = "bm25_negs" if method == "bm25" else "stage1_negs"
        full = self.work / f"{name}.all.jsonl"
        n = mine(self.train, method, full, self.cfg.mine_depth, encoder, self.work)
        self._subset(full, self.out / f"{name}.jsonl")
        return {"queries": n}

    def run_finetune(self, stage: str, train_file: Path, init: Path, kd: bool = False) -> dict:
        from simlm_ir.train.finetune import FinetuneConfig, finetune

        recipe = _recipe_settings()
        out = self.out / stage
        resume = out.exists() and any(out.glob("checkpoint-*"))
        fcfg = FinetuneConfig(output=str(out), init=str(init), corpus=self.train.corpus_source,
                              train_file=None if kd else str(train_file), kd_teacher=str(train_file) if kd else None,
                              group_size=recipe["kd_group_size" if kd else "group_size"],
                              batch_size=recipe["batch_size"], lr=recipe["kd_lr" if kd else "lr"],
                              epochs=recipe["epochs"], warmup_steps=recipe.get("warmup_steps", 4),
                              length_buckets=recipe.get("length_buckets", 1), save_steps=50, seed=self.cfg.seed,
                              resume=resume, device=self.cfg.device, progress=self.cfg.progress)
        records = finetune(fcfg)
        return {"final_loss": records[-1]["loss"] if records else None}

    def run_teacher(self) -> dict:
        from simlm_ir.train.teacher_scores import score_train_file

        recipe = _recipe_settings()
        n = score_train_file(self.cfg.reranker, self.out / "stage1_negs.jsonl", self.out / "teacher.jsonl",
                             corpus=self.train.corpus_source, negatives=recipe["kd_group_size"] - 1,
                             device=None if self.cfg.device == "auto" else self.cfg.device)
        return {"queries": n}

    @staticmethod
    def _kd_init() -> str:
        """Stage 3's start as the recipe had it: the pre-trained checkpoint (older recipes: stage 2)."""
        return _recipe_settings().get("kd_init", "stage2")

    def run_export(self) -> dict:
        src, dst = self.out / recipe_stages(_recipe_settings())[-1], self.out / MODEL_DIR
        tmp = self.out / f".{MODEL_DIR}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        for f in src.iterdir():
            if f.is_file():
                shutil.copy(f, tmp / f.name)
        recipe = {"adapted_from": self.cfg.init, "adapt_config": asdict(self.cfg), "stages": self.log["stages"],
                  "fine_tuning_recipe": _recipe_settings()}
        (tmp / "simlm_ir_adapt.json").write_text(json.dumps(recipe, indent=2) + "\n")
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
        return {"path": str(dst)}

    def run_evaluate(self) -> dict:
        from simlm_ir.bench.runner import run_benchmark
        from simlm_ir.bench.systems import BM25System, DenseSystem
        from simlm_ir.data.datasets import LocalCollection

        c = self.cfg
        gen = self.log["stages"].get("pretrain", {}).get("generator", {})
        gen_kind = gen.get("kind", c.generator) if isinstance(gen, dict) else c.generator
        collection = LocalCollection(c.corpus, c.topics, c.qrels, name=c.name or "")
        systems = [BM25System(),
                   DenseSystem("SimLM", c.init, note=f"{'shipped default' if c.init == 'simlm' else c.init}, "
                                                     "not adapted"),
                   DenseSystem("SimLM adapted", str(self.out / MODEL_DIR),
                               note=f"+ RLM on this corpus ({c.pretrain_steps} steps, generator {gen_kind}) "
                                    "+ the shipped fine-tuning recipe")]
        results, table = run_benchmark(collection, systems, self.out / "runs", self.work, hits=c.hits)
        self.say(table)
        return {"leaderboard": str(self.out / "runs" / collection.slug / "leaderboard.md"),
                "results": {r.name: r.evaluation.aggregate for r in results}}

    def stages(self) -> dict:
        out = self.out
        return {
            "pretrain": self.run_pretrain,
            "mine-bm25": lambda: self.run_mine("bm25"),
            "stage1": lambda: self.run_finetune("stage1", out / "bm25_negs.jsonl", out / "pretrained"),
            "mine-dense": lambda: self.run_mine("dense", str(out / "stage1")),
            "stage2": lambda: self.run_finetune("stage2", out / "stage1_negs.jsonl", out / "pretrained"),
            "teacher": self.run_teacher,
            "stage3": lambda: self.run_finetune("stage3", out / "teacher.jsonl", out / self._kd_init(), kd=True),
            "export": self.run_export,
            "evaluate": self.run_evaluate,
        }


def _corpus_size(corpus: str, tokenizer, max_length: int, sample: int = 2000) -> tuple[int, float]:
    """Passages in ``corpus`` and an estimate of its tokens (from the first ``sample`` passages)."""
    from simlm_ir.data.datasets import iter_passages

    n, tokens = 0, 0
    for p in iter_passages(corpus, check_duplicates=False):
        if n < sample:
            tokens += len(tokenizer(p.title, p.text, truncation=True, max_length=max_length)["input_ids"])
        n += 1
    if n == 0:
        raise SimLMIRError(f"{corpus}: corpus holds no passages")
    return n, tokens / min(n, sample) * n


def adapt(cfg: AdaptConfig, say=print) -> dict:
    """Run (or continue) the adaptation; returns the log (seconds and results per stage)."""
    from simlm_ir.data.datasets import LocalCollection, check_corpus
    from simlm_ir.modeling.checkpoints import resolve_checkpoint
    from simlm_ir.modeling.rlm import load_tokenizer

    run = AdaptRun(cfg, say)
    c = run.cfg
    check_corpus(c.corpus)  # fail on a bad file before anything slow
    eval_queries = 0
    if c.topics:
        eval_queries = len(LocalCollection(c.corpus, c.topics, c.qrels, name=c.name or "").qrels)
    run.check_output()
    tokenizer = load_tokenizer(resolve_checkpoint(c.init))
    n_passages, n_tokens = _corpus_size(c.corpus, tokenizer, c.max_length)
    train_passages = sum(1 for _ in run.train.passages())
    stages = plan(c, n_passages, n_tokens, train_passages, eval_queries)
    todo = [s for s in stages if not run.done(s.name)]
    say(f"adapting {c.init} to {c.corpus} ({n_passages} passages, ~{n_tokens / 1e6:.2f}M tokens at "
        f"<= {c.max_length}) -> {c.output}")
    say(f"generator: {c.generator}" + (" (a small BERT trained by plain MLM on your corpus first)"
                                       if c.generator == "mlm-warmup" else ""))
    if todo:
        per_unit = calibrate(c.init, min(8, c.pretrain_batch_size), c.max_length, c.device)
        total = sum(s.units for s in todo) * per_unit + 30 * sum(s.name.startswith("mine") for s in todo)
        say(f"estimated time: ~{total / 60:.0f} min for {len(todo)} stages (rough: calibrated just now on this "
            f"machine, as loaded now, where one forward+backward pass costs {per_unit * 1e6:.1f} us per token)")
    for i, stage in enumerate(stages, 1):
        if run.done(stage.name):
            say(f"[{i}/{len(stages)}] {stage.name}: done earlier ({run.log['stages'][stage.name]['seconds']:.0f} s), "
                "skipped")
            continue
        say(f"[{i}/{len(stages)}] {stage.name}: {stage.what}")
        t0 = time.perf_counter()
        info = run.stages()[stage.name]()
        run.mark(stage.name, time.perf_counter() - t0, **info)
        say(f"[{i}/{len(stages)}] {stage.name}: done in {time.perf_counter() - t0:.0f} s")
    say(f"adapted model: {run.out / MODEL_DIR}")
    return run.log


PROG = "python -m simlm_ir.adapt"


def build_parser():
    return config_parser(AdaptConfig, PROG, __doc__)


def main(argv=None) -> int:
    cfg = parse_config(AdaptConfig, argv, prog=PROG, description=__doc__)
    try:
        adapt(cfg)
    except SimLMIRError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
