"""Design of configurations: which candidates to aggregate, chosen from quality and diversity.

Quality and diversity of every candidate configuration are known from the proposer outputs
alone (the pair engine, :mod:`qdanalysis.analysis.pairs`, via the QD table); only performance
needs the aggregator, and aggregator calls are what a study costs. :func:`choose_configs`
picks ``n`` of the candidates so the regression ``performance ~ z(quality) + z(diversity)``
estimates what is asked of it best:

- ``"random"``: a uniform sample without replacement (today's choice);
- ``"decorrelated"``: minimise |corr(quality, diversity)| in the chosen set, so α and β are
  told apart (their sampling correlation is −corr(q, d));
- ``"min_var"``: minimise the variance of α − β, c'(X'X)⁻¹c with c = (0, 1, −1) and X = (1, z(q),
  z(d)) (a c-optimal design);
- ``"d_optimal"``: maximise det(X'X), the joint precision of α and β.

z-scores are taken over the candidates, so the criteria compare designs in one unit (a
candidate-set standard deviation); a fit on the chosen set z-scores within it, and its
standardised α, β then shift with the design (the extreme designs widen the spread): compare
designs in raw or candidate units. ``min_var`` and ``d_optimal`` favour extreme configurations
and rely on the linear model holding over the whole range; ``decorrelated`` keeps the spread
of a random sample. The three optimal designs start from the random sample of the same seed and
improve it by the best single exchange (one chosen configuration for one left out) until none
improves the criterion (Fedorov's exchange algorithm).

Neighbours: :mod:`qdanalysis.analysis.qdtable` (the candidate table),
:mod:`qdanalysis.configs` (:func:`~qdanalysis.configs.generate_configs` makes the candidates),
:mod:`qdanalysis.analysis.regression` (the fit and
:func:`~qdanalysis.analysis.regression.standardize`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ..configs import ConfigSpec
from ..errors import ConfigError, DataError
from .regression import standardize

__all__ = ["DESIGNS", "choose_configs", "chosen_specs", "design_criteria"]

DESIGNS = ("random", "decorrelated", "min_var", "d_optimal")
_COLUMNS = ("quality", "diversity")
_MAX_EXCHANGES = 10_000


def _candidate_z(candidates: pd.DataFrame) -> NDArray[np.float64]:
    """(n, 2) z-scores of quality and diversity over the candidate set, checked."""
    if "dataset" in candidates.columns and candidates["dataset"].nunique() > 1:
        raise DataError(
            "choose_configs(candidates): expected the candidates of one dataset; got "
            f"{sorted(candidates['dataset'].unique())!r}. Call it once per dataset."
        )
    z = standardize(candidates, _COLUMNS)
    out: NDArray[np.float64] = z[[c + "_z" for c in _COLUMNS]].to_numpy(dtype=np.float64)
    return out


def _criteria(s: dict[str, NDArray[np.float64]], n: int) -> dict[str, NDArray[np.float64]]:
    """Criteria from the chosen set's sums (arrays broadcast over candidate exchanges)."""
    cqq = s["qq"] - s["q"] ** 2 / n
    cdd = s["dd"] - s["d"] ** 2 / n
    cqd = s["qd"] - s["q"] * s["d"] / n
    det = cqq * cdd - cqd**2
    with np.errstate(divide="ignore", invalid="ignore"):
        # With an intercept the slopes' covariance is the inverse of the centred cross-products.
        var = np.where(det > 0, (cqq + cdd + 2 * cqd) / det, np.inf)
        corr = np.where(cqq * cdd > 0, cqd / np.sqrt(cqq * cdd), np.nan)
    return {
        "decorrelated": np.where(np.isnan(corr), np.inf, np.abs(corr)),
        "min_var": var,
        "d_optimal": np.where(det > 0, -np.log(np.where(det > 0, det, 1.0)), np.inf),
        "corr": corr,
        "var": var,
        "det": det,
    }


def _sums(z: NDArray[np.float64]) -> dict[str, NDArray[np.float64]]:
    q, d = z[..., 0], z[..., 1]
    return {"q": q, "d": d, "qq": q * q, "dd": d * d, "qd": q * d}


def _exchange(z: NDArray[np.float64], chosen: NDArray[np.bool_], design: str) -> None:
    """Best single exchanges, in place, until none lowers the criterion."""
    n = int(chosen.sum())
    per = _sums(z)
    for _ in range(_MAX_EXCHANGES):
        inside, outside = np.flatnonzero(chosen), np.flatnonzero(~chosen)
        if not len(outside):
            return
        total = {k: v[inside].sum() for k, v in per.items()}
        now = _criteria({k: np.asarray(v) for k, v in total.items()}, n)[design]
        # trial[i, j]: drop inside[i], add outside[j].
        trial = {k: total[k] - v[inside][:, None] + v[outside][None, :] for k, v in per.items()}
        crit = _criteria(trial, n)[design]
        i, j = np.unravel_index(np.argmin(crit), crit.shape)
        if not crit[i, j] < now - 1e-12:
            return
        chosen[inside[i]], chosen[outside[j]] = False, True


