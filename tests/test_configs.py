from __future__ import annotations

import hashlib
import json
from collections import Counter

import pandas as pd
import pytest

from qdanalysis.configs import (
    AggregatorSpec,
    ConfigSpec,
    ProposerSlot,
    configs_frame,
    count_config_space,
    generate_configs,
    type_letters,
)
from qdanalysis.errors import ConfigError
from qdanalysis.outputs import add_proposer_column


def pool(types: dict[str, int]) -> pd.DataFrame:
    return pd.DataFrame(
        [{"proposer": t, "sample_index": s} for t, n in types.items() for s in range(n)]
    )


def test_config_id_is_sha256_of_canonical_json():
    spec = ConfigSpec(
        method="mixed_moa",
        proposers=(
            ProposerSlot(model="b", sample_index=0),
            ProposerSlot(model="a", sample_index=2),
        ),
    )
    canonical = json.dumps(spec.to_dict(), sort_keys=True, separators=(",", ":"))
    assert spec.config_id == "cfg-" + hashlib.sha256(canonical.encode()).hexdigest()[:12]
    assert [s.model for s in spec.proposers] == ["a", "b"]  # slots sorted


def test_spec_json_round_trip_and_unknown_keys():
    spec = ConfigSpec(
        method="self_moa_seq",
        window=4,
        repeats=2,
        proposers=tuple(ProposerSlot(model="m", sample_index=i, temperature=0.7) for i in range(6)),
        aggregator=AggregatorSpec(kind="llm", model="agg", temperature=0.7),
    )
    assert ConfigSpec.from_json(spec.to_json()) == spec
    bad = json.loads(spec.to_json()) | {"windows": 3}
    with pytest.raises(ConfigError, match="windows"):
        ConfigSpec.from_dict(bad)
    with pytest.raises(ConfigError, match="repeats < window"):
        ConfigSpec(method="self_moa_seq", window=3, repeats=3, proposers=spec.proposers)


def test_full_space_is_enumerated_when_small():
    df = pool({"a": 4, "b": 4, "c": 4})
    assert count_config_space({t: range(4) for t in "abc"}, 6) == 924
    cfgs = generate_configs(df, n_proposers=6, max_configs=1000)
    assert len(cfgs) == 924 == len({c.config_id for c in cfgs})
    # No type fills more slots than it has samples, and samples within a type are distinct.
    for c in cfgs:
        per = Counter(c.types)
        assert max(per.values()) <= 4
        assert len(set(c.proposers)) == 6


def test_sampling_is_seeded_distinct_and_covers_every_composition():
    df = pool({"a": 4, "b": 4, "c": 4})
    one = generate_configs(df, max_configs=300, seed=7)
    two = generate_configs(df, max_configs=300, seed=7)
    other = generate_configs(df, max_configs=300, seed=8)
    assert [c.config_id for c in one] == [c.config_id for c in two]
    assert {c.config_id for c in one} != {c.config_id for c in other}
    assert len(one) == 300 == len({c.config_id for c in one})
    comps = {tuple(sorted(Counter(c.types).items())) for c in one}
    assert len(comps) == 19  # multisets of 6 over 3 types with every count <= 4


def test_single_type_configurations_are_kept_when_sampling():
    df = pool({"a": 10, "b": 2, "c": 2})
    cfgs = generate_configs(df, n_proposers=6, max_configs=20, seed=0)
    assert len(cfgs) == 20
    assert any(c.method == "self_moa" and set(c.types) == {"a"} for c in cfgs)


def test_too_few_samples_is_an_error_unless_with_replacement():
    df = pool({"a": 2})
    with pytest.raises(ConfigError, match="with_replacement=True") as info:
        generate_configs(df, n_proposers=6)
    assert "--" not in str(info.value)  # a library error names arguments, not CLI flags
    cfgs = generate_configs(df, n_proposers=3, with_replacement=True)
    assert len(cfgs) == count_config_space({"a": range(2)}, 3, with_replacement=True) == 4


def test_shipped_datasets_yield_at_least_200_configurations(shipped_outputs):
    rows = add_proposer_column(shipped_outputs)
    for ds, g in rows.groupby("dataset"):
        cfgs = generate_configs(g)
        assert len(cfgs) >= 200, ds
    crux = rows[rows["dataset"].str.startswith("cruxeval")]
    assert len(generate_configs(crux)) == 210  # C(10, 6) sample subsets of one model


def test_names_use_one_letter_per_slot():
    assert type_letters(["qwen2", "deepseek", "qwen2-math"]) == {
        "deepseek": "d",
        "qwen2": "a",
        "qwen2-math": "b",
    }
    spec = ConfigSpec(
        method="mixed_moa",
        proposers=(
            ProposerSlot(model="deepseek", sample_index=0),
            ProposerSlot(model="qwen2", sample_index=0),
            ProposerSlot(model="qwen2", sample_index=1),
        ),
    )
    f = configs_frame([spec], letters={"deepseek": "d", "qwen2": "i"})
    assert f.loc[0, "name"] == "dii"
    assert json.loads(f.loc[0, "proposers"]) == ["deepseek", "qwen2", "qwen2"]
    assert json.loads(f.loc[0, "samples"]) == [0, 0, 1]
