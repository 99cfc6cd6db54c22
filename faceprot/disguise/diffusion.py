"""The diffusion engine of the emotion disguise (issue 17): MAP's edit through a CelebA-HQ DDPM.

    photo -> faces (:func:`faceprot.protect.locate`) -> each face in CelebA-HQ framing, from the
    photo's own pixels (:func:`.framing.celebahq_transform`) -> DDIM inversion to t0
    (:meth:`DiffusionDisguise.invert`) -> offsets on the generative steps optimised
    (:class:`DiffusionDisguise`) -> the edit mapped into the canonical square
    (:func:`.framing.from_celebahq`) -> the shared paste-back (:func:`faceprot.protect.protect_faces`)
    -> photo at its own resolution

**Model and schedule.** ``google/ddpm-ema-celebahq-256`` (registry entry ``ddpm-celebahq``), a
diffusers ``UNet2DModel`` predicting the noise, trained with DDPM's schedule: betas linear from
1e-4 to 0.02 over 1000 steps (Ho et al. 2020, section 4, whose CelebA-HQ 256 model this is). The
repo's ``scheduler_config.json`` is not in the registry and was never read here (no Hub access), so
the schedule is written down rather than loaded. The DDIM steps here are our own code (:func:`ddim_step`), the
deterministic update (eta 0) of Song et al. 2021, eq. 12, in the conventions of diffusers'
``DDIMScheduler`` and ``DDIMInverseScheduler``: the image is the sample at timestep 0 (noise level
``alpha_bar[0]``), and the UNet is evaluated at the step's starting timestep.

**Which crop is inverted.** The CelebA-HQ framing of the face (:mod:`.framing`: the whole head,
side 293 canonical pixels), taken from the photo, because that is what the DDPM learnt; the
canonical square (side 256) is tighter and would show the model a face larger than any it was
trained on. Losses read the canonical view of the edit, which is what recognisers see and what is
pasted back.

**Inversion and generation (DiffAM, FACTS.md section 7).** 20 inversion steps from timestep 0 to
t0 = 60 (3 apart), then 6 generative steps back (10 apart). Only the generative steps are
differentiated.

**What is optimised: offsets, not the UNet's weights.** Each generative step k adds an offset
``o_k`` (3 x 256 x 256, in the model's [-1, 1] units, clamped to ``max_offset``) to the latent it
starts from; the first is the offset of the inverted latent itself. DiffAM fine-tunes the UNet
instead (Adam, lr 8e-6). Within one ZeroGPU call of 60 to 120 s, offsets are the better buy:

* a step costs one backward pass through the six UNet calls for the activations only; fine-tuning
  also computes every weight's gradient (about a third more work per pass) and runs Adam over
  114 M weights and their 2 x 455 MB of moments;
* a call must start from the pretrained weights (one user's edit must never leak into the next):
  fine-tuning would need a private 455 MB copy of the UNet per call, where offsets leave the one
  shared, frozen model untouched by construction;
* DiffAM's fine-tune is trained over a data set for many iterations; at lr 8e-6 the 60 steps
  that fit in one call move no weight by more than 5e-4.

**The edit is a residual.** The output is ``framed + G(offsets) - G(0)`` (``G``: generation from
the inverted latent): without offsets it is the input itself, bit for bit, and where the
optimisation changes nothing the photo's own detail stays (a DDIM reconstruction alone softens it).

**Losses** (all functions of the edited CelebA-HQ-framed image ``F``):

    L_A = mean over surrogates of sign * sim(T(view), reference) [+ sim(T(view), own)]   (identity)
    L_E = -w_e log p_emotion(view) + w_au |d - A|^2 / |A|^2 + w_l laplacian(P(F), P(framed))
    L_S = w_s |eps_theta(sqrt(a_t) (2F - 1) + sqrt(1 - a_t) n, t) - n|^2           (score matching)

with ``view`` the canonical view of the edit (:meth:`EditProblem.view`), ``T`` one draw of the
real-life chain (:class:`faceprot.eot.RealLifeChain`), ``P`` the differentiable landmarks
(:mod:`.landmarks3d`), ``d = P(F) - P(framed)`` the landmark moves, ``A`` the emotion's
action-unit template moves (:func:`.warp.template_displacements`, always in the loss: the
expression classifier alone reads pixels, and pixels can fool it), and ``t``, ``n`` a random
timestep and noise drawn from the seed. As in the warp engine, the landmark terms belong to the
expression objective. The gradients of ``L_A`` and ``L_E`` with respect to ``F`` are combined by
:class:`.projection.GradientProjector` (GradVac with its EMA by default), ``L_S``'s is added, and
one backward pass takes the result to the offsets, on which Adam steps. The projection acts on
the image, where the objectives meet, and not on the offsets, so a step needs one backward pass
through the UNet calls instead of two.

**Determinism.** Every random draw (score timestep and noise, the real-life chain) comes from a
CPU generator seeded by ``(seed, step)``: two calls with the same seed give the same output.

Conventions: canonical and framed faces are ``(1, 3, 256, 256)`` RGB in [0, 1]; latents are in
the model's [-1, 1]; landmarks are ``(1, 68, 2)`` canonical pixels, float64.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .. import registry
from ..attack import device_of, similarity
from ..canonical import align, region_weight
from ..eot import RealLifeChain
from ..errors import FaceprotError, ModelUnavailableError
from ..expression import load_expression_model
from ..faces import Face, Selection
from ..protect import Located, Protected, locate, protect_faces
from ..recognizers import default_surrogates, load_surrogate
from ..runtime import resolve_device
from .engine import DisguisedPhoto, check_emotion, embed_faces, reference_embeddings
from .framing import CANONICAL_FROM_CELEBAHQ, CELEBAHQ_SIZE, celebahq_transform, from_celebahq
from .landmarks3d import REGISTRY_KEY as LANDMARKS_KEY
from .landmarks3d import Landmarks3D, load_landmarks_3d68
from .projection import MODES, GradientProjector
from .smoothness import laplacian_loss
from .warp import template_displacements

Progress = Callable[[float, str], None]

REGISTRY_KEY = "ddpm-celebahq"

# ------------------------------------------------------------------------------------------------
# The schedule and one DDIM step
# ------------------------------------------------------------------------------------------------

#: DDPM's schedule, which google/ddpm-ema-celebahq-256 was trained with (module docstring).
TRAIN_STEPS = 1000
BETA_START, BETA_END = 1e-4, 0.02


def alphas_cumprod() -> torch.Tensor:
    """(1000,) float64 ``alpha_bar[t] = prod_{s <= t} (1 - beta_s)``, betas linear 1e-4 .. 0.02."""
    betas = torch.linspace(BETA_START, BETA_END, TRAIN_STEPS, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, 0)


def ddim_step(x: torch.Tensor, eps: torch.Tensor, a_from: float, a_to: float) -> torch.Tensor:
    """DDIM's deterministic move (eta 0) of a sample from noise level ``a_from`` to ``a_to``.

    ``x0 = (x - sqrt(1 - a_from) eps) / sqrt(a_from)``, then ``sqrt(a_to) x0 + sqrt(1 - a_to) eps``.
    The same formula inverts (``a_to < a_from``: more noise) and generates (``a_to > a_from``).

    Args:
        x: (B, 3, H, W) the sample at level ``a_from`` (an ``alpha_bar`` value).
        eps: (B, 3, H, W) the noise the UNet predicts for it.
    """
    x0 = (x - math.sqrt(1.0 - a_from) * eps) / math.sqrt(a_from)
    return math.sqrt(a_to) * x0 + math.sqrt(1.0 - a_to) * eps


@dataclass(frozen=True)
class Schedule:
    """The timesteps of the inversion and of the generation (DiffAM: t0 60, 20 and 6 steps)."""

    t0: int = 60
    inversion_steps: int = 20
    generation_steps: int = 6

    def __post_init__(self):
        if not 0 < self.t0 < TRAIN_STEPS:
            raise FaceprotError(f"t0 must be between 1 and {TRAIN_STEPS - 1}, not {self.t0}.")
        for name, n in (("inversion", self.inversion_steps), ("generation", self.generation_steps)):
            if n < 1 or self.t0 % n:
                raise FaceprotError(f"The {name} steps ({n}) must divide t0 ({self.t0}) into equal steps.")

    def inversion(self) -> list[tuple[int, int]]:
        """(from, to) timesteps, from 0 up to t0: (0, 3), (3, 6), ..., (57, 60)."""
        k = self.t0 // self.inversion_steps
        return [(t, t + k) for t in range(0, self.t0, k)]

    def generation(self) -> list[tuple[int, int]]:
        """(from, to) timesteps, from t0 down to 0: (60, 50), (50, 40), ..., (10, 0)."""
        k = self.t0 // self.generation_steps
        return [(t, t - k) for t in range(self.t0, 0, -k)]


# ------------------------------------------------------------------------------------------------
# The model
# ------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _load_unet(folder: str, device: str):
    from diffusers import UNet2DModel

    unet = UNet2DModel.from_pretrained(folder)
    cfg = unet.config
    if (cfg.in_channels, cfg.out_channels, cfg.sample_size) != (3, 3, CELEBAHQ_SIZE):
        raise ModelUnavailableError(
            f"The diffusion model in {folder} is not a 256 x 256 RGB DDPM (it takes {cfg.in_channels} channels at "
            f"{cfg.sample_size} px); put google/ddpm-ema-celebahq-256's files there."
        )
    return unet.eval().requires_grad_(False).to(device)


def load_ddpm(device: str | torch.device = "cpu"):
    """The CelebA-HQ DDPM's UNet (diffusers ``UNet2DModel``) through the registry, once per folder
    and device. It is shared and frozen: the engine never changes its weights.

    Raises:
        ModelUnavailableError: its files are not in ``$FACEPROT_MODEL_DIR/ddpm-celebahq/`` or the
            Hub cache and the Hub cannot be reached.
    """
    return _load_unet(str(registry.resolve_dir(REGISTRY_KEY)), str(torch.device(device)))


# ------------------------------------------------------------------------------------------------
# The optimiser
# ------------------------------------------------------------------------------------------------

#: GPU seconds of one call, for ``spaces.GPU(duration=...)``: NOT MEASURED (no GPU has been lent
#: yet). A step is 7 UNet passes forward and backward at 256 x 256 (6 generative, 1 score), guessed
#: at 0.1 s each on a ZeroGPU H200 slice, plus the recognisers and the landmark model; the fixed
#: part is moving the models to the GPU and the 20 inversion passes. Replace both with a measured
#: step time when a GPU machine is lent.
ESTIMATED_GPU_SECONDS_PER_STEP = 0.8  # not measured
ESTIMATED_GPU_SECONDS_FIXED = 20.0  # not measured


@dataclass
class DiffusionConfig:
    """Hyper-parameters of :class:`DiffusionDisguise` (module docstring for the losses).

    steps: Adam steps on the offsets (60 fit one ZeroGPU call by the estimate, :func:`gpu_duration`).
    lr: Adam's step, in the model's [-1, 1] units.
    max_offset: each offset's L-inf bound, in the same units (0.2 is 26/255 of a pixel's range before
        the remaining denoising steps; a first guess, not measured).
    schedule: the inversion and generation timesteps.
    identity_weight, expression_weight: on L_A and on the classifier's -log p in L_E.
    action_unit_weight: w_au, on the landmark moves' closeness to the emotion's template (always on).
    laplacian_weight: w_l, on MAP's Laplacian smoothness (the warp engine's 100).
    score_weight: w_s, on the score-matching term; score_timesteps: its random t's range (inclusive).
    projection, ema: the identity/expression combination (:class:`.projection.GradientProjector`).
    eot: the identity loss reads the view through one draw per step of the real-life chain.
    """

    steps: int = 60
    lr: float = 5e-3
    max_offset: float = 0.2
    schedule: Schedule = field(default_factory=Schedule)
    identity_weight: float = 1.0
    expression_weight: float = 1.0
    action_unit_weight: float = 1.0
    laplacian_weight: float = 100.0
    score_weight: float = 1.0
    score_timesteps: tuple[int, int] = (1, 300)
    projection: str = "gradvac"
    ema: float = 0.01
    eot: bool = True

    def __post_init__(self):
        if self.projection not in MODES:
            raise FaceprotError(f"Unknown projection {self.projection!r}; choose {', '.join(MODES)}.")
        if self.steps < 0:
            raise FaceprotError(f"steps must be 0 or more, not {self.steps}.")
        if self.action_unit_weight <= 0:
            raise FaceprotError("The action-unit term is always in the diffusion engine's loss: its weight must be "
                                "positive (without it the expression could be carried by pixel noise alone).")
        lo, hi = self.score_timesteps
        if not 0 <= lo <= hi < TRAIN_STEPS:
            raise FaceprotError(f"score_timesteps must lie in 0..{TRAIN_STEPS - 1}, not {self.score_timesteps}.")


def gpu_duration(steps: int = DiffusionConfig.steps) -> int:
    """Seconds to ask ``spaces.GPU`` for one face (an estimate, not measured: see the constants)."""
    return math.ceil(ESTIMATED_GPU_SECONDS_FIXED + steps * ESTIMATED_GPU_SECONDS_PER_STEP)


LOSS_TERMS = ("identity", "log_p", "action_units", "laplacian", "score")


class EditProblem:
    """One face's edit, with what stays fixed while its offsets are optimised.

    Built by :meth:`DiffusionDisguise.problem`. :meth:`image` turns offsets ``(G, 1, 3, S, S)``
    into the edited CelebA-HQ-framed face, :meth:`terms` evaluates the losses on it, and
    :meth:`direction` gives the step direction on the offsets.
    """

    def __init__(self, engine: "DiffusionDisguise", x: torch.Tensor, framed: torch.Tensor, emotion: str,
                 reference: dict[str, torch.Tensor], impersonate: bool, away: dict[str, torch.Tensor] | None,
                 seed: int, scale: float | None):
        self.engine, self.config, self.seed = engine, engine.config, seed
        dev = engine.device
        self.x, self.framed = x.to(dev), framed.to(dev)
        self.ref = {k: v.to(dev) for k, v in reference.items()}
        self.own = {k: v.to(dev) for k, v in away.items()} if (impersonate and away is not None) else None
        self.sign = -1.0 if impersonate else 1.0  # L_A = sign * mean similarity to the reference
        self.column = engine.expression.index(emotion)
        self.region = torch.from_numpy(region_weight()).to(dev)  # what paste_back keeps of a delta
        with torch.no_grad():
            self.latent = engine.invert(2 * self.framed - 1)[-1]
            self.reconstruction = engine.generate(self.latent)[-1]
            self.points = engine.landmarks(self.framed, CANONICAL_FROM_CELEBAHQ).double()
        self.template = template_displacements(self.points, emotion)
        self.chain = RealLifeChain(enabled=self.config.eot,
                                   **({} if scale is None else {"paste_scale": (0.8 * scale, 1.25 * scale)}))
        self.projector = GradientProjector(self.config.projection, ema=self.config.ema)

    def zero_offsets(self) -> torch.Tensor:
        """(G, 1, 3, S, S) zeros: no edit."""
        return torch.zeros(len(self.config.schedule.generation()), *self.framed.shape, device=self.framed.device)

    def image(self, offsets: torch.Tensor) -> torch.Tensor:
        """(1, 3, S, S) the edited framed face in [0, 1]: ``framed + G(offsets) - G(0)``, clipped."""
        generated = self.engine.generate(self.latent, offsets)[-1]
        return (self.framed + (generated - self.reconstruction) / 2).clamp(0, 1)

    def delta(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, 256, 256) the edit in the canonical square (before paste_back's feathering)."""
        return from_celebahq(image - self.framed)

    def view(self, image: torch.Tensor) -> torch.Tensor:
        """(1, 3, 256, 256) the canonical face as it will be pasted back (feathered edge included)."""
        return (self.x + self.region * self.delta(image)).clamp(0, 1)

    def generator(self, step: int) -> torch.Generator:
        """The CPU generator of step ``step``'s random draws (deterministic in seed and step)."""
        return torch.Generator().manual_seed(self.seed * 1_000_003 + step)

    def terms(self, image: torch.Tensor, step: int = 0) -> dict[str, torch.Tensor]:
        """The loss terms of an edited framed face (1, 3, S, S), as 0-d tensors (:data:`LOSS_TERMS`)."""
        engine, cfg, gen = self.engine, self.config, self.generator(step)
        view = self.view(image)
        looked = self.chain(view, gen)
        identity = []
        for s in engine.surrogates:
            emb = s(looked)
            term = self.sign * similarity(s, emb, self.ref[s.name])[0]
            identity.append(term + (similarity(s, emb, self.own[s.name])[0] if self.own is not None else 0))
        log_p = engine.expression.log_probs(view)[0, self.column]
        points = engine.landmarks(image, CANONICAL_FROM_CELEBAHQ).double()
        moves = points - self.points
        action_units = (moves - self.template).pow(2).sum() / self.template.pow(2).sum()
        t = int(torch.randint(cfg.score_timesteps[0], cfg.score_timesteps[1] + 1, (), generator=gen))
        noise = torch.randn(image.shape, generator=gen).to(image.device)
        a = float(engine.alphas[t])
        predicted = engine.eps(math.sqrt(a) * (2 * image - 1) + math.sqrt(1 - a) * noise, t)
        return {"identity": torch.stack(identity).mean(), "log_p": log_p, "action_units": action_units,
                "laplacian": laplacian_loss(points, self.points), "score": (predicted - noise).pow(2).mean()}

    def direction(self, offsets: torch.Tensor, step: int = 0):
        """The descent direction on the offsets at one step.

        Returns ``(direction, record, terms)``: direction shaped like ``offsets``; record the
        projection's :class:`~.projection.ProjectionRecord`; terms the loss values as floats.
        """
        cfg = self.config
        offsets = offsets.detach().requires_grad_(True)
        image = self.image(offsets)
        seen = image.detach().requires_grad_(True)
        t = self.terms(seen, step)
        loss_a = cfg.identity_weight * t["identity"]
        loss_e = (-cfg.expression_weight * t["log_p"] + cfg.action_unit_weight * t["action_units"]
                  + cfg.laplacian_weight * t["laplacian"])
        (g_a,) = torch.autograd.grad(loss_a, seen, retain_graph=True)
        (g_e,) = torch.autograd.grad(loss_e, seen, retain_graph=True)
        (g_s,) = torch.autograd.grad(cfg.score_weight * t["score"], seen)
        d_image, (record,) = self.projector(g_a, g_e)
        (d,) = torch.autograd.grad(image, offsets, grad_outputs=d_image + g_s)
        return d, record, {k: float(v.detach()) for k, v in t.items()}


