"""The emotion disguise (MAP, FACTS.md section 7): edit a face's expression so that face recognition
no longer matches it. The diffusion engine is not built yet; what exists are its two optimisation
pieces:

* :mod:`.projection`: :class:`GradientProjector`, which combines the identity and expression
  gradients (sum, PCGrad or GradVac) so that neither objective undoes the other;
* :mod:`.smoothness`: the Laplacian smoothness term on the 68 landmarks, which keeps each facial
  contour's shape while the expression changes;

and the landmark measure that judges the edit without weights, :mod:`.measure`: expression
features from dlib's 68 points and a verdict per emotion against the person's clean photo.
"""

from .smoothness import CONTOURS, laplacian, laplacian_loss
from .projection import GradientProjector, ProjectionRecord, project_conflicting, vaccinate
from .measure import EMOTION_RULES, expression_change, expression_features, landmark_verdict, photo_landmarks

__all__ = ["GradientProjector", "ProjectionRecord", "project_conflicting", "vaccinate",
           "CONTOURS", "laplacian", "laplacian_loss",
           "EMOTION_RULES", "expression_features", "expression_change", "landmark_verdict", "photo_landmarks"]
