"""The study specification: one TOML file naming models, questions, pool, design, aggregators
and analysis, read into frozen dataclasses before anything expensive happens.

:func:`load_study` parses the file with :mod:`tomllib` and builds a :class:`StudySpec`; every
table's ``from_dict`` rejects unknown keys by name, and every error names the file, the line of
the offending key (found in the file's text) and the key's dotted path, e.g.
``study.toml, line 12, key 'models.a.concurrency': expected None or an int >= 1; got 0.``
Relative paths (questions, output folder, model folders) are relative to the TOML file.

The schema (every key optional unless marked):

```toml
[study]
name = "demo"              # default: the file's stem
out = "runs/demo"          # REQUIRED: output folder
seed = 0                   # run seed: request seeds and the aggregator's shuffle of proposers
cache = true               # response cache OUT/cache.sqlite (a rerun then asks nothing twice)
concurrency = 8            # most calls in flight per endpoint and model (all models)
top_p = 1.0                # nucleus mass of every call
stop = []                  # stop strings of every call

[models.NAME]              # one table per model; NAME is the model everywhere else
backend = "openai"         # REQUIRED: openai | vllm | hf | mock
base_url = "http://127.0.0.1:8000/v1"   # openai: its own endpoint
api_key_env = "MY_KEY"     # openai: NAME of the variable holding the key (never the key)
path = "models/smollm2"    # vllm / hf: the weights folder (or a .gguf file)
served_model = "smollm2"   # the id the endpoint serves (default: NAME)
concurrency = 8            # this model's own cap on calls in flight
requests_per_minute = 600  # this model's own rate limit
temperature = 0.7          # sampling default of this model's pool samples
options = {}               # extra arguments of the backend (mock: delay_s, log_path)

[task]
questions = ["gsm8k_20.jsonl"]   # REQUIRED: question file(s) (JSONL)
task = "math"              # task of questions without a task field
limit = 20                 # first N questions of each file

[proposers]
max_tokens = 512           # completion limit of proposer calls
timeout_s = 120            # limit of one proposer call attempt
[[proposers.pool]]         # REQUIRED, one per model: the shared pool, sampled once
model = "a"
samples = 6
temperature = 0.7          # or one per sample: [0.2, 0.7, 1.0, ...]

[design]
n = 6                      # slots per configuration
max_configs = 200          # generated Self-/Mixed-MoA configurations (seeded sample)
seed = 0                   # seed of that sample
design = "random"          # how configurations are chosen (only "random" so far)
with_replacement = false   # let one sample fill several slots
methods = ["self_moa", "mixed_moa"]     # generated kinds kept
compositions = []          # e.g. [{a = 3, b = 3}]: only these model counts (default: all)
self_moa_seq = []          # e.g. [{model = "a", samples = 6, window = 4, repeats = 2}]
baselines = ["single", "plurality_vote"]  # offline: each model alone; votes over the slots

[aggregation]
max_tokens = 512           # completion limit of aggregator calls
timeout_s = 300            # limit of one aggregator call attempt
on_proposer_error = "fail" # fail | skip (default skip when min_references is set)
min_references = 4         # skip: fewest successful references an aggregator may see
copies_first = true        # Self-MoA-Seq: synthesis copies before the new samples
[[aggregation.aggregators]]  # REQUIRED, one or more; each configuration runs with each
model = "agg"
prompt = "moa"             # moa | zeroeval | usc
temperature = 0.0

[analysis]                 # AnalysisSpec fields, plus what the fit writes
embedding_model = "sentence-transformers/all-MiniLM-L6-v2"
vendi_q = 1.0              # or "inf"
cov_type = "nonrobust"
bootstrap = 0              # replicates over questions (0: off)
bootstrap_seed = 0
sensitivity = false
figures = true
formats = ["csv"]
report = false             # also write fit/report.html
```

Neighbours: :mod:`qdanalysis.studies.plan` turns a spec into configurations and a dry-run
estimate; :mod:`qdanalysis.studies.orchestrate` runs it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..runner.llm.backends import EndpointSpec

__all__ = [
    "AggregationSpec",
    "AggregatorEntry",
    "AnalysisSettings",
    "DesignSpec",
    "ModelSpec",
    "PoolEntry",
    "ProposersSpec",
    "SeqEntry",
    "StudySpec",
    "StudySpecError",
    "TaskSpec",
    "load_study",
]

KeyPath = tuple[str | int, ...]
PROMPTS = {"moa": "moa-v1", "zeroeval": "moa-zeroeval-v1", "usc": "usc-ours-v1"}
DESIGNS = ("random",)
GENERATED_METHODS = ("self_moa", "mixed_moa")
BASELINES = ("single", "plurality_vote", "oracle")
MODEL_BACKENDS = ("openai", "vllm", "hf", "mock")


class StudySpecError(ConfigError):
    """A study specification is invalid; names the file, line and key when known.

    Parameters
    ----------
    message
        What is wrong and how to fix it.
    key
        The dotted key path (list items by index).
    path, line
        The TOML file and the 1-based line of the key.
    """

    def __init__(
        self, message: str, *, key: KeyPath = (), path: str | None = None, line: int | None = None
    ) -> None:
        self.message, self.key, self.path, self.line = message, tuple(key), path, line
        where = [w for w in (path, None if line is None else f"line {line}") if w]
        if key:
            where.append(f"key {_dotted(key)!r}")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)


def _dotted(key: KeyPath) -> str:
    return ".".join(f"[{k}]" if isinstance(k, int) else k for k in key).replace(".[", "[")


@contextmanager
def _at(*key: str | int) -> Iterator[None]:
    """Errors raised inside name ``key`` (deeper keys already named stay as they are)."""
    try:
        yield
    except StudySpecError as exc:
        raise StudySpecError(exc.message, key=(*key, *exc.key)) from exc.__cause__
    except ConfigError as exc:
        raise StudySpecError(str(exc), key=key) from exc


def _reject_unknown(data: Mapping[str, Any], allowed: Sequence[str], what: str = "keys") -> None:
    for k in data:
        if k not in allowed:
            raise StudySpecError(
                f"expected {what} from {sorted(allowed)}; got unknown {k!r}. Remove or rename it.",
                key=(k,),
            )


def _fields(cls: type, data: Any, *, required: Sequence[str] = ()) -> dict[str, Any]:
    """``data`` as constructor arguments of ``cls``: a table with known keys only."""
    if not isinstance(data, Mapping):
        raise StudySpecError(f"expected a table; got {data!r}.")
    _reject_unknown(data, [f.name for f in dataclasses.fields(cls) if f.init])
    for k in required:
        if k not in data:
            raise StudySpecError(f"expected key {k!r}; it is missing.")
    return dict(data)


def _check(key: str, ok: bool, what: str, value: Any) -> None:
    if not ok:
        raise StudySpecError(f"expected {what}; got {value!r}.", key=(key,))


def _is_int(v: Any, low: int = 1) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _strings(key: str, value: Any, allowed: Sequence[str] | None = None) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    ok = isinstance(items, list | tuple) and all(isinstance(v, str) for v in items)
    _check(key, ok, "a string or a list of strings", value)
    for v in items:
        _check(key, allowed is None or v in allowed, f"values from {list(allowed or ())}", v)
    return tuple(items)


def _table_list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise StudySpecError(f"expected a list of tables ([[...]]); got {value!r}.")
    return value


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """One model: where it is served and its sampling default."""

    name: str
    """The model's name in configurations, rows and tables."""
    backend: str
    """``openai``, ``vllm``, ``hf`` or ``mock``."""
    base_url: str | None = None
    api_key_env: str | None = None
    path: str | None = None
    served_model: str | None = None
    concurrency: int | None = None
    requests_per_minute: float | None = None
    temperature: float | None = None
    """Sampling default of this model's pool samples (pool entries may override it)."""
    options: Mapping[str, Any] = field(default_factory=dict)
    """Extra keyword arguments of the backend (``mock``: ``delay_s``, ``log_path``)."""

    def __post_init__(self) -> None:
        _check(
            "backend",
            self.backend in MODEL_BACKENDS,
            f"one of {list(MODEL_BACKENDS)}",
            self.backend,
        )
        t = self.temperature
        _check("temperature", t is None or (_is_num(t) and 0 <= t <= 5), "a number in [0, 5]", t)
        with _at():
            self.endpoint(timeout_s=600.0)

    @classmethod
    def from_dict(cls, name: str, data: Any, base: Path) -> ModelSpec:
        """Build from a ``[models.NAME]`` table (paths relative to ``base``)."""
        d = _fields(cls, data, required=("backend",))
        if "name" in d:
            raise StudySpecError(
                "expected no 'name' key: the table's name is the model's.", key=("name",)
            )
        if d.get("path"):
            d["path"] = str(_resolve(base, d["path"]))
        if d.get("api_key_env") == "":
            d["api_key_env"] = None
        opts = dict(d.get("options") or {})
        if "log_path" in opts:
            opts["log_path"] = str(_resolve(base, opts["log_path"]))
        d["options"] = opts
        return cls(name=name, **d)

    def endpoint(self, *, timeout_s: float) -> EndpointSpec:
        """This model's :class:`~qdanalysis.runner.llm.backends.EndpointSpec`."""
        shared = {f.name for f in dataclasses.fields(EndpointSpec)} & set(_MODEL_FIELDS)
        fields = {k: getattr(self, k) for k in shared}
        if self.served_model == self.name:
            fields["served_model"] = None  # the name is already what the endpoint serves
        return EndpointSpec(**fields, timeout_s=timeout_s)


