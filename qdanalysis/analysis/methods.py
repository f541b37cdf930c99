"""Self-MoA vs Mixed-MoA: performance by method, single models, offline sequential votes and
recorded runs.

- :func:`method_table` summarises the QD table by method and aggregator (what produced each
  configuration's performance); :func:`single_model_table` gives each proposer type alone.
- :func:`sequential_vote_scores` and :func:`vote_scaling_curve`: the offline Self-MoA-Seq
  analogue (a sliding-window plurality vote, :mod:`qdanalysis.votes`) against the number of
  samples.
- :func:`load_runs` / :func:`run_method_table`: the final-answer accuracy of recorded runner
  runs, labelled by each configuration's spec.

Neighbours: :mod:`qdanalysis.analysis.qdtable` (the QD table),
:mod:`qdanalysis.analysis.aggregators` (final aggregator rows and labels),
:mod:`qdanalysis.analysis.plotting` (the scaling figure).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from ..configs import ConfigSpec
from ..errors import ConfigError, DataError
from ..votes import answer_codes, plurality_vote_scores, plurality_winners
from .aggregators import final_aggregator_rows, spec_aggregator_label

__all__ = [
    "load_runs",
    "method_table",
    "run_method_table",
    "sequential_vote_scores",
    "single_model_table",
    "vote_scaling_curve",
]


def method_table(qd_table: pd.DataFrame) -> pd.DataFrame:
    """Ensemble performance by method and aggregator (Self-MoA, Mixed-MoA, …) per dataset.

    Returns
    -------
    pandas.DataFrame
        ``dataset, method, aggregator`` (what produced the performance, the QD table's
        column), ``n_configs, performance_mean, performance_best, best_config, quality_mean,
        diversity_mean`` (performance and quality in %).
    """
    need = {
        "dataset",
        "method",
        "aggregator",
        "config_id",
        "name",
        "performance",
        "quality",
        "diversity",
    }
    if not need <= set(qd_table.columns):
        raise DataError(
            f"method_table: expected QD-table columns {sorted(need)}; got {list(qd_table.columns)}."
        )
    rows = []
    for (ds, m, agg), g in qd_table.groupby(["dataset", "method", "aggregator"], sort=True):
        best = g.loc[g["performance"].idxmax()]
        rows.append(
            {
                "dataset": ds,
                "method": m,
                "aggregator": agg,
                "n_configs": len(g),
                "performance_mean": g["performance"].mean(),
                "performance_best": best["performance"],
                "best_config": best["name"],
                "quality_mean": g["quality"].mean(),
                "diversity_mean": g["diversity"].mean(),
            }
        )
    return pd.DataFrame(rows)


def single_model_table(
    outputs: pd.DataFrame,
    *,
    proposer_key: Sequence[str] = ("model",),
    baseline: pd.DataFrame | None = None,
    length_controlled: bool = True,
    reference_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Accuracy of each proposer type alone (mean ``correct`` over its outputs), per dataset.

    With ``baseline`` (the outputs a judge compared each output against, by ``question_id``),
    judge-scored data also get AlpacaEval's win rate and length-controlled win rate, from
    :func:`qdanalysis.analysis.winrate.win_rate_table` (``length_controlled`` and
    ``reference_dir`` are passed to it).

    Returns
    -------
    pandas.DataFrame
        ``dataset, proposer, n_outputs, accuracy`` (%), best first within a dataset; with a
        baseline also ``win_rate, win_rate_se, lc_win_rate, lc_win_rate_se, n, glm`` (%).
    """
    from ..outputs import add_proposer_column, proposer_rows

    rows = add_proposer_column(proposer_rows(outputs), list(proposer_key))
    g = rows.groupby(["dataset", "proposer"], sort=True)["correct"]
    out = pd.DataFrame({"n_outputs": g.size(), "accuracy": 100 * g.mean()}).reset_index()
    if baseline is not None:
        from .winrate import win_rate_table

        wr = win_rate_table(
            rows,
            baseline,
            by=("dataset", "proposer"),
            length_controlled=length_controlled,
            reference_dir=reference_dir,
        )
        out = out.merge(wr, on=["dataset", "proposer"], how="left", validate="one_to_one")
    return out.sort_values(["dataset", "accuracy"], ascending=[True, False]).reset_index(drop=True)


