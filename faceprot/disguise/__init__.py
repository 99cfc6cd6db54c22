"""The emotion disguise (MAP, FACTS.md section 7): edit a face's expression so that face recognition
no longer matches it. The diffusion engine is not built yet; what exists is one of its optimisation
pieces:

* :mod:`.projection`: :class:`GradientProjector`, which combines the identity and expression
  gradients (sum, PCGrad or GradVac) so that neither objective undoes the other.
"""

from .projection import GradientProjector, ProjectionRecord, project_conflicting, vaccinate

__all__ = ["GradientProjector", "ProjectionRecord", "project_conflicting", "vaccinate"]
