"""The emotion disguise (MAP, FACTS.md section 7): edit a face's expression so that face recognition
no longer matches it. Neither engine is built yet; what exists are two optimisation pieces and the
warp engine's geometry:

* :mod:`.projection`: :class:`GradientProjector`, which combines the identity and expression
  gradients (sum, PCGrad or GradVac) so that neither objective undoes the other;
* :mod:`.smoothness`: the Laplacian smoothness term on the 68 landmarks, which keeps each facial
  contour's shape while the expression changes;
* :mod:`.warp`: a thin-plate spline warp of the canonical face driven by its 68 landmarks, its
  hard limits (landmark moves, no folding), hand-set expression templates, and
  :func:`~.warp.warp_photo`, the template warp of a photo without optimisation;

and the landmark measure that judges the edit without weights, :mod:`.measure`: expression
features from dlib's 68 points and a verdict per emotion against the person's clean photo.
"""

from .smoothness import CONTOURS, laplacian, laplacian_loss
from .projection import GradientProjector, ProjectionRecord, project_conflicting, vaccinate
from .measure import EMOTION_RULES, expression_change, expression_features, landmark_verdict, photo_landmarks
from .warp import EMOTIONS, limit_displacements, template_displacements, warp_face, warp_photo

__all__ = ["GradientProjector", "ProjectionRecord", "project_conflicting", "vaccinate",
           "CONTOURS", "laplacian", "laplacian_loss",
           "EMOTION_RULES", "expression_features", "expression_change", "landmark_verdict", "photo_landmarks",
           "EMOTIONS", "limit_displacements", "template_displacements", "warp_face", "warp_photo"]
