"""User-facing errors.

Every error that a user can cause (a bad file, no face, a missing model, a broken mask file) is a
:class:`FaceprotError` whose message is written for a person, not a developer. The CLI prints the
message and exits with status 2; the app shows it with ``gr.Error``.
"""


class FaceprotError(Exception):
    """Base class: the message is meant to be shown to the user as it is."""


class ImageInputError(FaceprotError):
    """The input is not a readable, acceptable image."""


class NoFaceError(FaceprotError):
    """No usable face was found in a photo."""


class ModelUnavailableError(FaceprotError):
    """A model's weights are not available on this machine."""


class MaskFileError(FaceprotError):
    """A mask file is corrupt, foreign, or from an unsupported version."""
