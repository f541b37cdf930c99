"""Win rate and length-controlled (LC) win rate of judge-scored outputs against a baseline.

AlpacaEval 2.0 reports a model by its win rate against a baseline's outputs and by its
length-controlled win rate: a GLM on the stored judge preferences that predicts the win rate had
both outputs been equally long. Both numbers here come from the ``alpaca-eval`` package's own code
(:func:`alpaca_eval.metrics.winrate.get_winrate` and
:func:`alpaca_eval.metrics.glm_winrate.get_length_controlled_winrate`), never a re-implementation,
and run fully offline:

- the GLM's one remote input, ``df_gamed.csv`` (each instruction's difficulty and the annotations
  of the two length-gamed baselines it regularises towards; the package fetches it from the
  ``tatsu-lab/alpaca_eval`` dataset on the Hugging Face hub), is read from ``reference_dir`` or
  from the local Hugging Face cache with ``local_files_only=True``; nothing is downloaded;
- the fitted weights are not saved (the package would write them beside its own source).

Inputs are rows of the outputs table: one output per (model, question) with the judge's
preference (``preference`` in [1, 2], or ``correct`` = preference − 1 in [0, 1]) and the text whose
length the GLM controls for, plus the baseline's outputs keyed by ``question_id``. Alignment is
checked first: the GLM indexes instruction difficulty by position in the benchmark, and
misaligned outputs give a silent NaN LC win rate (tatsu-lab/alpaca_eval issue #453).

Neighbours: :mod:`qdanalysis.analysis.methods` (the single-model table gains these columns).
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import types
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .._optional import require
from ..errors import DataError

__all__ = [
    "ALPACA_EVAL_INSTRUCTIONS",
    "GLM_REFERENCE_FILE",
    "WinRate",
    "glm_reference_path",
    "judge_annotations",
    "lc_win_rate",
    "read_baseline",
    "win_rate_table",
]

#: Number of instructions of AlpacaEval (the GLM's instruction difficulty has one per position).
ALPACA_EVAL_INSTRUCTIONS = 805
#: The file of the ``tatsu-lab/alpaca_eval`` hub dataset that the LC GLM reads.
GLM_REFERENCE_FILE = "df_gamed.csv"
_HUB_REPO = "tatsu-lab/alpaca_eval"
_ANNOTATOR = "weighted_alpaca_eval_gpt4_turbo"


@dataclass(frozen=True)
class WinRate:
    """Win rate and LC win rate of one generator against the baseline, in percent.

    Attributes
    ----------
    win_rate, win_rate_se
        Mean judge preference for the generator (ties count one half) and its standard error.
    lc_win_rate, lc_win_rate_se
        The GLM's length-controlled win rate and the package's standard error of it; NaN when
        not computed (``length_controlled=False``).
    n
        Number of instructions.
    glm
        Name of the package's GLM (``"length_controlled_v1"`` is the leaderboard's), or ``""``.
    """

    win_rate: float
    win_rate_se: float
    lc_win_rate: float
    lc_win_rate_se: float
    n: int
    glm: str

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (one row of :func:`win_rate_table`)."""
        return asdict(self)


def _question_index(question_ids: pd.Series, where: str) -> pd.Series:
    """Position of each question in the benchmark: the integer after the last ``/``."""
    tail = question_ids.astype(str).str.rsplit("/", n=1).str[-1]
    pos = pd.to_numeric(tail, errors="coerce")
    bad = question_ids[pos.isna()]
    if len(bad):
        raise DataError(
            f"{where}: expected question_id ending in the instruction's position, e.g. "
            f"'alpaca_eval/0'; got {bad.iloc[0]!r}. The LC GLM indexes instruction difficulty "
            "by position in AlpacaEval; keep the benchmark's order in question_id."
        )
    return pos.astype(np.int64)


