"""Device choice shared by the embedders and the local model backends."""

from __future__ import annotations

from ._optional import require
from .errors import ConfigError

__all__ = ["resolve_device"]


def resolve_device(
    device: str = "auto", *, extra: str = "embed", purpose: str = "embeddings"
) -> str:
    """Pick ``cuda``, then ``mps``, then ``cpu`` for ``"auto"``; check any other value.

    Parameters
    ----------
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``.
    extra, purpose
        The qdanalysis extra that installs torch and what it is needed for (for the message
        when torch is missing).

    Raises
    ------
    ConfigError
        If ``device`` is not a device name or names an unavailable accelerator.
    MissingDependencyError
        If torch is not installed.
    """
    torch = require("torch", extra=extra, purpose=purpose)
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return "mps"
        return "cpu"
    base = device.split(":")[0]
    if base not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"device: expected 'auto', 'cpu', 'cuda[:N]' or 'mps'; got {device!r}.")
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device: expected an available device; got {device!r} but CUDA is "
            "not available. Pass device='auto' or 'cpu'."
        )
    return device
