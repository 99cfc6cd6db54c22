"""The personal mask and its file (safetensors, never pickle).

A mask file holds exactly these tensors:

* ``delta`` (3, 256, 256) float32: the canonical-space perturbation Pi(A * P) in RGB, [0, 1] units;
* ``budget``: the per-pixel L-inf budget fixed at enrollment: (1, 256, 256) float32 for the
  paper's box in RGB (format 1), or (3, 256, 256) for the perceptual budget's Y, Cb, Cr box on
  the selfie (format 2);
* only if the user opted in, ``identity.<surrogate>`` (D,) float32: the person's clean embedding
  per surrogate, which enables "apply only to faces that are me" in group photos;

and string metadata: format, format version, the canonical space definition, eps, surrogates,
generator, seed, preset and creation time; format 2 adds ``perceptual``, the parameters of the
perceptual budget (:class:`~faceprot.cloak.perceptual.PerceptualBudget`), which apply needs to
make each photo's own budget. It holds no face pixels.

Versions: a mask with the paper's box is written as format 1, exactly as before, so an older
faceprot still reads it; only a perceptual mask is format 2. Format-1 files apply as they always
did.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..canonical import ARCFACE_OFFSET, ARCFACE_SCALE, CANONICAL_POINTS, CANONICAL_SIZE
from ..attack import BudgetSpace
from ..errors import MaskFileError
from .perceptual import SPACE as PERCEPTUAL_SPACE
from .perceptual import PerceptualBudget

FORMAT = "faceprot-mask"
FORMAT_VERSION = 2  # the newest this faceprot reads and writes
IDENTITY_PREFIX = "identity."


def canonical_definition() -> dict:
    return {
        "size": CANONICAL_SIZE,
        "template": "insightface-arcface-112",
        "scale": ARCFACE_SCALE,
        "offset": list(ARCFACE_OFFSET),
        "points": np.round(CANONICAL_POINTS, 4).tolist(),
    }


@dataclass
class PersonalMask:
    """An identity-specific universal perturbation in canonical space.

    With the perceptual budget, ``perceptual`` holds its rule's parameters, ``budget`` is the
    selfie's (3, 256, 256) Y/Cb/Cr budget, and eps / eps_high are its flat and full-texture
    luminance budgets."""

    delta: np.ndarray  # (3, 256, 256) float32, [0, 1] units, RGB
    budget: np.ndarray  # (1, 256, 256) float32 (RGB box), or (3, 256, 256) (Y, Cb, Cr; perceptual)
    eps: float
    eps_high: float
    surrogates: list[str]
    generator: str
    seed: int
    preset: str = "medium"
    created: str = field(default_factory=lambda: datetime.datetime.now(datetime.timezone.utc)
                         .isoformat(timespec="seconds"))
    identity: dict[str, np.ndarray] | None = None  # only with the user's opt-in
    extra: dict = field(default_factory=dict)  # optimisation settings, for the record
    perceptual: dict | None = None  # PerceptualBudget.to_dict(), or None for the paper's box

    @property
    def format_version(self) -> int:
        return 1 if self.perceptual is None else 2

    def space(self) -> BudgetSpace:
        """The coordinates ``budget`` is measured in."""
        return BudgetSpace("rgb" if self.perceptual is None else PERCEPTUAL_SPACE)

    def budget_rule(self) -> PerceptualBudget | None:
        return None if self.perceptual is None else PerceptualBudget.from_dict(self.perceptual)

    def metadata(self) -> dict[str, str]:
        meta = {
            "format": FORMAT,
            "format_version": str(self.format_version),
            "faceprot_version": __version__,
            "canonical": json.dumps(canonical_definition()),
            "eps": repr(float(self.eps)),
            "eps_high": repr(float(self.eps_high)),
            "surrogates": json.dumps(list(self.surrogates)),
            "generator": self.generator,
            "seed": str(int(self.seed)),
            "preset": self.preset,
            "created": self.created,
            "settings": json.dumps(self.extra, sort_keys=True),
        }
        if self.perceptual is not None:
            meta["perceptual"] = json.dumps(self.perceptual, sort_keys=True)
        return meta

    def tensors(self) -> dict[str, torch.Tensor]:
        t = {
            "delta": torch.from_numpy(np.ascontiguousarray(self.delta, np.float32)),
            "budget": torch.from_numpy(np.ascontiguousarray(self.budget, np.float32)),
        }
        for name, e in (self.identity or {}).items():
            t[IDENTITY_PREFIX + name] = torch.from_numpy(np.ascontiguousarray(e, np.float32))
        return t

    def to_bytes(self) -> bytes:
        from safetensors.torch import save

        return save(self.tensors(), metadata=self.metadata())

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_bytes())
        return path

    @classmethod
    def load(cls, src: str | Path | bytes) -> "PersonalMask":
        """Read a mask file; any problem is a :class:`MaskFileError` with a readable message."""
        from safetensors import SafetensorError
        from safetensors.torch import load

        name = "the mask data" if isinstance(src, (bytes, bytearray)) else str(src)
        if not isinstance(src, (bytes, bytearray)):
            try:
                src = Path(src).read_bytes()
            except FileNotFoundError:
                raise MaskFileError(f"Mask file {name} does not exist.") from None
            except OSError as e:
                raise MaskFileError(f"Cannot read mask file {name}: {e.strerror or e}.") from None
        data = bytes(src)
        try:
            tensors = load(data)
            meta = _read_metadata(data)
        except (SafetensorError, ValueError, RuntimeError, json.JSONDecodeError, UnicodeDecodeError):
            raise MaskFileError(
                f"{name} is not a readable faceprot mask file (it is corrupt, truncated, or another kind of file)."
            ) from None
        if meta.get("format") != FORMAT:
            raise MaskFileError(f"{name} is a safetensors file but not a faceprot mask.")
        try:
            version = int(meta.get("format_version", ""))
        except ValueError:
            raise MaskFileError(f"{name} has an unreadable format version.") from None
        if version > FORMAT_VERSION:
            raise MaskFileError(
                f"{name} was made by a newer faceprot (mask format {version}; this faceprot reads up to "
                f"{FORMAT_VERSION}). Update faceprot to use it."
            )
        if version < 1:
            raise MaskFileError(f"{name} has an invalid mask format version {version}.")
        allowed = {"delta", "budget"}
        unknown = [k for k in tensors if k not in allowed and not k.startswith(IDENTITY_PREFIX)]
        if unknown or not allowed <= set(tensors):
            raise MaskFileError(f"{name} does not hold the tensors of a faceprot mask (found {sorted(tensors)}).")
        delta, budget = tensors["delta"].numpy(), tensors["budget"].numpy()
        n = CANONICAL_SIZE
        if delta.shape != (3, n, n) or budget.shape != ((1, n, n) if version == 1 else (3, n, n)):
            raise MaskFileError(f"{name} has tensors of the wrong shape for faceprot's {n}x{n} face space.")
        try:
            canon = json.loads(meta["canonical"])
            if canon["size"] != n or not np.allclose(canon["points"], CANONICAL_POINTS, atol=1e-3):
                raise MaskFileError(f"{name} was made for a different canonical face space.")
            eps, eps_high = float(meta["eps"]), float(meta["eps_high"])
            surrogates = json.loads(meta["surrogates"])
            seed = int(meta["seed"])
            perceptual = None
            if version >= 2:
                perceptual = PerceptualBudget.from_dict(json.loads(meta["perceptual"])).to_dict()
        except MaskFileError:
            raise
        except (KeyError, ValueError, TypeError, json.JSONDecodeError):
            raise MaskFileError(f"{name} has incomplete or damaged metadata.") from None
        if not (np.isfinite(delta).all() and np.isfinite(budget).all()):
            raise MaskFileError(f"{name} holds non-finite values.")
        space = BudgetSpace("rgb" if perceptual is None else PERCEPTUAL_SPACE)
        inside = space.from_rgb(torch.from_numpy(delta)).numpy()
        if (np.abs(inside) > budget + 1e-6).any():
            raise MaskFileError(f"{name} holds a perturbation larger than its own budget; it was altered.")
        identity = {k[len(IDENTITY_PREFIX):]: v.numpy() for k, v in tensors.items() if k.startswith(IDENTITY_PREFIX)}
        return cls(delta=delta, budget=budget, eps=eps, eps_high=eps_high, surrogates=surrogates,
                   generator=meta.get("generator", ""), seed=seed, preset=meta.get("preset", ""),
                   created=meta.get("created", ""), identity=identity or None,
                   extra=json.loads(meta.get("settings", "{}")), perceptual=perceptual)


def _read_metadata(data: bytes) -> dict[str, str]:
    """The ``__metadata__`` of a safetensors file (the JSON header after an 8-byte length)."""
    if len(data) < 8:
        raise ValueError("too short")
    n = int.from_bytes(data[:8], "little")
    if n > len(data) - 8:
        raise ValueError("header length")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    return header.get("__metadata__", {}) or {}