def _preferences(rows: pd.DataFrame, where: str) -> pd.Series:
    """The package's preference scale (1 = baseline wins, 2 = generator wins, 0 = tie)."""
    if "preference" in rows.columns and rows["preference"].notna().all():
        return rows["preference"].astype(float)
    if "correct" not in rows.columns:
        raise DataError(f"{where}: expected a 'preference' or 'correct' column; got none.")
    score = rows["correct"].astype(float)
    if not score.between(0.0, 1.0).all():
        raise DataError(
            f"{where}: expected correct in [0, 1] (the judge's preference − 1); got values "
            f"from {score.min()!r} to {score.max()!r}."
        )
    return score + 1.0


def _check_aligned(pos: pd.Series, n_instructions: int, where: str) -> None:
    """Exactly one output per instruction 0..n-1 (a misaligned set gives a NaN LC)."""
    dup = pos[pos.duplicated()]
    missing = sorted(set(range(n_instructions)) - set(pos))
    extra = sorted(set(pos) - set(range(n_instructions)))
    if len(dup) or missing or extra:
        raise DataError(
            f"{where}: expected exactly one output for each of the {n_instructions} "
            f"instructions; got {len(pos)} outputs ({len(dup)} duplicated, e.g. "
            f"{sorted(set(dup))[:3]}; {len(missing)} missing, e.g. {missing[:3]}; "
            f"{len(extra)} outside 0..{n_instructions - 1}, e.g. {extra[:3]}). Evaluate on the "
            "full instruction set: the GLM's instruction difficulty is per position, and a "
            "partial set gives a NaN LC win rate (alpaca_eval issue #453)."
        )


def judge_annotations(
    outputs: pd.DataFrame,
    baseline: pd.DataFrame,
    *,
    n_instructions: int = ALPACA_EVAL_INSTRUCTIONS,
    baseline_name: str = "baseline",
) -> pd.DataFrame:
    """The package's annotation frame for one generator, checked for exact alignment.

    Parameters
    ----------
    outputs
        One generator's outputs: ``question_id``, ``output`` and ``preference`` (1–2) or
        ``correct`` (preference − 1); ``model`` names the generator when present.
    baseline
        The baseline's outputs: ``question_id`` and ``output`` (and ``model``, its name).
    n_instructions
        Size of the instruction set every generator must cover once.
    baseline_name
        Name of the baseline when ``baseline`` has no ``model`` column.

    Returns
    -------
    pandas.DataFrame
        Indexed by instruction position: ``instruction, output_1`` (baseline), ``output_2``,
        ``generator_1, generator_2, annotator, preference``.

    Raises
    ------
    DataError
        If a question is missing, duplicated, out of range, or has no baseline output.
    """
    pos = _question_index(outputs["question_id"], "judge_annotations(outputs)")
    _check_aligned(pos, n_instructions, "judge_annotations(outputs)")
    base = baseline.drop_duplicates("question_id").set_index("question_id")
    lacking = outputs.loc[~outputs["question_id"].isin(base.index), "question_id"]
    if len(lacking):
        raise DataError(
            f"judge_annotations(baseline): expected a baseline output for every question; "
            f"got none for {len(lacking)}, e.g. {lacking.iloc[0]!r}. Pass the outputs the "
            "judge compared against (same question_id)."
        )
    b = base.loc[outputs["question_id"]]
    generator = str(outputs["model"].iloc[0]) if "model" in outputs.columns else "model"
    frame = pd.DataFrame(
        {
            "instruction": (outputs["question"] if "question" in outputs.columns else pos)
            .astype(str)
            .to_numpy(),
            "output_1": b["output"].astype(str).to_numpy(),
            "output_2": outputs["output"].astype(str).to_numpy(),
            "generator_1": str(b["model"].iloc[0]) if "model" in b.columns else baseline_name,
            "generator_2": generator,
            "annotator": _ANNOTATOR,
            "preference": _preferences(outputs, "judge_annotations(outputs)").to_numpy(),
        },
        index=pd.Index(pos.to_numpy(), name=None),
    )
    return frame.sort_index()


