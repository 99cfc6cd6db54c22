"""Combining the identity and expression gradients of the emotion disguise (MAP, FACTS.md section 7).

MAP optimises two objectives at once: the identity loss (move the face away from its owner for face
recognition) and the expression loss (reach the target expression). Where their gradients conflict,
summing them lets the stronger one undo the weaker one. MAP resolves the conflict by projection:
PCGrad (Yu et al. 2020, "Gradient Surgery for Multi-Task Learning") and GradVac (Wang et al. 2021,
"Gradient Vaccine").

Sign convention: the inputs ``g_a`` (identity) and ``g_e`` (expression) are gradients of losses to
*minimise*, and the returned direction ``d`` is used the same way (``x -= lr * d``). To first order a
step changes loss i by ``-lr * g_i . d``, so ``d`` raises no objective when ``g_a . d >= 0`` and
``g_e . d >= 0``; the record calls these two numbers the *gains*.

Shapes: a gradient is one tensor of any shape, or a list of tensors (one per parameter). A list is
one vector (concatenated) unless ``per_group=True``, when each tensor is projected on its own, with
its own GradVac target (the paper's per-layer granularity). ``d`` has the inputs' structure, shapes
and dtype; the arithmetic runs in float64.

Zero and non-finite gradients: a zero gradient has no direction, so nothing is projected (``d`` is
the plain sum, the cosine is NaN and the GradVac target is left as it was). A gradient with a NaN or
an infinity raises ``ValueError``: it means a loss blew up, and hiding that would hide the bug.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

MODES = ("sum", "pcgrad", "gradvac")

#: GradVac's target is kept inside (-1, 1): the closed-form coefficient divides by sqrt(1 - target^2).
MAX_TARGET = 1.0 - 1e-6


@dataclass(frozen=True)
class ProjectionRecord:
    """What one combination did (for one parameter group).

    cosine: cos(g_a, g_e), NaN where either is zero.  conflict: the gradients point against each
    other (``g_a . g_e < 0``).  target: GradVac's target (the EMA before this step), None in the other
    modes.  adjusted: GradVac moved the gradients to the target (cosine below it).  fallback: GradVac's
    direction would have raised an objective, so PCGrad's was used.  gain_a, gain_e: ``g_a . d`` and
    ``g_e . d`` of the returned direction (>= 0: that objective does not rise, to first order).
    """

    mode: str
    cosine: float
    conflict: bool
    target: float | None
    adjusted: bool
    fallback: bool
    gain_a: float
    gain_e: float


def _check(name: str, g: torch.Tensor) -> None:
    if not bool(torch.isfinite(g).all()):
        raise ValueError(f"The {name} gradient has non-finite values (NaN or inf): its loss blew up.")


def _cosine(g_a: torch.Tensor, g_e: torch.Tensor) -> float:
    na, ne = torch.linalg.vector_norm(g_a), torch.linalg.vector_norm(g_e)
    if na == 0 or ne == 0:
        return math.nan
    return float(torch.clamp((g_a / na) @ (g_e / ne), -1.0, 1.0))


def project_conflicting(g_a: torch.Tensor, g_e: torch.Tensor) -> torch.Tensor:
    """PCGrad for two flat gradients: where they conflict, remove from each its component along the
    other (both from the originals), and return the sum.

    ``g_a' = g_a - (g_a . g_e / |g_e|^2) g_e`` and symmetrically ``g_e'``. Then
    ``g_a . (g_a' + g_e') = |g_a|^2 (1 - cos^2) >= 0`` (``g_a . g_e' = 0``), and the same for ``g_e``:
    no objective rises to first order. Without a conflict, or with a zero gradient, the plain sum.
    """
    dot = g_a @ g_e
    if dot >= 0:
        return g_a + g_e
    # dot < 0 implies both norms are non-zero. Unit vectors keep huge gradients from overflowing.
    u_a = g_a / torch.linalg.vector_norm(g_a)
    u_e = g_e / torch.linalg.vector_norm(g_e)
    return (g_a - (g_a @ u_e) * u_e) + (g_e - (g_e @ u_a) * u_a)


def vaccinate(g_i: torch.Tensor, g_j: torch.Tensor, target: float) -> torch.Tensor:
    """GradVac's adjustment of ``g_i`` against ``g_j``: ``g_i + a g_j`` whose cosine with ``g_j`` is
    ``target`` (used where cos(g_i, g_j) < target; both non-zero, ``target`` in (-1, 1)).

    Derivation. Let u = g_j / |g_j|, phi = cos(g_i, g_j), and v the unit vector along g_i's part
    orthogonal to u, so g_i = |g_i| (phi u + sqrt(1 - phi^2) v). Adding a g_j changes only the u
    part: g_i + a g_j = (|g_i| phi + a |g_j|) u + |g_i| sqrt(1 - phi^2) v. Its cosine with u is T when
    its u part over its v part is T / sqrt(1 - T^2):

        |g_i| phi + a |g_j| = |g_i| sqrt(1 - phi^2) T / sqrt(1 - T^2)
        a = |g_i| (T sqrt(1 - phi^2) - phi sqrt(1 - T^2)) / (|g_j| sqrt(1 - T^2)),

    Wang et al. 2021's eq. With phi = cos(alpha), T = cos(beta), the bracket is sin(alpha - beta),
    positive when phi < T: the adjustment adds some of g_j. With T = 0 it is PCGrad's projection
    (a = -phi |g_i| / |g_j|). Where phi = -1 there is no v: a = |g_i| / |g_j| and g_i becomes 0.
    """
    n_i, n_j = torch.linalg.vector_norm(g_i), torch.linalg.vector_norm(g_j)
    phi = torch.clamp((g_i / n_i) @ (g_j / n_j), -1.0, 1.0)
    t = torch.as_tensor(target, dtype=g_i.dtype, device=g_i.device)
    a = n_i * (t * torch.sqrt(1 - phi**2) - phi * torch.sqrt(1 - t**2)) / (n_j * torch.sqrt(1 - t**2))
    return g_i + a * g_j


class GradientProjector:
    """The dual-objective optimiser's combination of the identity and expression gradients.

    Args:
        mode: ``"sum"`` (naive, ``g_a + g_e``), ``"pcgrad"`` or ``"gradvac"``.
        ema: GradVac's beta: after each step the target becomes ``(1 - ema) target + ema phi``
            (the observed cosine phi; not updated where phi is undefined).
        initial_target: GradVac's target before any step. At 0 GradVac starts as PCGrad, which
            projects conflicting gradients to cosine 0.
        per_group: a list of gradients is projected tensor by tensor (each with its own target), not
            as one concatenated vector.

    Call with ``(g_a, g_e)`` (descent gradients, module docstring); returns ``(d, records)``, ``d``
    shaped as the inputs (no autograd history) and ``records`` one :class:`ProjectionRecord` per
    group.

    GradVac step, per group: phi = cos(g_a, g_e); where phi < target, ``g_a' = vaccinate(g_a, g_e)``
    and ``g_e' = vaccinate(g_e, g_a)`` (both from the originals), else ``g_a' = g_a``, ``g_e' = g_e``;
    ``d = g_a' + g_e'``. With a positive target this pulls the gradients together past orthogonal and
    can raise an objective; wherever ``g_a . d < 0`` or ``g_e . d < 0`` (MAP: "falls back to PCGrad"),
    ``d`` is PCGrad's direction instead, which never raises either. Then the target is updated.

    When the fallback happens: after an adjustment (phi = cos alpha < T = cos beta),
    ``g_a . d = (|g_a| sin alpha / sin beta) (|g_a| cos(alpha - beta) + |g_e| T)``, and symmetrically
    for ``g_e``. It is negative exactly when ``|g_a| cos(alpha - beta) < -|g_e| T``: with T >= 0 only
    past alpha - beta > 90 degrees and for a large enough ``|g_a|``; with T < 0 for a small enough
    ``|g_a|``, as with the plain sum (which GradVac keeps where phi >= T, and which raises the
    smaller gradient's objective where they conflict enough).

    Example::

        >>> projector = GradientProjector("gradvac")
        >>> d, (record,) = projector(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0]))
        >>> d, record.conflict, record.adjusted, record.fallback
        (tensor([0.5000, 1.5000]), True, True, False)
        >>> round(projector.target(), 4)  # 0.99 * 0 + 0.01 * cos(135 degrees)
        -0.0071
    """

    def __init__(self, mode: str = "gradvac", ema: float = 0.01, initial_target: float = 0.0,
                 per_group: bool = False):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        if not 0.0 <= ema <= 1.0:
            raise ValueError(f"ema must be in [0, 1], not {ema}")
        if not -1.0 < initial_target < 1.0:
            raise ValueError(f"initial_target must be in (-1, 1), not {initial_target}")
        self.mode, self.ema, self.initial_target, self.per_group = mode, ema, initial_target, per_group
        self.targets: dict[int, float] = {}  # GradVac's EMA per group index

    def target(self, group: int = 0) -> float:
        """GradVac's current target (EMA of the cosine) for a group."""
        return self.targets.get(group, self.initial_target)

    def __call__(self, g_a: torch.Tensor | Sequence[torch.Tensor], g_e: torch.Tensor | Sequence[torch.Tensor]):
        single = isinstance(g_a, torch.Tensor)
        list_a = [g_a] if single else list(g_a)
        list_e = [g_e] if isinstance(g_e, torch.Tensor) else list(g_e)
        if len(list_a) != len(list_e) or any(a.shape != e.shape for a, e in zip(list_a, list_e)):
            raise ValueError("The identity and expression gradients must have the same structure and shapes.")
        for a, e in zip(list_a, list_e):
            _check("identity", a)
            _check("expression", e)
        groups = [[i] for i in range(len(list_a))] if self.per_group else [list(range(len(list_a)))]
        out: list[torch.Tensor | None] = [None] * len(list_a)
        records = []
        for k, idx in enumerate(groups):
            flat_a = torch.cat([list_a[i].detach().reshape(-1).double() for i in idx])
            flat_e = torch.cat([list_e[i].detach().reshape(-1).double() for i in idx])
            d, rec = self._combine(flat_a, flat_e, k)
            records.append(rec)
            start = 0
            for i in idx:
                n = list_a[i].numel()
                out[i] = d[start:start + n].reshape(list_a[i].shape).to(list_a[i].dtype)
                start += n
        return (out[0] if single else out), records

    def _combine(self, g_a: torch.Tensor, g_e: torch.Tensor, group: int):
        phi = _cosine(g_a, g_e)
        conflict = bool(g_a @ g_e < 0)
        target, adjusted, fallback = None, False, False
        if self.mode == "sum":
            d = g_a + g_e
        elif self.mode == "pcgrad":
            d = project_conflicting(g_a, g_e)
        else:
            target = self.target(group)
            t = min(max(target, -MAX_TARGET), MAX_TARGET)
            adjusted = not math.isnan(phi) and phi < t
            d = vaccinate(g_a, g_e, t) + vaccinate(g_e, g_a, t) if adjusted else g_a + g_e
            if g_a @ d < 0 or g_e @ d < 0:
                d, fallback = project_conflicting(g_a, g_e), True
            if not math.isnan(phi):
                self.targets[group] = (1 - self.ema) * target + self.ema * phi
        rec = ProjectionRecord(self.mode, phi, conflict, target, adjusted, fallback,
                               float(g_a @ d), float(g_e @ d))
        return d, rec


__all__ = ["GradientProjector", "ProjectionRecord", "project_conflicting", "vaccinate", "MODES"]