class DiffusionDisguise:
    """The diffusion engine's loop on one face: Adam on the generative steps' offsets, the
    identity and expression gradients combined by projection (module docstring).

    Args:
        unet: the DDPM's ``UNet2DModel`` (:func:`load_ddpm`), frozen; never changed here.
        landmarks: :class:`~.landmarks3d.Landmarks3D` (:func:`~.landmarks3d.load_landmarks_3d68`).
        surrogates: loaded recognisers (:func:`faceprot.recognizers.load_surrogate`).
        expression: the objective's expression model (``load_expression_model("expression")``).
        config: :class:`DiffusionConfig`.

    All models on one device; results come back on the CPU.
    """

    def __init__(self, unet, landmarks: Landmarks3D, surrogates: list, expression, config: DiffusionConfig | None = None):
        self.unet, self.landmarks = unet, landmarks
        self.surrogates, self.expression = list(surrogates), expression
        self.config = config or DiffusionConfig()
        self.device = device_of(self.surrogates)
        self.alphas = alphas_cumprod()

    # -- the stages ------------------------------------------------------------------------------

    def eps(self, z: torch.Tensor, t: int) -> torch.Tensor:
        """The UNet's noise prediction for latents (B, 3, S, S) at timestep t."""
        timesteps = torch.full((z.shape[0],), t, dtype=torch.long, device=z.device)
        return self.unet(z, timesteps, return_dict=False)[0]

    def invert(self, z0: torch.Tensor) -> list[torch.Tensor]:
        """DDIM inversion of images (B, 3, S, S) in [-1, 1] (the samples at timestep 0) up to t0.

        Returns the trajectory: ``[z0, z_3, ..., z_t0]`` (inversion steps + 1 latents).
        """
        out = [z0]
        with torch.no_grad():
            for t_from, t_to in self.config.schedule.inversion():
                out.append(ddim_step(out[-1], self.eps(out[-1], t_from), float(self.alphas[t_from]),
                                     float(self.alphas[t_to])))
        return out

    def generate(self, latent: torch.Tensor, offsets: torch.Tensor | None = None) -> list[torch.Tensor]:
        """DDIM generation from t0 down to timestep 0, differentiable in ``offsets``.

        Args:
            latent: (B, 3, S, S) the inverted latent at t0.
            offsets: None, or (G, B, 3, S, S): offset k is added to the latent that step k starts from.
        Returns:
            the trajectory ``[z_t0 (+ o_0), ..., z_0]`` (generation steps + 1 latents); the last is the image in [-1, 1].
        """
        z, out = latent, []
        for k, (t_from, t_to) in enumerate(self.config.schedule.generation()):
            if offsets is not None:
                z = z + offsets[k]
            out.append(z)
            z = ddim_step(z, self.eps(z, t_from), float(self.alphas[t_from]), float(self.alphas[t_to]))
        return out + [z]

    def problem(self, x: torch.Tensor, framed: torch.Tensor, emotion: str, reference: dict[str, torch.Tensor],
                impersonate: bool = False, away: dict[str, torch.Tensor] | None = None, seed: int = 0,
                scale: float | None = None) -> EditProblem:
        """One face's :class:`EditProblem` (inverts it once). Arguments as :meth:`__call__`."""
        return EditProblem(self, x, framed, emotion, reference, impersonate, away, seed, scale)

    # -- the loop --------------------------------------------------------------------------------

    def __call__(self, x: torch.Tensor, framed: torch.Tensor, emotion: str, reference: dict[str, torch.Tensor],
                 impersonate: bool = False, away: dict[str, torch.Tensor] | None = None, seed: int = 0,
                 scale: float | None = None, progress: Callable[[int, int], None] | None = None) -> dict:
        """Disguise one face.

        Args:
            x: (1, 3, 256, 256) the clean canonical face, [0, 1].
            framed: (1, 3, 256, 256) the same face in CelebA-HQ framing (:mod:`.framing`), [0, 1].
            emotion: a key of :data:`.warp.TEMPLATES`.
            reference: per surrogate, (D,) the embedding to move away from (dodging: the clean
                face's) or towards (``impersonate=True``: the target's).
            away: with ``impersonate``, per surrogate the clean face's embedding, to move away from.
            seed: seeds every random draw.
            scale: the photo's pixels per canonical pixel (for the real-life chain), None if unknown.
            progress: called as progress(step, steps).
        Returns:
            a dict: ``clean``, ``final`` (3, S, S) canonical views; ``framed``, ``framed_final``
            (3, S, S); ``delta`` (3, S, S) the canonical edit to paste back; ``points``,
            ``edited_points`` (68, 2); ``p_emotion`` and ``similarity`` before and after;
            ``losses`` per step; ``seconds``.
        """
        cfg, t0 = self.config, time.perf_counter()
        problem = self.problem(x, framed, emotion, reference, impersonate, away, seed, scale)
        offsets = problem.zero_offsets()
        adam = torch.optim.Adam([offsets], lr=cfg.lr)
        losses = []
        for step in range(cfg.steps):
            d, record, values = problem.direction(offsets, step)
            offsets.grad = d
            adam.step()
            with torch.no_grad():
                offsets.clamp_(-cfg.max_offset, cfg.max_offset)
            losses.append({**values, "cosine": record.cosine, "conflict": record.conflict, "fallback": record.fallback})
            if progress:
                progress(step + 1, cfg.steps)
        with torch.no_grad():
            image = problem.image(offsets)
            final = problem.view(image)
            column = problem.column
            sims = {s.name: {"clean": float(similarity(s, s(problem.x), problem.ref[s.name])[0]),
                             "final": float(similarity(s, s(final), problem.ref[s.name])[0])} for s in self.surrogates}
            return dict(
                clean=problem.x[0].cpu(), final=final[0].cpu(), framed=problem.framed[0].cpu(),
                framed_final=image[0].cpu(), delta=problem.delta(image)[0].cpu(),
                points=problem.points[0].cpu(),
                edited_points=self.landmarks(image, CANONICAL_FROM_CELEBAHQ)[0].double().cpu(),
                p_emotion={"clean": float(self.expression(problem.x)[0, column]),
                           "final": float(self.expression(final)[0, column])},
                similarity=sims, losses=losses, seconds=time.perf_counter() - t0,
            )