def read_baseline(path: str | Path) -> pd.DataFrame:
    """Read the baseline's outputs (JSONL, JSONL.gz, CSV or Parquet): ``question_id, output``.

    Raises
    ------
    DataError
        If the file is missing, of another kind, or lacks those columns.
    """
    p = Path(path)
    name = p.name.lower()
    if not p.is_file():
        raise DataError(f"read_baseline(path): expected a file; got {str(p)!r}, which is not one.")
    if name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        df = pd.read_json(p, lines=True, dtype=False)
    elif name.endswith((".csv", ".csv.gz")):
        df = pd.read_csv(p, dtype={"question_id": str})
    elif name.endswith((".parquet", ".pq")):
        df = pd.read_parquet(p)
    else:
        raise DataError(
            f"read_baseline(path): expected a .jsonl, .jsonl.gz, .csv or .parquet file; got "
            f"{p.name!r}."
        )
    missing = [c for c in ("question_id", "output") if c not in df.columns]
    if missing:
        raise DataError(
            f"read_baseline(path): expected columns question_id and output; {p.name} lacks "
            f"{missing}. Pass the baseline outputs the judge compared against."
        )
    df["question_id"] = df["question_id"].astype(str)
    return df


def glm_reference_path(reference_dir: str | Path | None = None) -> Path:
    """Local path of the GLM's ``df_gamed.csv``, from ``reference_dir`` or the hub cache.

    Nothing is downloaded: the Hugging Face cache is only read (``local_files_only=True``).

    Raises
    ------
    DataError
        If the file is in neither place, with the command that fetches it once.
    """
    if reference_dir is not None:
        path = Path(reference_dir) / GLM_REFERENCE_FILE
        if path.is_file():
            return path
    hub = require("huggingface_hub", extra="judge", purpose="the LC win rate's GLM input")
    try:
        return Path(
            hub.hf_hub_download(
                repo_id=_HUB_REPO,
                filename=GLM_REFERENCE_FILE,
                repo_type="dataset",
                local_files_only=True,
            )
        )
    except Exception as exc:  # the hub raises several types for a cache miss
        where = f"{Path(reference_dir)} nor " if reference_dir else ""
        raise DataError(
            f"lc_win_rate(reference_dir): expected the GLM input {GLM_REFERENCE_FILE!r} (each "
            f"instruction's difficulty and the gamed baselines' annotations); found it neither in "
            f"{where}the local Hugging Face cache ({type(exc).__name__}). Fetch it once "
            f"where a network is allowed: `hf download {_HUB_REPO} {GLM_REFERENCE_FILE} "
            "--repo-type dataset --local-dir DIR`, then pass reference_dir=DIR."
        ) from exc


def _alpaca_eval_metrics() -> tuple[types.ModuleType, types.ModuleType]:
    """``alpaca_eval.metrics.winrate`` and ``.glm_winrate``, importable without pkg_resources.

    alpaca-eval 0.6.6 imports ``pkg_resources`` (removed from recent setuptools) for two version
    helpers the metrics never call; a minimal in-memory stand-in lets it import.
    """
    if "pkg_resources" not in sys.modules and importlib.util.find_spec("pkg_resources") is None:
        from importlib.metadata import version

        from packaging.version import parse

        shim = types.ModuleType("pkg_resources")
        shim.parse_version = parse  # type: ignore[attr-defined]
        shim.get_distribution = lambda name: types.SimpleNamespace(version=version(name))  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        winrate = require("alpaca_eval.metrics.winrate", extra="judge", purpose="win rates")
        glm = require("alpaca_eval.metrics.glm_winrate", extra="judge", purpose="LC win rates")
    return winrate, glm