def choose_configs(
    candidates: pd.DataFrame, n: int, *, design: str = "random", seed: int = 0
) -> pd.DataFrame:
    """Choose ``n`` candidate configurations to aggregate, by ``design``.

    Parameters
    ----------
    candidates
        One dataset's candidate QD table: one row per configuration with ``quality`` and
        ``diversity`` (from :func:`~qdanalysis.analysis.qdtable.build_qd_table`; performance is
        not needed and not read).
    n
        How many to choose.
    design
        One of :data:`DESIGNS` (see the module docstring).
    seed
        Seed of the random sample (also the start of the exchange designs).

    Returns
    -------
    pandas.DataFrame
        The chosen rows of ``candidates``, in their original order (index kept).

    Raises
    ------
    ConfigError
        If ``design`` is unknown or ``n`` is not in 3..len(candidates).
    DataError
        If quality or diversity is missing, not finite, or constant; or several datasets.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> q = rng.normal(size=200)
    >>> cands = pd.DataFrame({"quality": q, "diversity": q + rng.normal(0, 0.5, 200)})
    >>> picked = choose_configs(cands, 40, design="decorrelated")
    >>> bool(abs(design_criteria(picked)["corr"]) < 0.01)
    True
    """
    if design not in DESIGNS:
        raise ConfigError(
            f"choose_configs(design): expected one of {list(DESIGNS)}; got {design!r}."
        )
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or not 3 <= n <= len(candidates):
        raise ConfigError(
            f"choose_configs(n): expected an integer from 3 to the {len(candidates)} candidates; "
            f"got {n!r}. Generate more candidates or choose fewer."
        )
    z = _candidate_z(candidates)
    rng = np.random.default_rng(seed)
    chosen = np.zeros(len(candidates), dtype=bool)
    chosen[rng.choice(len(candidates), size=int(n), replace=False)] = True
    if design != "random":
        _exchange(z, chosen, design)
    return candidates.iloc[np.flatnonzero(chosen)]


def design_criteria(
    chosen: pd.DataFrame, candidates: pd.DataFrame | None = None
) -> dict[str, float]:
    """The design's criteria for ``chosen``, z-scored over ``candidates`` (default: ``chosen``).

    Returns
    -------
    dict
        ``n``; ``corr`` (corr(quality, diversity) in the chosen set); ``var_alpha_minus_beta``
        (c'(X'X)⁻¹c, the variance of α − β per unit residual variance, in candidate-SD units);
        ``log_det`` (log det of the centred X'X).
    """
    ref = candidates if candidates is not None else chosen
    at = ref.index.get_indexer(chosen.index)
    if (at < 0).any() or not chosen.index.is_unique:
        raise DataError(
            "design_criteria(chosen): expected distinct rows of candidates (their index); got "
            f"{int((at < 0).sum())} rows not among them. Pass the frame choose_configs returned."
        )
    z = _candidate_z(ref)[at]
    total = {k: np.asarray(v.sum()) for k, v in _sums(z).items()}
    crit = _criteria(total, len(z))
    det = float(crit["det"])
    return {
        "n": float(len(z)),
        "corr": float(crit["corr"]),
        "var_alpha_minus_beta": float(crit["var"]),
        "log_det": float(np.log(det)) if det > 0 else float("-inf"),
    }


def chosen_specs(chosen: pd.DataFrame, configs: Sequence[ConfigSpec]) -> list[ConfigSpec]:
    """The configurations of ``configs`` (e.g. from :func:`~qdanalysis.configs.generate_configs`)
    that ``chosen`` (rows of :func:`choose_configs`) names by ``config_id``, in that order.

    The usual flow: ``generate_configs`` the candidates, build their QD table from the proposer
    outputs alone, ``choose_configs``, then run the aggregator on ``chosen_specs`` only.

    Raises
    ------
    DataError
        If a chosen ``config_id`` is not among ``configs``.
    """
    by_id = {c.config_id: c for c in configs}
    unknown = [i for i in chosen["config_id"] if i not in by_id]
    if unknown:
        raise DataError(
            f"chosen_specs(chosen): expected config_ids of configs; got {len(unknown)} unknown, "
            f"e.g. {unknown[0]!r}. Pass the configurations the candidate table was built from."
        )
    return [by_id[i] for i in chosen["config_id"]]