_MODEL_FIELDS = (
    "backend",
    "base_url",
    "api_key_env",
    "path",
    "served_model",
    "concurrency",
    "requests_per_minute",
    "options",
)


def _entries(cls: type, value: Any, key: str, required: Sequence[str]) -> tuple[Any, ...]:
    """The items of an array of tables (``[[key]]``), each built as ``cls``."""
    out = []
    for i, entry in enumerate(_table_list(value)):
        with _at(key, i):
            out.append(cls(**_fields(cls, entry, required=required)))
    return tuple(out)


def _resolve(base: Path, p: Any) -> Path:
    if not isinstance(p, str) or not p:
        raise StudySpecError(f"expected a path; got {p!r}.")
    path = Path(p).expanduser()
    return path if path.is_absolute() else base / path


@dataclass(frozen=True, kw_only=True)
class TaskSpec:
    """The questions."""

    questions: tuple[str, ...]
    """Question files (JSONL), absolute after loading."""
    task: str | None = None
    """Task of questions that name none (``math``, ``multiple_choice``, ``crux``, ``open``)."""
    limit: int | None = None
    """Keep the first ``limit`` questions of each file."""

    def __post_init__(self) -> None:
        _check("limit", self.limit is None or _is_int(self.limit), "an int >= 1", self.limit)

    @classmethod
    def from_dict(cls, data: Any, base: Path) -> TaskSpec:
        """Build from the ``[task]`` table."""
        d = _fields(cls, data, required=("questions",))
        files = _strings("questions", d["questions"])
        _check("questions", bool(files), "at least one question file", d["questions"])
        d["questions"] = tuple(str(_resolve(base, f)) for f in files)
        return cls(**d)


