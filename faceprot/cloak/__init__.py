"""The personal cloak (FaceCloak): enroll once from a selfie, apply the mask to any photo.

    from faceprot.cloak import enroll, apply_mask, PersonalMask
    result = enroll("selfie.jpg", preset="medium", seed=0)
    result.mask.save("me.faceprot")
    protected = apply_mask("party.jpg", PersonalMask.load("me.faceprot"))
    open("party-protected.png", "wb").write(protected.png())
"""

from .apply import DEFAULT_REFINE, Protected, apply_mask
from .enroll import PRESETS, STRENGTHS, Enrollment, config_for, enroll
from .maskfile import MaskFileError, PersonalMask
from .optimizer import CloakConfig
from .perceptual import PerceptualBudget

__all__ = ["enroll", "apply_mask", "DEFAULT_REFINE", "PersonalMask", "MaskFileError", "Enrollment", "Protected",
           "PRESETS", "STRENGTHS", "CloakConfig", "PerceptualBudget", "config_for"]
