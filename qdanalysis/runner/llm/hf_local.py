"""In-process chat backend over a transformers causal LM (safetensors folder, hub id, or GGUF).

Generation runs off the event loop (:func:`asyncio.to_thread`) behind a lock, one request at a
time; sampling is seeded per request so sample k is reproducible and distinct from sample j.

Neighbours: :mod:`qdanalysis.testing.local_models` writes the test models;
:mod:`qdanalysis.runner.llm.server` serves
this backend over HTTP; :class:`~qdanalysis.runner.llm.managed.ManagedClient` wraps it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
import time
from pathlib import Path
from typing import Any

from ..._device import resolve_device
from ..._hashing import content_hash
from ..._optional import require
from ...errors import ConfigError, ProviderError
from .base import BatchedBackend, ChatRequest, ChatResponse

__all__ = ["HFLocalClient", "pick_device", "sampling_seed"]

logger = logging.getLogger(__name__)


def sampling_seed(request: ChatRequest) -> int:
    """The RNG seed of a request: ``(seed or 0) + sample_index``.

    Examples
    --------
    >>> from qdanalysis.runner.llm import ChatRequest
    >>> msgs = ({"role": "user", "content": "hi"},)
    >>> sampling_seed(ChatRequest(model="m", messages=msgs, seed=10, sample_index=2))
    12
    """
    return (request.seed or 0) + request.sample_index


def pick_device(device: str = "auto") -> str:
    """Resolve ``"auto"`` to ``"cuda"``, ``"mps"`` or ``"cpu"``; check any other device name."""
    return resolve_device(device, extra="llm", purpose="local generation")


def _fingerprint(path: Path, gguf_file: str | None) -> str:
    """Short hash of a model folder's config and the first MiB of each weight file."""
    parts: list[str] = []
    files = [path / gguf_file] if gguf_file else sorted(path.glob("*.safetensors"))
    files += [path / "config.json"] if (path / "config.json").is_file() else []
    for f in files:
        with open(f, "rb") as fh:
            parts.append(f.name + ":" + hashlib.sha256(fh.read(1 << 20)).hexdigest())
    return content_hash(parts, length=12)