@dataclass(frozen=True, kw_only=True)
class PoolEntry:
    """Samples of one model in the shared proposer pool."""

    model: str
    samples: int
    temperature: float | tuple[float, ...] | None = None
    """One temperature, one per sample, or None (the model's, else the run default)."""

    def __post_init__(self) -> None:
        _check("samples", _is_int(self.samples), "an int >= 1", self.samples)
        t = self.temperature
        if isinstance(t, list | tuple):
            object.__setattr__(self, "temperature", t := tuple(t))
            _check("temperature", len(t) == self.samples, f"{self.samples} temperatures", t)
        for v in t if isinstance(t, tuple) else () if t is None else (t,):
            _check("temperature", _is_num(v) and 0 <= v <= 5, "numbers in [0, 5]", v)

    def temperatures(self, default: float) -> tuple[float, ...]:
        """The temperature of each sample."""
        t = self.temperature
        if isinstance(t, tuple):
            return tuple(float(v) for v in t)
        return (float(default if t is None else t),) * self.samples


@dataclass(frozen=True, kw_only=True)
class ProposersSpec:
    """The proposer role: the pool and its call limits."""

    pool: tuple[PoolEntry, ...]
    max_tokens: int = 512
    """Completion limit of proposer calls."""
    timeout_s: float = 600.0
    """Limit of one proposer call attempt (seconds)."""

    def __post_init__(self) -> None:
        _check("max_tokens", _is_int(self.max_tokens), "an int >= 1", self.max_tokens)
        _check("timeout_s", _is_num(self.timeout_s) and self.timeout_s > 0, "> 0", self.timeout_s)
        models = [p.model for p in self.pool]
        _check("pool", len(set(models)) == len(models), "each model once", models)

    @classmethod
    def from_dict(cls, data: Any) -> ProposersSpec:
        """Build from the ``[proposers]`` table."""
        d = _fields(cls, data, required=("pool",))
        d["pool"] = _entries(PoolEntry, d["pool"], "pool", ("model", "samples"))
        _check("pool", bool(d["pool"]), "at least one [[proposers.pool]] entry", d["pool"])
        return cls(**d)


