"""Arc2Face view generator: new photos of one identity, from its ArcFace embedding.

FaceCloak optimises its universal mask over the real photo plus 8 synthetic views of the same
person made by Arc2Face (FACTS.md section 6: 25 steps, guidance 3.0, 512x512). This module makes
those views. It runs in stages, in the order they happen:

1. load (once per process per device/dtype): the Arc2Face UNet and ID encoder (a CLIP text
   encoder) from ``FoivosPar/Arc2Face``, and the VAE, CLIP tokenizer and scheduler config from
   Stable Diffusion 1.5, all through :mod:`faceprot.registry`;
2. condition: the L2-normalised ID embedding, zero-padded to the encoder's width, takes the place
   of the token embedding of "id" in the prompt "photo of a id person", and the CLIP text
   transformer turns that into the UNet's cross-attention context (FACTS.md section 5);
3. denoise with DPM-Solver++ (Arc2Face's choice) under classifier-free guidance, where the
   unconditional branch is the encoder's own encoding of the empty prompt;
4. decode with the VAE to RGB uint8 images.

The weights are Hub-only; no machine here can run the real model. The tests build a tiny model of
the same classes, in the same file layout, and load it through this same path.
"""

from __future__ import annotations

import functools
import threading
from typing import Callable

import numpy as np
import torch

from .. import registry

# Arc2Face's conditioning prompt and the word whose token embedding carries the identity.
ID_PROMPT = "photo of a id person"
ID_WORD = "id"

# FaceCloak's view settings (FACTS.md section 6), also Arc2Face's demo defaults.
DEFAULT_VIEWS = 8
DEFAULT_STEPS = 25
DEFAULT_GUIDANCE = 3.0