@contextlib.contextmanager
def _offline_glm(glm: types.ModuleType, reference: Path) -> Iterator[None]:
    """Run the package's GLM with its hub download answered by ``reference``.

    The sklearn config the package sets globally (metadata routing) is restored afterwards, and
    its FutureWarnings about sklearn's LogisticRegression arguments are silenced.
    """
    import sklearn

    def local_download(*, filename: str, **_: Any) -> str:
        if filename != GLM_REFERENCE_FILE:
            raise DataError(
                f"lc_win_rate: expected the GLM to read only {GLM_REFERENCE_FILE!r}; it asked "
                f"for {filename!r}. Check the alpaca-eval version (pinned in the judge extra)."
            )
        return str(reference)

    saved: Callable[..., Any] = glm.hf_hub_download  # type: ignore[attr-defined]
    glm.hf_hub_download = local_download  # type: ignore[attr-defined]
    try:
        with sklearn.config_context(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        glm.hf_hub_download = saved  # type: ignore[attr-defined]


def lc_win_rate(
    outputs: pd.DataFrame,
    baseline: pd.DataFrame,
    *,
    length_controlled: bool = True,
    reference_dir: str | Path | None = None,
    glm_name: str = "length_controlled_v1",
    n_instructions: int = ALPACA_EVAL_INSTRUCTIONS,
) -> WinRate:
    """Win rate and LC win rate of one generator against ``baseline``, via alpaca-eval.

    Parameters
    ----------
    outputs, baseline, n_instructions
        See :func:`judge_annotations`.
    length_controlled
        Fit the LC GLM (needs :data:`GLM_REFERENCE_FILE`, see :func:`glm_reference_path`);
        ``False`` gives the win rate only.
    reference_dir
        Folder holding :data:`GLM_REFERENCE_FILE`; default: the local Hugging Face cache.
    glm_name
        The package's GLM; ``"length_controlled_v1"`` is the AlpacaEval 2.0 leaderboard's.

    Returns
    -------
    WinRate

    Raises
    ------
    DataError
        If the outputs are not aligned with the instruction set, or the GLM input is missing
        (both raised before any fit).
    """
    annotations = judge_annotations(outputs, baseline, n_instructions=n_instructions)
    reference = glm_reference_path(reference_dir) if length_controlled else None
    winrate, glm = _alpaca_eval_metrics()
    plain = winrate.get_winrate(annotations)
    lc, lc_se = float("nan"), float("nan")
    if reference is not None:
        with _offline_glm(glm, reference):
            res = glm.get_length_controlled_winrate(
                annotations,
                glm_name=glm_name,
                save_weights_dir=None,
                is_add_glm_preference_inplace=False,
                is_warn_extreme_changes=False,
            )
        lc, lc_se = float(res["length_controlled_winrate"]), float(res["lc_standard_error"])
    return WinRate(
        win_rate=float(plain["win_rate"]),
        win_rate_se=float(plain["standard_error"]),
        lc_win_rate=lc,
        lc_win_rate_se=lc_se,
        n=int(plain["n_total"]),
        glm=glm_name if reference is not None else "",
    )


def win_rate_table(
    outputs: pd.DataFrame,
    baseline: pd.DataFrame,
    *,
    by: Sequence[str] = ("model",),
    length_controlled: bool = True,
    reference_dir: str | Path | None = None,
    n_instructions: int = ALPACA_EVAL_INSTRUCTIONS,
) -> pd.DataFrame:
    """:func:`lc_win_rate` of every generator (group of ``by``) in ``outputs``.

    Returns
    -------
    pandas.DataFrame
        ``by`` columns, then ``win_rate, win_rate_se, lc_win_rate, lc_win_rate_se, n, glm``
        (percent), best LC (or win rate) first.
    """
    keys = list(by)
    missing = [c for c in keys if c not in outputs.columns]
    if missing:
        raise DataError(
            f"win_rate_table(by): expected columns of outputs; got {missing!r} not in "
            f"{list(outputs.columns)}."
        )
    rows = []
    for key, g in outputs.groupby(keys, sort=True):
        res = lc_win_rate(
            g,
            baseline,
            length_controlled=length_controlled,
            reference_dir=reference_dir,
            n_instructions=n_instructions,
        )
        rows.append({**dict(zip(keys, key, strict=True)), **res.as_dict()})
    sort = "lc_win_rate" if length_controlled else "win_rate"
    return pd.DataFrame(rows).sort_values(sort, ascending=False).reset_index(drop=True)