@dataclass(frozen=True, kw_only=True)
class SeqEntry:
    """Self-MoA-Seq configurations of one model."""

    model: str
    samples: int
    window: int
    repeats: int

    def __post_init__(self) -> None:
        ok = _is_int(self.repeats) and _is_int(self.window) and _is_int(self.samples)
        ok = ok and self.repeats < self.window <= self.samples
        _check("window", ok, "1 <= repeats < window <= samples", (self.repeats, self.window))


@dataclass(frozen=True, kw_only=True)
class DesignSpec:
    """Which configurations run."""

    n: int = 6
    """Slots per generated configuration."""
    max_configs: int = 200
    """Generated Self-/Mixed-MoA configurations (a seeded sample of the space)."""
    seed: int = 0
    design: str = "random"
    """How configurations are chosen from the space; only ``"random"`` (seeded, every
    composition first, see :func:`qdanalysis.configs.generate_configs`) for now."""
    with_replacement: bool = False
    methods: tuple[str, ...] = GENERATED_METHODS
    compositions: tuple[Mapping[str, int], ...] = ()
    self_moa_seq: tuple[SeqEntry, ...] = ()
    baselines: tuple[str, ...] = ("single", "plurality_vote")

    def __post_init__(self) -> None:
        _check("n", _is_int(self.n), "an int >= 1", self.n)
        _check("max_configs", _is_int(self.max_configs, 0), "an int >= 0", self.max_configs)
        _check("seed", _is_int(self.seed, -(2**63)), "an int", self.seed)
        _check("design", self.design in DESIGNS, f"one of {list(DESIGNS)}", self.design)
        _check(
            "with_replacement",
            isinstance(self.with_replacement, bool),
            "a bool",
            self.with_replacement,
        )
        object.__setattr__(self, "methods", _strings("methods", self.methods, GENERATED_METHODS))
        object.__setattr__(self, "baselines", _strings("baselines", self.baselines, BASELINES))
        for i, comp in enumerate(self.compositions):
            ok = isinstance(comp, Mapping) and all(_is_int(v) for v in comp.values())
            ok = ok and sum(comp.values()) == self.n
            _check("compositions", ok, f"tables of model counts summing to n={self.n}", (i, comp))

    @classmethod
    def from_dict(cls, data: Any) -> DesignSpec:
        """Build from the ``[design]`` table."""
        d = _fields(cls, data)
        if "compositions" in d:
            d["compositions"] = tuple(
                dict(c) if isinstance(c, Mapping) else c for c in d["compositions"]
            )
        need = ("model", "samples", "window", "repeats")
        d["self_moa_seq"] = _entries(SeqEntry, d.get("self_moa_seq", []), "self_moa_seq", need)
        return cls(**d)


@dataclass(frozen=True, kw_only=True)
class AggregatorEntry:
    """One aggregator: every LLM-aggregated configuration runs with each."""

    model: str
    prompt: str = "moa"
    """``moa`` (togethercomputer/MoA), ``zeroeval`` (the ZeroEval fork) or ``usc``."""
    temperature: float = 0.0

    def __post_init__(self) -> None:
        _check("prompt", self.prompt in PROMPTS, f"one of {list(PROMPTS)}", self.prompt)
        t = self.temperature
        _check("temperature", _is_num(t) and 0 <= t <= 5, "a number in [0, 5]", t)

    @property
    def prompt_id(self) -> str:
        """The aggregator prompt id of :class:`~qdanalysis.configs.AggregatorSpec`."""
        return PROMPTS[self.prompt]


