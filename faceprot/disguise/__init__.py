"""The emotion disguise (MAP, FACTS.md section 7): edit a face's expression so that face recognition
no longer matches it. The warp engine, :func:`~.engine.disguise`, runs end to end on the CPU; it is
made of two optimisation pieces and the warp's geometry:

* :mod:`.projection`: :class:`GradientProjector`, which combines the identity and expression
  gradients (sum, PCGrad or GradVac) so that neither objective undoes the other;
* :mod:`.smoothness`: the Laplacian smoothness term on the 68 landmarks, which keeps each facial
  contour's shape while the expression changes;
* :mod:`.warp`: a thin-plate spline warp of the canonical face driven by its 68 landmarks, its
  hard limits (landmark moves, no folding), hand-set expression templates, and
  :func:`~.warp.warp_photo`, the template warp of a photo without optimisation;

:mod:`.engine` puts them together: the emotion's expression space (a few landmark directions),
:class:`~.engine.EmotionDisguise` (the dual-objective loop on one canonical face) and
:func:`~.engine.disguise` (photo in, :class:`~.engine.DisguiseResult` out). And the landmark
measure that judges the edit without weights, :mod:`.measure`: expression features from dlib's 68
points and a verdict per emotion against the person's clean photo.

The diffusion engine, :func:`.diffusion.disguise` (for a GPU), edits the face through a CelebA-HQ
DDPM instead: :mod:`.framing` maps the canonical square to the model's framing and back,
:mod:`.landmarks3d` gives differentiable landmarks, and :mod:`.diffusion` holds the DDIM inversion,
the optimisation of the generative steps' offsets and the pipeline. It shares the projection, the
smoothness term and the expression templates with the warp engine. Import it from its module:
it is not loaded with the package.
"""

from .smoothness import CONTOURS, laplacian, laplacian_loss
from .projection import GradientProjector, ProjectionRecord, project_conflicting, vaccinate
from .measure import EMOTION_RULES, expression_change, expression_features, landmark_verdict, photo_landmarks
from .warp import EMOTIONS, limit_displacements, template_displacements, warp_face, warp_photo
from .engine import (DisguiseConfig, DisguiseResult, EmotionDisguise, EmotionError, FaceDisguise, LandmarkError,
                     OFFERED, STRENGTHS, disguise, expression_basis)

__all__ = ["GradientProjector", "ProjectionRecord", "project_conflicting", "vaccinate",
           "CONTOURS", "laplacian", "laplacian_loss",
           "EMOTION_RULES", "expression_features", "expression_change", "landmark_verdict", "photo_landmarks",
           "EMOTIONS", "limit_displacements", "template_displacements", "warp_face", "warp_photo",
           "disguise", "DisguiseResult", "FaceDisguise", "EmotionDisguise", "DisguiseConfig", "expression_basis",
           "OFFERED", "STRENGTHS", "EmotionError", "LandmarkError"]