def device_dtype(
    device: str | torch.device | None = None, dtype: torch.dtype | None = None,
) -> tuple[torch.device, torch.dtype]:
    """Fill in the defaults: CUDA in float16 where there is a GPU (as Arc2Face runs it), else CPU
    in float32 (float16 on a CPU is slow and misses kernels). An explicit device without a dtype
    gets float16 on CUDA, float32 elsewhere.
    """
    dev = torch.device(device) if device is not None else torch.device(
        "cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:
        dtype = torch.float16 if dev.type == "cuda" else torch.float32
    return dev, dtype


class Arc2FaceGenerator:
    """Arc2Face as a diffusers ``StableDiffusionPipeline``, conditioned on an ArcFace embedding.

    Args:
        device: where to run; default CUDA if available, else CPU.
        dtype: weights and activations; default float16 on CUDA, float32 on CPU.

    Raises:
        ModelUnavailableError: a weight file of ``arc2face`` or ``sd15`` is not on this machine
            (the registry's message names it and says how to provide it).

    Use :func:`load_arc2face` to share one loaded generator per process.
    """

    def __init__(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None):
        device, dtype = device_dtype(device, dtype)
        self.device, self.dtype = device, dtype

        # Resolve every file first, so that a missing one fails in milliseconds with the
        # registry's message, before the heavy imports and loads.
        arc2face_root = registry.resolve_dir("arc2face")
        sd15_root = registry.resolve_dir("sd15")

        from diffusers import (
            AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel,
        )
        from transformers import CLIPTextModel, CLIPTokenizer

        unet = UNet2DConditionModel.from_pretrained(arc2face_root / "arc2face", torch_dtype=dtype)
        # The real encoder/pytorch_model.bin holds a CLIPTextModel state dict saved by
        # transformers 4.x ("text_model." key prefix); transformers 5 maps that prefix away on load.
        encoder = CLIPTextModel.from_pretrained(arc2face_root / "encoder", dtype=dtype)
        vae = AutoencoderKL.from_pretrained(sd15_root / "vae", torch_dtype=dtype)
        tokenizer = CLIPTokenizer.from_pretrained(sd15_root / "tokenizer")
        # Arc2Face swaps SD1.5's PNDM for DPM-Solver++ built from the same scheduler config.
        scheduler = DPMSolverMultistepScheduler.from_pretrained(sd15_root / "scheduler")

        self.pipeline = StableDiffusionPipeline(
            vae=vae, text_encoder=encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        ).to(self.device)
        self.pipeline.set_progress_bar_config(disable=True)  # progress goes through `progress`

        ids = tokenizer.encode(ID_WORD, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"The tokenizer splits {ID_WORD!r} into {len(ids)} tokens; Arc2Face needs one.")
        self.id_token = ids[0]
        # (1, L) token ids of the prompt, padded to the tokenizer's length (77 for CLIP), as the
        # pipeline pads the empty negative prompt.
        self.prompt_ids = tokenizer(
            ID_PROMPT, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
            return_tensors="pt",
        ).input_ids.to(self.device)
        if int((self.prompt_ids == self.id_token).sum()) != 1:
            raise ValueError(f"The token of {ID_WORD!r} must occur once in {ID_PROMPT!r}.")

        # The pipeline and its multistep scheduler keep state during a call: one call at a time.
        self._lock = threading.Lock()

    @property
    def encoder(self):
        """The Arc2Face ID encoder (a transformers ``CLIPTextModel``)."""
        return self.pipeline.text_encoder

    @property
    def hidden_size(self) -> int:
        """Width of the encoder's token embeddings (768 for the real model)."""
        return int(self.encoder.config.hidden_size)

    @property
    def default_size(self) -> int:
        """Default image side in pixels: the UNet's latent size times the VAE's factor (512 for SD1.5)."""
        return int(self.pipeline.unet.config.sample_size) * int(self.pipeline.vae_scale_factor)

    def encode_tokens(self, input_ids: torch.Tensor, token_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """The CLIP text transformer on given token embeddings.

        Args:
            input_ids: (B, L) int64 token ids; they set the sequence length and, when
                ``token_embeds`` is None, the token embeddings.
            token_embeds: (B, L, H) token embeddings that replace the lookup of ``input_ids``.

        Returns:
            (B, L, H) last hidden state after the final layer norm: the same as
            ``encoder(input_ids).last_hidden_state`` when ``token_embeds`` is None.

        transformers 5's ``CLIPTextModel.forward`` takes no ``inputs_embeds``, so this runs its
        stages by hand: embeddings (token + position), the causal mask for the configured attention
        implementation, the encoder layers with ``is_causal=True``, the final layer norm.
        """
        from transformers.masking_utils import create_causal_mask

        enc = self.encoder
        hidden = enc.embeddings(input_ids=input_ids, inputs_embeds=token_embeds)
        # CLIP's text transformer is causal, and SD1.5 uses no padding mask: every position attends
        # to the ones before it, padding included.
        mask = create_causal_mask(config=enc.config, inputs_embeds=hidden, attention_mask=None, past_key_values=None)
        hidden = enc.encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state
        return enc.final_layer_norm(hidden)

    def prompt_embeds(self, id_embedding: torch.Tensor | np.ndarray) -> torch.Tensor:
        """ID embedding(s) -> Arc2Face's cross-attention context.

        Args:
            id_embedding: (D,) or (B, D) raw ArcFace embedding(s), any scale (D = 512 for ArcFace;
                at most the encoder's hidden size).

        Returns:
            (B, L, H) prompt embeddings in the pipeline's dtype, on its device (L = 77, H = 768 for
            the real model).

        Raises:
            ValueError: the embedding is longer than the encoder's width, zero, or not finite.
        """
        emb = id_embedding if torch.is_tensor(id_embedding) else torch.as_tensor(np.asarray(id_embedding))
        # Normalise in float32 and cast once at the end: float16 norms of 512 values lose digits.
        emb = emb.detach().to(device=self.device, dtype=torch.float32)
        if emb.ndim == 1:
            emb = emb[None]
        if emb.ndim != 2:
            raise ValueError(f"ID embedding must be (D,) or (B, D), got shape {tuple(emb.shape)}.")
        if emb.shape[1] > self.hidden_size:
            raise ValueError(
                f"ID embedding has {emb.shape[1]} values but the Arc2Face encoder's tokens have "
                f"{self.hidden_size}; it cannot be placed in a token."
            )
        norms = emb.norm(dim=1, keepdim=True)
        if not torch.isfinite(emb).all() or bool((norms == 0).any()):
            raise ValueError("ID embedding must be finite and non-zero.")
        # Arc2Face was trained on unit-norm ArcFace embeddings, zero-padded to the token width.
        emb = torch.nn.functional.pad(emb / norms, (0, self.hidden_size - emb.shape[1]))

        ids = self.prompt_ids.expand(emb.shape[0], -1)
        with torch.inference_mode():
            tokens = self.encoder.embeddings.token_embedding(ids)
            tokens[ids == self.id_token] = emb.to(tokens.dtype)
            return self.encode_tokens(ids, tokens)

    def generate(
        self,
        id_embedding: torch.Tensor | np.ndarray,
        n: int = DEFAULT_VIEWS,
        steps: int = DEFAULT_STEPS,
        guidance: float = DEFAULT_GUIDANCE,
        seed: int = 0,
        size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[np.ndarray]:
        """n new images of the identity in ``id_embedding``.

        Args:
            id_embedding: (D,) or (1, D) raw ArcFace embedding of one identity (e.g. from
                ``load_surrogate("arcface-r100")`` on a canonical face); it is L2-normalised here.
            n: number of images.
            steps: denoising steps (DPM-Solver++).
            guidance: classifier-free guidance scale (<= 1 turns guidance off).
            seed: the same seed gives the same images.
            size: image side in pixels, a multiple of 8; default :attr:`default_size` (512).
            progress: called as ``progress(done, steps)`` after each denoising step.

        Returns:
            n RGB uint8 arrays of shape (size, size, 3).
        """
        if n < 1 or steps < 1:
            raise ValueError("n and steps must be at least 1.")
        embeds = self.prompt_embeds(id_embedding)
        if embeds.shape[0] != 1:
            raise ValueError("generate takes the embedding of one identity.")
        size = int(size or self.default_size)
        # A CPU generator draws the same starting noise on any device, so a seed means the same
        # views on the GPU Space as on a CPU.
        generator = torch.Generator(device="cpu").manual_seed(int(seed))

        def on_step_end(pipe, i, t, tensors):
            if progress is not None:
                progress(i + 1, steps)
            return tensors

        with self._lock, torch.inference_mode():
            out = self.pipeline(
                prompt_embeds=embeds, num_inference_steps=steps, guidance_scale=guidance,
                num_images_per_prompt=n, height=size, width=size, generator=generator,
                output_type="np", callback_on_step_end=on_step_end,
            )
        images = np.asarray(out.images)  # (n, size, size, 3) float in [0, 1]
        return [np.round(im * 255.0).clip(0, 255).astype(np.uint8) for im in images]


@functools.lru_cache(maxsize=None)
def _load_cached(device: str, dtype: torch.dtype) -> Arc2FaceGenerator:
    return Arc2FaceGenerator(device=device, dtype=dtype)


def load_arc2face(device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> Arc2FaceGenerator:
    """The process's Arc2Face generator for ``device``/``dtype`` (defaults as :class:`Arc2FaceGenerator`).

    Loaded on first use (about 4 GB of weights for the real model) and shared after that.
    A failed load (ModelUnavailableError) is not cached: the next call tries again.
    """
    dev, dtype = device_dtype(device, dtype)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())  # "cuda" and "cuda:0" share one
    return _load_cached(str(dev), dtype)


load_arc2face.cache_clear = _load_cached.cache_clear  # type: ignore[attr-defined]