# ------------------------------------------------------------------------------------------------
# Where it is offered
# ------------------------------------------------------------------------------------------------

#: The engine's own models (registry keys), as a person calls them. The recognisers and the
#: expression model are the warp engine's.
WEIGHTS = {REGISTRY_KEY: "the diffusion model", LANDMARKS_KEY: "the 3-D landmark model"}


def missing_weights() -> list[str]:
    """The engine's own models whose files are not on this machine (``$FACEPROT_MODEL_DIR`` or
    the Hub cache that a Space's ``preload_from_hub`` fills; nothing is downloaded), each named
    with where it comes from: "the diffusion model (google/ddpm-ema-celebahq-256)"."""
    out = []
    for key, what in WEIGHTS.items():
        if not registry.availability(key)[0]:
            e = registry.entry(key)
            where = f"{e.files[0].filename} from {e.repo_id}" if len(e.files) == 1 else e.repo_id
            out.append(f"{what} ({where})")
    return out


def why_not_offered(gpu: bool) -> str:
    """One sentence that says why the diffusion engine cannot run here, or "" where it can: it
    needs a GPU (``gpu``: whether there is one) and its weights (:func:`missing_weights`). The app
    and the command line say the same sentence."""
    reasons = [] if gpu else ["it needs a GPU, and there is none here"]
    missing = missing_weights()
    if missing:
        reasons.append(f"it needs {' and '.join(missing)}, which {'are' if len(missing) > 1 else 'is'} not here")
    return ("The diffusion engine is not offered here: " + "; and ".join(reasons) + ".") if reasons else ""


