"""Proposer configurations: specs, stable ids, and reproducible generation.

A configuration is a multiset of proposer types filling ``n`` slots, together with the sample
draw that fills each slot, plus an aggregator. Sample ``k`` of type ``m`` is one output per
question, shared by every configuration naming ``(m, k)``, so hundreds of configurations cost no
extra generation.

Neighbours: :mod:`qdanalysis.outputs` supplies the rows; :mod:`qdanalysis.analysis.diversity`,
:mod:`qdanalysis.analysis.pairs` measure each configuration.
"""

from __future__ import annotations

import itertools
import json
import math
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._hashing import canonical_json, content_hash
from .errors import ConfigError

__all__ = [
    "DEFAULT_AGGREGATOR_TEMPERATURE",
    "DEFAULT_PROPOSER_TEMPERATURE",
    "METHODS",
    "AggregatorSpec",
    "ConfigSpec",
    "ProposerSlot",
    "configs_frame",
    "configs_from_frame",
    "count_config_space",
    "generate_configs",
    "type_letters",
]

METHODS = ("mixed_moa", "self_moa", "self_moa_seq", "single")
AGGREGATOR_KINDS = ("llm", "plurality_vote", "oracle")
DEFAULT_PROPOSER_TEMPERATURE = 0.7
"""Proposer sampling temperature when nothing sets one (the paper's 0.7, MoA's default)."""
DEFAULT_AGGREGATOR_TEMPERATURE = 0.7
"""Aggregator temperature of ``AggregatorSpec(kind="llm")`` (MoA's 0.7; the paper does not state
it for MMLU/CRUX/MATH, so it is an assumption). Every runner path takes it from here."""


def _reject_unknown(cls_name: str, data: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{cls_name}: expected keys from {sorted(allowed)}; got unknown {unknown}. "
            "Remove or rename them."
        )