@dataclass(frozen=True, kw_only=True)
class AggregationSpec:
    """The aggregator role: aggregators, limits, failure handling."""

    aggregators: tuple[AggregatorEntry, ...]
    max_tokens: int = 512
    timeout_s: float = 600.0
    on_proposer_error: str | None = None
    """``fail`` or ``skip``; None: ``skip`` when :attr:`min_references` is set, else ``fail``."""
    min_references: int | None = None
    copies_first: bool = True

    def __post_init__(self) -> None:
        _check("max_tokens", _is_int(self.max_tokens), "an int >= 1", self.max_tokens)
        _check("timeout_s", _is_num(self.timeout_s) and self.timeout_s > 0, "> 0", self.timeout_s)
        m = self.min_references
        _check("min_references", m is None or _is_int(m), "an int >= 1", m)
        e = self.on_proposer_error
        _check("on_proposer_error", e in (None, "fail", "skip"), "'fail' or 'skip'", e)
        _check("on_proposer_error", not (e == "fail" and m), "'skip' with min_references", e)
        _check(
            "aggregators", bool(self.aggregators), "at least one [[aggregation.aggregators]]", ()
        )

    @property
    def on_error(self) -> str:
        """The resolved ``on_proposer_error``."""
        return self.on_proposer_error or ("skip" if self.min_references else "fail")

    @classmethod
    def from_dict(cls, data: Any) -> AggregationSpec:
        """Build from the ``[aggregation]`` table."""
        d = _fields(cls, data, required=("aggregators",))
        d["aggregators"] = _entries(AggregatorEntry, d["aggregators"], "aggregators", ("model",))
        return cls(**d)


#: AnalysisSpec fields a study sets itself (from its design), not from [analysis].
_STUDY_SET = (
    "n_proposers",
    "max_configs",
    "seed",
    "with_replacement",
    "aggregator",
    "performance",
    "performance_sha256",
    "proposer_key",
)