def sequential_vote_scores(
    keys: ArrayLike, correct: ArrayLike, *, window: int, repeats: int
) -> NDArray[np.float64]:
    """Offline Self-MoA-Seq: a sliding-window plurality vote that carries its winner forward.

    Parameters
    ----------
    keys
        ``(m, N)`` integer answer codes of N samples per question, in sampling order (``-1``:
        no answer).
    correct
        ``(m, N)`` scores of the samples (equal keys carry equal scores).
    window, repeats
        Window size w and copies k of the current winner (1 <= k < w).

    Returns
    -------
    numpy.ndarray
        ``(m,)`` expected score of the final answer (ties split evenly at each step, as in
        :func:`~qdanalysis.votes.plurality_vote_scores`, by carrying the tied keys'
        mean score and one representative key forward).

    Notes
    -----
    Step 0 votes over samples 0..w−1; each later step votes over k copies of the current winner
    plus the next w − k unseen samples (the last window may hold fewer), the order of
    ``qdanalysis`` Self-MoA-Seq with an LLM aggregator replaced by a vote. With ``window >= N``
    it is a plain plurality vote. The carried winner is the smallest tied key (deterministic),
    its score the tied keys' mean.

    Examples
    --------
    >>> sequential_vote_scores([[1, 1, 2, 2, 2]], [[1, 1, 0, 0, 0]], window=3, repeats=2)
    array([1.])
    """
    k = np.asarray(keys, dtype=np.int64)
    c = np.asarray(correct, dtype=np.float64)
    if k.shape != c.shape or k.ndim != 2:
        raise ConfigError(
            f"sequential_vote_scores: expected keys and correct of one shape (m, N); got "
            f"{k.shape} and {c.shape}."
        )
    if not (isinstance(window, int) and isinstance(repeats, int) and 1 <= repeats < window):
        raise ConfigError(
            f"sequential_vote_scores: expected ints 1 <= repeats < window; got window={window!r}, "
            f"repeats={repeats!r}."
        )
    n = k.shape[1]
    w0 = min(window, n)
    cur_k, cur_c = _vote_winner(k[:, :w0], c[:, :w0])
    i = w0
    while i < n:
        new = slice(i, min(i + window - repeats, n))
        kk = np.concatenate([np.repeat(cur_k[:, None], repeats, axis=1), k[:, new]], axis=1)
        cc = np.concatenate([np.repeat(cur_c[:, None], repeats, axis=1), c[:, new]], axis=1)
        cur_k, cur_c = _vote_winner(kk, cc)
        i = new.stop
    if n <= window:
        return plurality_vote_scores(k, c)
    return cur_c


