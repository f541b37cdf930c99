"""Run-wide fixtures and settings: offline, isolated caches, real models built once."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-api",
        action="store_true",
        default=False,
        help="run tests marked api (they call a real remote endpoint; key from the environment)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    skip_api = pytest.mark.skip(reason="needs --run-api and a key in the environment")
    try:
        import torch

        has_cuda = bool(torch.cuda.is_available())
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "api" in item.keywords and not config.getoption("--run-api"):
            item.add_marker(skip_api)
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test gets its own cache directory unless it asks for a shared one."""
    d = tmp_path / "cache"
    monkeypatch.setenv("QDANALYSIS_CACHE_DIR", str(d))
    return d


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def shipped_outputs() -> pd.DataFrame:
    """The real outputs shipped in data/ (all three datasets), validated."""
    from qdanalysis.outputs import load_outputs

    return load_outputs(sorted(DATA.glob("*.jsonl.gz")))


@pytest.fixture
def outputs_small(shipped_outputs: pd.DataFrame) -> pd.DataFrame:
    """A small real subset: the first 12 questions of GSM8K (3 models x 4 prompts)."""
    g = shipped_outputs[shipped_outputs["dataset"] == "rereading/gsm8k"]
    qids = sorted(g["question_id"].unique(), key=lambda q: int(q.split("/")[1]))[:12]
    return g[g["question_id"].isin(qids)].reset_index(drop=True)


@pytest.fixture(scope="session")
def minilm():
    """The real all-MiniLM-L6-v2 embedder (offline, CPU), loaded once."""
    from qdanalysis.analysis.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(device="cpu")


@pytest.fixture(scope="session")
def shipped_cache_dir(tmp_path_factory: pytest.TempPathFactory, shipped_outputs, minilm) -> Path:
    """An embedding cache holding every shipped output, built once per run (about 1-3 minutes).

    Slow tests (CLI end to end, notebooks) point QDANALYSIS_CACHE_DIR here.
    """
    import warnings

    from qdanalysis.analysis.embeddings import EmbeddingCache, embed_texts
    from qdanalysis.errors import DataWarning

    env = os.environ.get("QDANALYSIS_TEST_SHARED_CACHE")
    d = Path(env) if env else tmp_path_factory.mktemp("shared-cache")
    cache = EmbeddingCache(d / "embeddings.sqlite")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # truncation is tested elsewhere
        embed_texts(shipped_outputs["output"].tolist(), minilm, cache=cache, progress=False)
    cache.close()
    return d