class HFLocalClient(BatchedBackend):
    """A :class:`~qdanalysis.runner.llm.base.ChatClient` generating with a local transformers model.

    Parameters
    ----------
    model_path_or_id
        A model folder, or a hub id already in the local cache (loaded offline).
    device
        ``"auto"`` (cuda, mps, then cpu), or a torch device name.
    dtype
        Torch dtype name (``"float32"``, ``"bfloat16"``, ``"float16"``) or ``"auto"``
        (the checkpoint's). Default float32 on CPU, ``"auto"`` elsewhere.
    gguf_file
        File name of a GGUF checkpoint inside ``model_path_or_id`` (dequantised on load; needs
        ``gguf`` and ``accelerate``).
    model_name
        Name reported in responses when a request names none; default the folder name.

    Notes
    -----
    The endpoint is ``hf-local://<name>@<fingerprint>``, the fingerprint hashing the config and
    the first MiB of the weights, so caches survive moving the folder but not changing weights.
    ``request.model`` is not checked: the loaded model answers every request. With ``n`` samples
    in one call (:meth:`complete_n`) the RNG is seeded once with the first sample's seed, so
    those samples are reproducible for the same ``n`` but differ from samples drawn one by one.
    """

    supports_n = True

    def __init__(
        self,
        model_path_or_id: str | Path,
        *,
        device: str = "auto",
        dtype: str | None = None,
        gguf_file: str | None = None,
        model_name: str | None = None,
    ) -> None:
        self._torch = require("torch", extra="llm", purpose="local generation")
        transformers = require("transformers", extra="llm", purpose="local generation")
        if gguf_file is not None:
            require("gguf", extra="llm", purpose="reading GGUF files")
            require("accelerate", extra="llm", purpose="loading GGUF files")
        self.device = pick_device(device)
        dtype = dtype or ("float32" if self.device == "cpu" else "auto")
        if dtype != "auto" and not isinstance(getattr(self._torch, dtype, None), self._torch.dtype):
            raise ConfigError(
                f"HFLocalClient dtype: expected 'auto' or a torch dtype name; got {dtype!r}. "
                "Use e.g. 'float32' or 'bfloat16'."
            )
        self.dtype = dtype
        source = str(model_path_or_id)
        path = Path(source).expanduser()
        is_dir = path.is_dir()
        kwargs: dict[str, Any] = {}
        if gguf_file is not None:
            kwargs["gguf_file"] = gguf_file
        if not is_dir:
            kwargs["local_files_only"] = True
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(
                str(path) if is_dir else source, **kwargs
            )
            self.model = transformers.AutoModelForCausalLM.from_pretrained(
                str(path) if is_dir else source,
                dtype=(dtype if dtype == "auto" else getattr(self._torch, dtype)),
                **kwargs,
            )
        except OSError as exc:
            raise ConfigError(
                f"HFLocalClient: expected a model folder or a locally cached hub id; got "
                f"{source!r} ({exc}). Pass a folder with config.json and weights, or download "
                "the model first."
            ) from exc
        self.model.to(self.device)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if not getattr(self.tokenizer, "chat_template", None):
            raise ConfigError(
                f"HFLocalClient: expected a tokenizer with a chat template; got none in "
                f"{source!r}. Use an instruct model or set tokenizer.chat_template."
            )
        self.model_name = model_name or (path.name if is_dir else source)
        fp = _fingerprint(path, gguf_file) if is_dir else content_hash(source, length=12)
        self.endpoint = f"hf-local://{self.model_name}@{fp}"
        eos = self.model.generation_config.eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        if self.tokenizer.eos_token_id is not None:
            eos_ids.append(self.tokenizer.eos_token_id)
        self._eos_ids = {int(e) for e in eos_ids if e is not None}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"HFLocalClient({self.endpoint!r}, device={self.device!r}, dtype={self.dtype!r})"

    async def _complete_n(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        # One ``generate`` call (``num_return_sequences``), off the event loop.
        return await asyncio.to_thread(self._generate, request, n)

    def warm_up(self) -> None:
        """Run one tiny generation so that the first timed call is not a cold one."""
        req = ChatRequest(
            model=self.model_name, messages=({"role": "user", "content": "hi"},), max_tokens=2
        )
        self._generate(req, 1)

    def _generate(self, request: ChatRequest, n: int) -> list[ChatResponse]:
        torch = self._torch
        logger.debug("generate %s n=%d messages=%r", self.model_name, n, request.messages)
        try:
            enc = self.tokenizer.apply_chat_template(
                [dict(m) for m in request.messages],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
            )
        except Exception as exc:  # jinja errors, unsupported roles
            raise ProviderError(
                f"{self.endpoint}: expected messages the chat template accepts; got "
                f"roles {[m['role'] for m in request.messages]!r} ({exc}).",
                kind="fatal",
            ) from exc
        input_ids = enc["input_ids"].to(self.device)
        attention_mask = enc["attention_mask"].to(self.device)
        prompt_len = int(input_ids.shape[1])
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and prompt_len + request.max_tokens > limit:
            raise ProviderError(
                f"{self.endpoint}: expected prompt + max_tokens within the context of {limit} "
                f"tokens; got {prompt_len} + {request.max_tokens}. Lower max_tokens or shorten "
                "the prompt.",
                kind="fatal",
            )
        gen: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "num_return_sequences": n,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if request.temperature > 0:
            gen.update(do_sample=True, temperature=request.temperature, top_p=request.top_p)
        else:
            gen.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if request.stop:
            gen.update(stop_strings=list(request.stop), tokenizer=self.tokenizer)
        start = time.perf_counter()
        with self._lock:
            torch.manual_seed(sampling_seed(request))
            try:
                with torch.inference_mode():
                    out = self.model.generate(
                        input_ids=input_ids, attention_mask=attention_mask, **gen
                    )
            except (RuntimeError, ValueError) as exc:
                raise ProviderError(
                    f"{self.endpoint}: generation failed for a {prompt_len}-token prompt: {exc}",
                    kind="fatal",
                ) from exc
        latency = time.perf_counter() - start
        responses = []
        for row in out[:, prompt_len:].tolist():
            n_tokens, finish = len(row), "length"
            for i, tok in enumerate(row):
                if tok in self._eos_ids:
                    n_tokens, finish = i + 1, "stop"
                    break
            text = self.tokenizer.decode(row[:n_tokens], skip_special_tokens=True)
            for s in request.stop:
                cut = text.find(s)
                if cut >= 0:
                    text, finish = text[:cut], "stop"
            responses.append(
                ChatResponse(
                    text=text,
                    model=request.model,
                    finish_reason=finish,
                    prompt_tokens=prompt_len,
                    completion_tokens=n_tokens,
                    latency_s=latency,
                    extra={"n_batch": n} if n > 1 else {},
                )
            )
        return responses