@dataclass(frozen=True, kw_only=True, order=True)
class ProposerSlot:
    """One proposer slot: which proposer type and which of its samples fills it."""

    model: str
    """Proposer type: a model name, or several key columns joined by ``|``."""
    sample_index: int
    """Which sample of that type (``sample_index`` in the outputs table)."""
    temperature: float | None = None
    """Sampling temperature, when the runner has to generate the sample."""

    def __post_init__(self) -> None:
        if not isinstance(self.model, str) or not self.model:
            raise ConfigError(f"ProposerSlot.model: expected a non-empty str; got {self.model!r}.")
        if (
            isinstance(self.sample_index, bool)
            or not isinstance(self.sample_index, int | np.integer)
            or self.sample_index < 0
        ):
            raise ConfigError(
                f"ProposerSlot.sample_index: expected an int >= 0; got {self.sample_index!r}."
            )
        object.__setattr__(self, "sample_index", int(self.sample_index))
        if self.temperature is not None and not (
            isinstance(self.temperature, int | float) and 0 <= self.temperature <= 5
        ):
            raise ConfigError(
                f"ProposerSlot.temperature: expected None or a number in [0, 5]; "
                f"got {self.temperature!r}."
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProposerSlot:
        """Build from a mapping, rejecting unknown keys by name."""
        _reject_unknown("ProposerSlot", data, ("model", "sample_index", "temperature"))
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (``temperature`` left out when None, so ids ignore it then)."""
        d: dict[str, Any] = {"model": self.model, "sample_index": self.sample_index}
        if self.temperature is not None:
            d["temperature"] = float(self.temperature)
        return d


@dataclass(frozen=True, kw_only=True)
class AggregatorSpec:
    """What combines the proposer outputs into one answer."""

    kind: str = "plurality_vote"
    """``"llm"`` (an aggregator model call), ``"plurality_vote"`` or ``"oracle"``."""
    model: str | None = None
    """The aggregator model, for ``kind="llm"``."""
    prompt_id: str = "moa-v1"
    """Which aggregation prompt (for ``kind="llm"``)."""
    temperature: float = DEFAULT_AGGREGATOR_TEMPERATURE
    """Aggregator sampling temperature (for ``kind="llm"``)."""

    def __post_init__(self) -> None:
        if self.kind not in AGGREGATOR_KINDS:
            raise ConfigError(
                f"AggregatorSpec.kind: expected one of {list(AGGREGATOR_KINDS)}; got {self.kind!r}."
            )
        if self.kind == "llm" and not self.model:
            raise ConfigError("AggregatorSpec: kind='llm' needs model=<aggregator model name>.")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AggregatorSpec:
        """Build from a mapping, rejecting unknown keys by name."""
        _reject_unknown("AggregatorSpec", data, ("kind", "model", "prompt_id", "temperature"))
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; for offline aggregators only ``kind`` (so ids do not depend on prompts)."""
        if self.kind != "llm":
            return {"kind": self.kind}
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class ConfigSpec:
    """A configuration: proposer slots, aggregator and method.

    Slots are stored sorted, so one multiset-with-draw has one ``config_id``.
    """

    method: str
    """``"mixed_moa"``, ``"self_moa"``, ``"self_moa_seq"`` or ``"single"``."""
    proposers: tuple[ProposerSlot, ...]
    """The slots, sorted by (model, sample_index)."""
    aggregator: AggregatorSpec = field(default_factory=AggregatorSpec)
    """What combines the slots' outputs."""
    layers: int = 1
    """Proposer layers before the aggregator (Mixed-MoA only may use more than 1)."""
    window: int | None = None
    """Self-MoA-Seq window size w."""
    repeats: int | None = None
    """Self-MoA-Seq copies k of the current synthesis in each later window."""

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(
                f"ConfigSpec.method: expected one of {list(METHODS)}; got {self.method!r}."
            )
        slots = tuple(
            s if isinstance(s, ProposerSlot) else ProposerSlot.from_dict(s) for s in self.proposers
        )
        if not slots:
            raise ConfigError("ConfigSpec.proposers: expected at least one slot; got none.")
        object.__setattr__(
            self, "proposers", tuple(sorted(slots, key=lambda s: (s.model, s.sample_index)))
        )
        if isinstance(self.aggregator, Mapping):
            object.__setattr__(self, "aggregator", AggregatorSpec.from_dict(self.aggregator))
        if not isinstance(self.layers, int) or self.layers < 1:
            raise ConfigError(f"ConfigSpec.layers: expected an int >= 1; got {self.layers!r}.")
        if self.method == "self_moa_seq":
            w, k = self.window, self.repeats
            if w is None or k is None:
                raise ConfigError("ConfigSpec: method='self_moa_seq' needs window and repeats.")
            if not (1 <= k < w <= len(slots)):
                raise ConfigError(
                    f"ConfigSpec: expected 1 <= repeats < window <= n_proposers; got repeats={k}, "
                    f"window={w}, n_proposers={len(slots)}."
                )
        elif self.window is not None or self.repeats is not None:
            raise ConfigError(
                "ConfigSpec: window/repeats apply to method='self_moa_seq' only; got "
                f"method={self.method!r}."
            )

    @property
    def n_proposers(self) -> int:
        """Number of slots."""
        return len(self.proposers)

    @property
    def types(self) -> tuple[str, ...]:
        """Each slot's proposer type, in slot order."""
        return tuple(s.model for s in self.proposers)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; the input of :attr:`config_id`."""
        d: dict[str, Any] = {
            "method": self.method,
            "proposers": [s.to_dict() for s in self.proposers],
            "aggregator": self.aggregator.to_dict(),
            "layers": self.layers,
        }
        if self.window is not None:
            d["window"] = self.window
            d["repeats"] = self.repeats
        return d

    def to_json(self) -> str:
        """Canonical JSON (sorted keys), stored in the ``config`` column of runner rows."""
        return canonical_json(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfigSpec:
        """Build from a mapping, rejecting unknown keys by name."""
        _reject_unknown(
            "ConfigSpec", data, ("method", "proposers", "aggregator", "layers", "window", "repeats")
        )
        d = dict(data)
        d["proposers"] = tuple(ProposerSlot.from_dict(s) for s in d.get("proposers", ()))
        if "aggregator" in d:
            d["aggregator"] = AggregatorSpec.from_dict(d["aggregator"])
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> ConfigSpec:
        """Inverse of :meth:`to_json`."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"ConfigSpec.from_json: expected JSON; got {text[:80]!r}.") from exc
        return cls.from_dict(data)

    @property
    def config_id(self) -> str:
        """``"cfg-"`` + 12 hex digits of the SHA-256 of the canonical JSON.

        Examples
        --------
        >>> s = ConfigSpec(method="self_moa", proposers=(ProposerSlot(model="m", sample_index=1),
        ...     ProposerSlot(model="m", sample_index=0)))
        >>> t = ConfigSpec(method="self_moa", proposers=(
        ...     ProposerSlot(model="m", sample_index=0), ProposerSlot(model="m", sample_index=1)))
        >>> s.config_id == t.config_id
        True
        """
        return "cfg-" + content_hash(self.to_json(), length=12)


def type_letters(types: Sequence[str]) -> dict[str, str]:
    """Assign one letter per proposer type, for readable names such as ``aabbcc``.

    The first letter of the type's name (lower case) is used when it is unique among the
    types; otherwise types get ``a``, ``b``, … in sorted order, skipping letters already taken.

    Examples
    --------
    >>> type_letters(["qwen", "deepseek", "mistral"])
    {'deepseek': 'd', 'mistral': 'm', 'qwen': 'q'}
    >>> type_letters(["gpt-4o", "gpt-3.5", "davinci"])
    {'davinci': 'd', 'gpt-3.5': 'a', 'gpt-4o': 'b'}
    """
    uniq = sorted(set(types))
    firsts = {}
    for t in uniq:
        c = next((ch.lower() for ch in t if ch.isalpha()), "")
        firsts[t] = c
    counts: dict[str, int] = {}
    for c in firsts.values():
        counts[c] = counts.get(c, 0) + 1
    out: dict[str, str] = {}
    taken = set()
    for t in uniq:
        if firsts[t] and counts[firsts[t]] == 1:
            out[t] = firsts[t]
            taken.add(firsts[t])
    pool = iter(c for c in string.ascii_lowercase + string.ascii_uppercase if c not in taken)
    for t in uniq:
        if t not in out:
            try:
                out[t] = next(pool)
            except StopIteration:
                raise ConfigError(
                    f"type_letters: at most 52 proposer types get letters; got {len(uniq)}."
                ) from None
    return dict(sorted(out.items()))


def _compositions(n: int, caps: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """All count vectors c with sum n and 0 <= c_i <= caps_i, in lexicographic order."""
    k = len(caps)

    def rec(i: int, left: int) -> Iterator[tuple[int, ...]]:
        if i == k - 1:
            if left <= caps[i]:
                yield (left,)
            return
        for c in range(min(left, caps[i]), -1, -1):
            for rest in rec(i + 1, left - c):
                yield (c, *rest)

    if k == 0:
        return
    yield from rec(0, n)


def _n_draws(counts: Sequence[int], n_samples: Sequence[int], with_replacement: bool) -> int:
    total = 1
    for c, s in zip(counts, n_samples, strict=True):
        total *= math.comb(s + c - 1, c) if with_replacement else math.comb(s, c)
    return total


def count_config_space(
    samples: Mapping[str, Sequence[int]], n_proposers: int, *, with_replacement: bool = False
) -> int:
    """Number of distinct configurations (multiset of types × sample draw) of ``n_proposers`` slots.

    Examples
    --------
    >>> count_config_space({"a": range(4), "b": range(4), "c": range(4)}, 6)
    924
    >>> count_config_space({"m": range(10)}, 6)
    210
    """
    types = sorted(samples)
    ns = [len(samples[t]) for t in types]
    caps = [n_proposers if with_replacement else s for s in ns]
    return sum(_n_draws(c, ns, with_replacement) for c in _compositions(n_proposers, caps))


def _random_draw(
    counts: Sequence[int],
    types: Sequence[str],
    samples: Mapping[str, Sequence[int]],
    rng: np.random.Generator,
    with_replacement: bool,
) -> tuple[tuple[str, int], ...]:
    slots: list[tuple[str, int]] = []
    for t, c in zip(types, counts, strict=True):
        if c == 0:
            continue
        pool = list(samples[t])
        if with_replacement:
            # Uniform over multisets of size c: stars and bars.
            bars = np.sort(rng.choice(len(pool) + c - 1, size=len(pool) - 1, replace=False))
            edges = np.concatenate([[-1], bars, [len(pool) + c - 1]])
            reps = np.diff(edges) - 1
            for s, r in zip(pool, reps, strict=True):
                slots.extend([(t, int(s))] * int(r))
        else:
            chosen = rng.choice(len(pool), size=c, replace=False)
            slots.extend((t, int(pool[i])) for i in sorted(chosen))
    return tuple(sorted(slots))


def _all_draws(
    counts: Sequence[int],
    types: Sequence[str],
    samples: Mapping[str, Sequence[int]],
    with_replacement: bool,
) -> Iterator[tuple[tuple[str, int], ...]]:
    per_type = []
    for t, c in zip(types, counts, strict=True):
        if c == 0:
            continue
        combos = (
            itertools.combinations_with_replacement(samples[t], c)
            if with_replacement
            else itertools.combinations(samples[t], c)
        )
        per_type.append([tuple((t, int(s)) for s in combo) for combo in combos])
    for parts in itertools.product(*per_type):
        yield tuple(sorted(itertools.chain.from_iterable(parts)))


_ENUMERATE_LIMIT = 200_000


def _check_generate_args(
    outputs: pd.DataFrame, n_proposers: int, max_configs: int, proposer_column: str
) -> None:
    if not isinstance(n_proposers, int) or n_proposers < 1:
        raise ConfigError(f"n_proposers: expected an int >= 1; got {n_proposers!r}.")
    if not isinstance(max_configs, int) or max_configs < 1:
        raise ConfigError(f"max_configs: expected an int >= 1; got {max_configs!r}.")
    if "dataset" in outputs.columns and outputs["dataset"].nunique() > 1:
        raise ConfigError(
            "generate_configs: expected the rows of one dataset; got "
            f"{sorted(outputs['dataset'].unique())}. Call it once per dataset."
        )
    if proposer_column not in outputs.columns:
        raise ConfigError(
            f"generate_configs: expected a {proposer_column!r} column; got "
            f"{list(outputs.columns)}. Add it with qdanalysis.outputs.add_proposer_column()."
        )


_Draw = tuple[tuple[str, int], ...]
"""One configuration's slots as sorted ``(type, sample_index)`` pairs."""


def _type_samples(outputs: pd.DataFrame, proposer_column: str) -> dict[str, list[int]]:
    """Each proposer type's distinct sample indices, sorted, keyed by type in sorted order."""
    return {
        str(t): sorted(int(s) for s in g.unique())
        for t, g in outputs.groupby(proposer_column, sort=True)["sample_index"]
    }


def _fitting_compositions(
    types: Sequence[str], ns: Sequence[int], n_proposers: int, with_replacement: bool
) -> list[tuple[int, ...]]:
    """Slot counts per type (``ns`` samples each) filling ``n_proposers``; ConfigError if none."""
    caps = [n_proposers if with_replacement else s for s in ns]
    comps = list(_compositions(n_proposers, caps))
    if not comps:
        raise ConfigError(
            f"generate_configs: no configuration of {n_proposers} slots fits; the types have "
            f"{dict(zip(types, ns, strict=True))} samples. Lower n_proposers or pass "
            "with_replacement=True."
        )
    return comps


def _every_draw(
    comps: Sequence[Sequence[int]],
    types: Sequence[str],
    samples: Mapping[str, Sequence[int]],
    with_replacement: bool,
) -> Iterator[_Draw]:
    """Every draw of every composition, composition by composition (the whole space)."""
    for c in comps:
        yield from _all_draws(c, types, samples, with_replacement)


def _draw_per_composition(
    comps: Sequence[Sequence[int]],
    types: Sequence[str],
    samples: Mapping[str, Sequence[int]],
    rng: np.random.Generator,
    with_replacement: bool,
    max_configs: int,
) -> dict[_Draw, None]:
    """Sampling steps 1 and 2: one random draw per composition, single-type ones first."""
    single = [c for c in comps if sum(1 for x in c if x) == 1]
    mixed = [c for c in comps if sum(1 for x in c if x) > 1]
    order = [single[i] for i in rng.permutation(len(single))] + [
        mixed[i] for i in rng.permutation(len(mixed))
    ]
    chosen: dict[_Draw, None] = {}
    for c in order:
        if len(chosen) >= max_configs:
            break
        chosen[_random_draw(c, types, samples, rng, with_replacement)] = None
    return chosen


def _fill_uniformly(
    chosen: dict[_Draw, None],
    comps: Sequence[Sequence[int]],
    sizes: Sequence[int],
    types: Sequence[str],
    samples: Mapping[str, Sequence[int]],
    rng: np.random.Generator,
    with_replacement: bool,
    max_configs: int,
) -> None:
    """Sampling step 3: add uniform draws from the whole space until ``max_configs`` are chosen."""
    if len(chosen) >= max_configs:
        return
    if sum(sizes) <= _ENUMERATE_LIMIT:
        # Small enough to list: pick the missing ones without replacement from the rest.
        rest = [d for d in _every_draw(comps, types, samples, with_replacement) if d not in chosen]
        need = max_configs - len(chosen)
        for i in sorted(rng.choice(len(rest), size=need, replace=False)):
            chosen[rest[i]] = None
        return
    # Too large to list: a composition with probability proportional to its draws, then a draw.
    weights = np.array(sizes, dtype=float)
    weights /= weights.sum()
    while len(chosen) < max_configs:
        c = comps[int(rng.choice(len(comps), p=weights))]
        chosen[_random_draw(c, types, samples, rng, with_replacement)] = None


def _draw_spec(draw: _Draw, aggregator: AggregatorSpec) -> ConfigSpec:
    """The spec of one draw: ``"self_moa"`` when all slots share a type, else ``"mixed_moa"``."""
    method = "self_moa" if len({t for t, _ in draw}) == 1 else "mixed_moa"
    return ConfigSpec(
        method=method,
        proposers=tuple(ProposerSlot(model=t, sample_index=s) for t, s in draw),
        aggregator=aggregator,
    )


def generate_configs(
    outputs: pd.DataFrame,
    *,
    n_proposers: int = 6,
    max_configs: int = 300,
    seed: int = 0,
    with_replacement: bool = False,
    aggregator: AggregatorSpec | None = None,
    proposer_column: str = "proposer",
) -> list[ConfigSpec]:
    """Enumerate or sample the configurations of one dataset's proposer outputs.

    The space is every multiset of ``n_proposers`` proposer types together with every draw of
    distinct samples of each type (a type with ``s`` samples fills at most ``s`` slots unless
    ``with_replacement``). If the space holds at most ``max_configs`` configurations, all are
    returned. Otherwise a seeded sample is drawn in three steps: (1) one random draw of every
    single-type composition (Self-MoA), (2) one random draw of every other composition, in a
    seeded random order, while room is left, (3) uniform draws from the whole space until
    ``max_configs`` distinct configurations are reached.

    Parameters
    ----------
    outputs
        Proposer rows of **one** dataset, with a proposer-type column (see
        :func:`~qdanalysis.outputs.add_proposer_column`) and ``sample_index``.
    n_proposers
        Slots per configuration (the paper uses 6).
    max_configs
        Upper bound on the number returned.
    seed
        Seed of the sampling; the same inputs and seed give the same list.
    with_replacement
        Allow one sample to fill several slots (duplicates lower diversity; off by default).
    aggregator
        Aggregator recorded in each spec; plurality vote by default.
    proposer_column
        The column naming each row's proposer type.

    Returns
    -------
    list of ConfigSpec
        Sorted by ``config_id``; method ``"self_moa"`` when all slots share a type,
        ``"mixed_moa"`` otherwise.

    Raises
    ------
    ConfigError
        If no configuration fits (too few samples) or the arguments are invalid.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"proposer": ["a"] * 3 + ["b"] * 3, "sample_index": [0, 1, 2] * 2})
    >>> len(generate_configs(df, n_proposers=2))
    15
    """
    _check_generate_args(outputs, n_proposers, max_configs, proposer_column)
    samples = _type_samples(outputs, proposer_column)
    types = sorted(samples)
    ns = [len(samples[t]) for t in types]
    comps = _fitting_compositions(types, ns, n_proposers, with_replacement)
    sizes = [_n_draws(c, ns, with_replacement) for c in comps]
    rng = np.random.default_rng(seed)
    if sum(sizes) <= max_configs:
        chosen = dict.fromkeys(_every_draw(comps, types, samples, with_replacement))
    else:
        chosen = _draw_per_composition(comps, types, samples, rng, with_replacement, max_configs)
        _fill_uniformly(chosen, comps, sizes, types, samples, rng, with_replacement, max_configs)
    agg = aggregator or AggregatorSpec()
    specs = [_draw_spec(draw, agg) for draw in chosen]
    return sorted(specs, key=lambda s: s.config_id)


def configs_frame(
    configs: Sequence[ConfigSpec], *, letters: Mapping[str, str] | None = None
) -> pd.DataFrame:
    """One row per configuration: ``config_id, name, proposers, samples, method, n_proposers,
    n_models, config``.

    ``name`` is one letter per slot (see :func:`type_letters`), ``proposers`` a JSON array of the
    slots' types in slot order, ``samples`` a JSON array of their sample indices and ``config``
    the canonical JSON spec.
    """
    letters = (
        dict(letters)
        if letters is not None
        else type_letters([t for c in configs for t in c.types])
    )
    rows = []
    for c in configs:
        rows.append(
            {
                "config_id": c.config_id,
                "name": "".join(letters[t] for t in c.types),
                "proposers": json.dumps(list(c.types)),
                "samples": json.dumps([s.sample_index for s in c.proposers]),
                "method": c.method,
                "n_proposers": c.n_proposers,
                "n_models": len(set(c.types)),
                "config": c.to_json(),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "config_id",
            "name",
            "proposers",
            "samples",
            "method",
            "n_proposers",
            "n_models",
            "config",
        ],
    )


def configs_from_frame(frame: pd.DataFrame, *, column: str = "config") -> list[ConfigSpec]:
    """Parse the distinct canonical-JSON specs in ``frame[column]`` (e.g. runner rows).

    Raises
    ------
    ConfigError
        If a spec does not parse, or a row's ``config_id`` disagrees with its spec.
    """
    if column not in frame.columns:
        raise ConfigError(
            f"expected a {column!r} column of ConfigSpec JSON; got {list(frame.columns)}."
        )
    seen: dict[str, ConfigSpec] = {}
    for text in frame[column].dropna().unique():
        spec = ConfigSpec.from_json(str(text))
        seen[spec.config_id] = spec
    if "config_id" in frame.columns:
        pairs = frame[["config_id", column]].dropna().drop_duplicates()
        for cid, text in pairs.itertuples(index=False):
            real = ConfigSpec.from_json(str(text)).config_id
            if real != cid:
                raise ConfigError(
                    f"config_id {cid!r} does not match its spec (which hashes to {real!r}). "
                    "Do not edit the config column by hand."
                )
    return [seen[k] for k in sorted(seen)]