# ------------------------------------------------------------------------------------------------
# The pipeline
# ------------------------------------------------------------------------------------------------


@dataclass
class DiffusedFace:
    """One face the diffusion engine edited: its record in the photo and what
    :class:`DiffusionDisguise` returned for it (see there; canonical tensors on the CPU)."""

    face: Face
    clean: torch.Tensor
    final: torch.Tensor
    framed: torch.Tensor
    framed_final: torch.Tensor
    delta: torch.Tensor
    points: torch.Tensor
    edited_points: torch.Tensor
    p_emotion: dict[str, float]
    similarity: dict[str, dict[str, float]]
    losses: list[dict]
    seconds: float

    @property
    def displacements(self) -> torch.Tensor:
        """(68, 2) how far each landmark moved, in canonical pixels, as the landmark model reads
        the face before and after the edit (the warp engine's field of the same name is the warp)."""
        return self.edited_points - self.points


@dataclass
class DiffusionResult(DisguisedPhoto):
    """A photo disguised by the diffusion engine.

    protected: the output (:class:`~faceprot.protect.Protected`, the input's size).  faces: per
    chosen face, :class:`DiffusedFace`.
    """

    protected: Protected
    faces: list[DiffusedFace]
    emotion: str
    seed: int
    target: bool
    surrogates: list[str]
    config: DiffusionConfig
    seconds: dict[str, float] = field(default_factory=dict)