def _vote_winner(
    k: NDArray[np.int64], c: NDArray[np.float64]
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The smallest tied winning key of each row and the vote's expected score."""
    winners = plurality_winners(k)
    rep = np.where(winners, k, np.iinfo(np.int64).max).min(axis=1)
    rep = np.where(winners.any(axis=1), rep, -1)
    return rep, plurality_vote_scores(k, c)


def vote_scaling_curve(
    outputs: pd.DataFrame,
    *,
    dataset: str,
    sample_counts: Sequence[int] | None = None,
    windows: Sequence[tuple[int, int]] = ((3, 1), (4, 2)),
    n_orders: int = 20,
    seed: int = 0,
) -> pd.DataFrame:
    """Accuracy against the number of samples: plurality vote (Self-MoA) and windowed votes.

    For each of ``n_orders`` seeded random orders of every question's samples, the first N
    samples are aggregated by a plain plurality vote (offline Self-MoA over N samples) and by
    :func:`sequential_vote_scores` for each (window, repeats) (offline Self-MoA-Seq), and the
    single sample (N = 1) is the individual-model baseline.

    Returns
    -------
    pandas.DataFrame
        ``dataset, method`` (``"self_moa (vote)"`` or ``"self_moa_seq (w=…, k=…)"``),
        ``window, repeats, n_samples, accuracy`` (% averaged over orders), ``std_error``
        (SD over orders / √n_orders), ``n_questions``.

    Raises
    ------
    DataError
        If questions have different numbers of samples of the dataset's single model.
    """
    rows = outputs[outputs["dataset"] == dataset]
    if rows.empty:
        raise DataError(f"vote_scaling_curve: expected rows of dataset {dataset!r}; got none.")
    rows = rows.sort_values(["question_id", "model", "sample_index"])
    size = rows.groupby("question_id").size()
    if size.nunique() != 1:
        raise DataError(
            f"vote_scaling_curve: expected the same number of samples per question in "
            f"{dataset!r}; got {sorted(size.unique())}."
        )
    n = int(size.iloc[0])
    K = answer_codes(rows["answer_key"]).reshape(-1, n)
    C = rows["correct"].to_numpy(dtype=np.float64).reshape(-1, n)
    counts = list(sample_counts) if sample_counts else list(range(1, n + 1))
    rng = np.random.default_rng(seed)

    res: dict[tuple[str, int, int, int], list[float]] = {}
    for _ in range(n_orders):
        perm = np.argsort(rng.random(K.shape), axis=1)
        Kp = np.take_along_axis(K, perm, axis=1)
        Cp = np.take_along_axis(C, perm, axis=1)
        for m in counts:
            acc = float(plurality_vote_scores(Kp[:, :m], Cp[:, :m]).mean())
            res.setdefault(("self_moa (vote)", 0, 0, m), []).append(acc)
            for w, r in windows:
                if m <= w:
                    s = acc
                else:
                    s = float(
                        sequential_vote_scores(Kp[:, :m], Cp[:, :m], window=w, repeats=r).mean()
                    )
                res.setdefault((f"self_moa_seq (w={w}, k={r})", w, r, m), []).append(s)
    out = []
    for (meth, w, r, m), v in res.items():
        a = 100 * np.asarray(v)
        out.append(
            {
                "dataset": dataset,
                "method": meth,
                "window": w or None,
                "repeats": r or None,
                "n_samples": m,
                "accuracy": float(a.mean()),
                "std_error": float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else math.nan,
                "n_questions": K.shape[0],
            }
        )
    return pd.DataFrame(out)


def load_runs(
    pattern: str = "data/runs/*/outputs.jsonl", *, root: str | Path = "."
) -> pd.DataFrame:
    """Load every recorded runner run matching ``pattern`` (empty frame when there is none).

    Returns
    -------
    pandas.DataFrame
        The outputs tables concatenated, with a ``run`` column (the run's folder name).
    """
    from ..outputs import load_outputs

    base = Path(root)
    files = sorted(base.glob(pattern)) + sorted(base.glob(pattern + ".gz"))
    frames = []
    for f in files:
        df = load_outputs([f])
        df["run"] = f.parent.name
        frames.append(df)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


_RUN_METHOD_COLUMNS = [
    "dataset",
    "config_id",
    "method",
    "n_proposers",
    "window",
    "repeats",
    "models",
    "aggregator",
    "n_questions",
    "accuracy",
]


def run_method_table(run: pd.DataFrame) -> pd.DataFrame:
    """Final-answer accuracy of a recorded run by configuration, with its method and window.

    Parameters
    ----------
    run
        Rows of a runner run: aggregator rows carry ``role == "aggregator"``, ``config_id``,
        ``config`` (the ConfigSpec JSON) and ``is_final`` (or ``step``).

    Returns
    -------
    pandas.DataFrame
        ``dataset, config_id, method, n_proposers, window, repeats, models, aggregator``
        (what produced the answers:
        :func:`~qdanalysis.analysis.aggregators.spec_aggregator_label`), ``n_questions,
        accuracy`` (% of final aggregator rows correct), sorted by dataset and accuracy.
    """
    if run.empty or "role" not in run.columns or not (run["role"] == "aggregator").any():
        # No aggregator rows (e.g. a run that only built its proposer pool): nothing to score.
        return pd.DataFrame(columns=_RUN_METHOD_COLUMNS)
    final = final_aggregator_rows(run)
    meta = (
        run[run["role"] == "aggregator"]
        .drop_duplicates("config_id")
        .set_index("config_id")["config"]
    )
    rows = []
    for (ds, cid), g in final.groupby(["dataset", "config_id"], sort=True):
        text = meta[cid]
        spec = ConfigSpec.from_json(text) if isinstance(text, str) else ConfigSpec.from_dict(text)
        rows.append(
            {
                "dataset": ds,
                "config_id": cid,
                "method": spec.method,
                "n_proposers": spec.n_proposers,
                "window": spec.window,
                "repeats": spec.repeats,
                "models": ",".join(sorted(set(spec.types))),
                "aggregator": spec_aggregator_label(spec),
                "n_questions": len(g),
                "accuracy": 100 * float(g["performance"].mean()),
            }
        )
    out = pd.DataFrame(rows, columns=_RUN_METHOD_COLUMNS)
    return out.sort_values(["dataset", "accuracy"], ascending=[True, False]).reset_index(drop=True)