@dataclass(frozen=True, kw_only=True)
class AnalysisSettings:
    """The fit: :class:`~qdanalysis.analysis.pipeline.AnalysisSpec` fields and what to write."""

    spec: Mapping[str, Any] = field(default_factory=dict)
    """AnalysisSpec fields (embedding model, Vendi order and tolerance, covariance, ...)."""
    bootstrap: int = 0
    bootstrap_seed: int = 0
    sensitivity: bool = False
    figures: bool = True
    formats: tuple[str, ...] = ("csv",)
    report: bool = False
    cache_dir: str | None = None
    """Embedding cache directory (default: the toolkit's)."""

    def __post_init__(self) -> None:
        b = self.bootstrap
        _check("bootstrap", _is_int(b, 0) and b != 1, "0 (off) or an int >= 2", b)
        object.__setattr__(self, "formats", _strings("formats", self.formats, ("csv", "md", "tex")))
        for k in ("sensitivity", "figures", "report"):
            _check(k, isinstance(getattr(self, k), bool), "a bool", getattr(self, k))

    @classmethod
    def from_dict(cls, data: Any, base: Path) -> AnalysisSettings:
        """Build from the ``[analysis]`` table (unknown keys rejected by name)."""
        from ..analysis.pipeline import AnalysisSpec

        if not isinstance(data, Mapping):
            raise StudySpecError(f"expected a table; got {data!r}.")
        own = {f.name for f in dataclasses.fields(cls)} - {"spec"}
        spec_keys = sorted(
            f.name for f in dataclasses.fields(AnalysisSpec) if f.name not in _STUDY_SET
        )
        mine = {k: v for k, v in data.items() if k in own}
        spec = {k: v for k, v in data.items() if k not in own}
        _reject_unknown(data, [*own, *spec_keys])
        if spec.get("vendi_q") in ("inf", "infinity"):
            spec["vendi_q"] = math.inf
        if mine.get("cache_dir"):
            mine["cache_dir"] = str(_resolve(base, mine["cache_dir"]))
        try:
            AnalysisSpec(**spec)  # validate now, before anything expensive
        except ConfigError as exc:
            m = re.match(r"AnalysisSpec\.(\w+):", str(exc))
            if m and m.group(1) in spec:  # the key names the field: no need to repeat it
                raise StudySpecError(str(exc)[m.end() :].strip(), key=(m.group(1),)) from exc
            raise StudySpecError(str(exc)) from exc
        return cls(spec=spec, **mine)


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A whole study, as one TOML file describes it (see the module docstring)."""

    name: str
    out: str
    """Output folder (absolute after loading)."""
    models: Mapping[str, ModelSpec]
    task: TaskSpec
    proposers: ProposersSpec
    design: DesignSpec
    aggregation: AggregationSpec
    analysis: AnalysisSettings = field(default_factory=AnalysisSettings)
    seed: int = 0
    cache: bool = True
    concurrency: int = 8
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    source: str | None = None
    """The TOML file it was read from."""

    def __post_init__(self) -> None:
        with _at("study"):
            _check("concurrency", _is_int(self.concurrency), "an int >= 1", self.concurrency)
            ok = _is_num(self.top_p) and 0 < self.top_p <= 1
            _check("top_p", ok, "a number in (0, 1]", self.top_p)
            object.__setattr__(self, "stop", _strings("stop", self.stop))
        self._check_models()

    def _check_models(self) -> None:
        names = sorted(self.models)
        used: list[tuple[KeyPath, str]] = [
            (("proposers", "pool", i, "model"), p.model) for i, p in enumerate(self.proposers.pool)
        ]
        used += [
            (("aggregation", "aggregators", i, "model"), a.model)
            for i, a in enumerate(self.aggregation.aggregators)
        ]
        used += [
            (("design", "self_moa_seq", i, "model"), s.model)
            for i, s in enumerate(self.design.self_moa_seq)
        ]
        used += [
            (("design", "compositions", i, m), m)
            for i, c in enumerate(self.design.compositions)
            for m in c
        ]
        pool = {p.model: p.samples for p in self.proposers.pool}
        for key, model in used:
            if model not in self.models:
                raise StudySpecError(
                    f"expected a model of [models] ({names}); got {model!r}. Add a "
                    f"[models.{model}] table.",
                    key=key,
                )
            if key[0] == "design" and model not in pool:
                raise StudySpecError(
                    f"expected a model of the pool ({sorted(pool)}); got {model!r}.", key=key
                )
        for i, s in enumerate(self.design.self_moa_seq):
            if s.samples > pool[s.model]:
                raise StudySpecError(
                    f"expected at most the pool's {pool[s.model]} samples of {s.model!r}; got "
                    f"{s.samples}.",
                    key=("design", "self_moa_seq", i, "samples"),
                )

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, base: str | Path = ".", source: str | None = None
    ) -> StudySpec:
        """Build from the parsed TOML (paths relative to ``base``); unknown keys rejected.

        Raises
        ------
        StudySpecError
            Naming the dotted key of the first problem (and, from :func:`load_study`, the file
            and line).
        """
        root = Path(base)
        sections = ("study", "models", "task", "proposers", "design", "aggregation", "analysis")
        _reject_unknown(data, sections, "tables")
        for k in ("study", "models", "task", "proposers", "aggregation"):
            if k not in data:
                raise StudySpecError(f"expected a [{k}] table; it is missing.")
        with _at("study"):
            top = _fields(_StudyTable, data["study"], required=("out",))
            top["out"] = str(_resolve(root, top["out"]))
            top.setdefault("name", Path(source).stem if source else "study")
        models: dict[str, ModelSpec] = {}
        with _at("models"):
            if not isinstance(data["models"], Mapping) or not data["models"]:
                raise StudySpecError("expected one [models.NAME] table per model; got none.")
            for name, m in data["models"].items():
                with _at(name):
                    models[name] = ModelSpec.from_dict(name, m, root)
        parts: dict[str, Any] = {}
        with _at("task"):
            parts["task"] = TaskSpec.from_dict(data["task"], root)
        with _at("proposers"):
            parts["proposers"] = ProposersSpec.from_dict(data["proposers"])
        with _at("design"):
            parts["design"] = DesignSpec.from_dict(data.get("design", {}))
        with _at("aggregation"):
            parts["aggregation"] = AggregationSpec.from_dict(data["aggregation"])
        with _at("analysis"):
            parts["analysis"] = AnalysisSettings.from_dict(data.get("analysis", {}), root)
        return cls(models=models, source=source, **parts, **top)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of every setting (for the study's record beside its outputs)."""
        d = dataclasses.asdict(self)
        if math.isinf(d["analysis"]["spec"].get("vendi_q", 1.0)):
            d["analysis"]["spec"]["vendi_q"] = "inf"
        return d