def disguise(photo, emotion: str = "happy", target=None, seed: int = 0,
             faces: Selection | Sequence[Face] = "largest", surrogates: list[str] | None = None,
             device: str | None = None, progress: Progress | None = None, projection: str = "gradvac",
             *, detector=None, **overrides) -> DiffusionResult:
    """Give the chosen faces of a photo an expression through the diffusion model, and hide who they
    are from face recognition. The diffusion counterpart of :func:`.engine.disguise`.

    Args:
        photo: a path, bytes, PIL image, array, :class:`~faceprot.io.Picture` or a
            :class:`~faceprot.protect.Located` photo.
        emotion: one of :data:`.engine.OFFERED`.
        target: None to dodge, a photo of someone else to impersonate, or a dict of embeddings by
            surrogate name (a built-in target).
        seed: face i uses seed + i; same seed, same bytes.
        faces: "largest", "all", face indices or :class:`~faceprot.faces.Face` records.
        surrogates, device, progress, projection, detector: as :func:`.engine.disguise`.
        overrides: any :class:`DiffusionConfig` field.
    Returns:
        :class:`DiffusionResult`; only pixels in the chosen faces' canonical squares change.
    Raises:
        EmotionError, NoFaceError, ModelUnavailableError (the DDPM or the landmark model missing),
        FaceprotError (a bad setting, no recogniser available).
    """
    say = progress or (lambda f, m: None)
    t0 = time.perf_counter()
    check_emotion(emotion)
    cfg = DiffusionConfig(**{"projection": projection, **{k: v for k, v in overrides.items() if v is not None}})
    names = list(surrogates) if surrogates else default_surrogates()
    if not names:
        raise FaceprotError("No face recognizer is available to optimise against.")
    dev = resolve_device(device)
    say(0.01, "Loading the diffusion model")
    engine = DiffusionDisguise(load_ddpm(dev), load_landmarks_3d68(dev), [load_surrogate(n, dev) for n in names],
                               load_expression_model("expression", dev), cfg)
    say(0.02, "Finding the faces")
    located = photo if isinstance(photo, Located) else locate(photo, faces, detector)
    reference = reference_embeddings(target, engine.surrogates)
    t_locate = time.perf_counter() - t0

    records: list[DiffusedFace] = []
    n = len(located.chosen)

    def edit(x: torch.Tensor, i: int) -> torch.Tensor:
        face = located.chosen[i]
        framed = align(located.picture.rgb, celebahq_transform(face.transform))
        own = embed_faces(engine.surrogates, x)
        out = engine(x, framed, emotion, reference if reference is not None else own,
                     impersonate=reference is not None, away=own if reference is not None else None,
                     seed=seed + i, scale=1 / face.transform.scale,
                     progress=lambda k, m: say(0.05 + 0.93 * (i + k / m) / n, f"Face {i + 1} of {n}: step {k}/{m}"))
        records.append(DiffusedFace(face=face, **out))
        return out["delta"]

    t = time.perf_counter()
    protected = protect_faces(located, edit)
    say(1.0, "Done")
    return DiffusionResult(protected, records, emotion, seed, target is not None, names, cfg,
                           {"locate": t_locate, "optimise": time.perf_counter() - t, "total": time.perf_counter() - t0})


__all__ = ["DiffusionDisguise", "DiffusionConfig", "DiffusionResult", "DiffusedFace", "EditProblem", "Schedule",
           "disguise", "why_not_offered", "missing_weights", "WEIGHTS",
           "load_ddpm", "ddim_step", "alphas_cumprod", "gpu_duration", "LOSS_TERMS",
           "ESTIMATED_GPU_SECONDS_PER_STEP", "ESTIMATED_GPU_SECONDS_FIXED"]
