"""Errors that carry a message meant for the person using the app."""

from __future__ import annotations


class UserFacingError(Exception):
    """An expected failure with a plain-language message that the UI may show as is.

    ``key`` names the message in the UI's translation table (app/i18n); ``params``
    fill its placeholders. ``message`` is the English text, used where no
    translation exists (CLI, API, logs).
    """

    def __init__(self, message: str, *, key: str = "error.generic", **params: object) -> None:
        super().__init__(message)
        self.message = message
        self.key = key
        self.params = params


class MediaError(UserFacingError):
    """An image or recording that cannot be used (unreadable, too large, empty...)."""


class ModelUnavailableError(UserFacingError):
    """Model weights that cannot be found or loaded."""


class GenerationError(UserFacingError):
    """The model failed while answering (out of memory, server gone...)."""