@dataclass(frozen=True, kw_only=True)
class _StudyTable:
    """The keys of ``[study]``."""

    name: str | None = None
    out: str = ""
    seed: int = 0
    cache: bool = True
    concurrency: int = 8
    top_p: float = 1.0
    stop: tuple[str, ...] = ()


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?")
_KEY = re.compile(
    r"^\s*((?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|\"[^\"]*\"|'[^']*'))*)\s*="
)


def _split_key(text: str) -> list[str]:
    parts = re.findall(r"\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


def key_lines(text: str) -> dict[KeyPath, int]:
    """The 1-based line of every table header and key of a TOML text, by key path.

    Array-of-tables items are numbered (``proposers.pool[1].model``); keys inside inline
    tables are found by their enclosing key's line.

    Examples
    --------
    >>> text = '[study]\\nout = "x"\\n[[p.pool]]\\nm = 1\\n[[p.pool]]\\nm = 2\\n'
    >>> key_lines(text)[("p", "pool", 1, "m")]
    6
    """
    lines: dict[KeyPath, int] = {}
    table: KeyPath = ()
    counts: dict[KeyPath, int] = {}
    for i, line in enumerate(text.splitlines(), start=1):
        h = _HEADER.match(line)
        if h:
            path = tuple(_split_key(h.group(2)))
            if h.group(1) == "[[":
                n = counts[path] = counts.get(path, -1) + 1
                table = (*path, n)
            else:
                table = _with_indices(path, counts)
            lines.setdefault(table, i)
            continue
        k = _KEY.match(line)
        if k:
            lines.setdefault((*table, *_split_key(k.group(1))), i)
    return lines


def _with_indices(path: KeyPath, counts: Mapping[KeyPath, int]) -> KeyPath:
    """A sub-table header under an array of tables belongs to its latest item."""
    out: list[str | int] = []
    for part in path:
        out.append(part)
        n = counts.get(tuple(p for p in out if isinstance(p, str)))
        if n is not None and isinstance(part, str):
            out.append(n)
    return tuple(out)


def _line_of(key: KeyPath, lines: Mapping[KeyPath, int]) -> int | None:
    """The line of ``key``, else of the first key under it, else of its nearest parent."""
    if key in lines:
        return lines[key]
    under = [n for k, n in lines.items() if k[: len(key)] == key]
    if key and under:
        return min(under)
    for end in range(len(key) - 1, 0, -1):
        if key[:end] in lines:
            return lines[key[:end]]
    return None


def load_study(path: str | Path) -> StudySpec:
    """Read a study TOML file into a :class:`StudySpec` (nothing is run or loaded).

    Parameters
    ----------
    path
        The TOML file; relative paths inside are relative to its folder.

    Returns
    -------
    StudySpec

    Raises
    ------
    StudySpecError
        If the file is missing, not TOML (its line and column), or a key is unknown or has a
        bad value (the file, the key's line and its dotted path).
    """
    p = Path(path)
    if not p.is_file():
        raise StudySpecError("expected a study TOML file; it does not exist.", path=str(p))
    text = p.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # Python 3.14 gives lineno/colno; earlier versions put them in the message only.
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        line = getattr(exc, "lineno", None) or (int(m.group(1)) if m else None)
        col = getattr(exc, "colno", None) or (int(m.group(2)) if m else None)
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise StudySpecError(
            f"expected TOML; got a syntax error at column {col}: {msg}. Fix the file's syntax.",
            path=str(p),
            line=line,
        ) from None
    try:
        return StudySpec.from_dict(data, base=p.resolve().parent, source=str(p))
    except StudySpecError as exc:
        raise StudySpecError(
            exc.message, key=exc.key, path=str(p), line=_line_of(exc.key, key_lines(text))
        ) from exc.__cause__
