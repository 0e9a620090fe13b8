"""Hugging Face Space entry point: Spaces run ``python app.py`` from the repository root.

It starts the same app as ``python -m app``, with the defaults a Space needs: listen
on 0.0.0.0 (unless GRADIO_SERVER_NAME / OMNILINGO_HOST say otherwise), no browser
to open. Settings still come from flags and environment variables (Space variables
and secrets arrive as environment variables).
"""

from __future__ import annotations

import os
import sys

from backend.models import zerogpu

# ZeroGPU: `spaces` must be imported before anything initializes CUDA.
zerogpu.prepare()

from app.cli import main  # noqa: E402  (after zerogpu.prepare on purpose)


def on_space(environ: dict[str, str] | None = None) -> bool:
    return bool((os.environ if environ is None else environ).get("SPACE_ID"))


def space_argv(argv: list[str], environ: dict[str, str] | None = None) -> list[str]:
    """Arguments for ``app.cli.main``: on a Space, never open a browser and listen on all interfaces."""
    environ = os.environ if environ is None else environ
    if not on_space(environ):
        return argv
    extra = ["--no-browser"]
    if not any(environ.get(name) for name in ("OMNILINGO_HOST", "GRADIO_SERVER_NAME")) and "--host" not in argv:
        # The Space's proxy reaches the app from outside its container.
        extra += ["--host", "0.0.0.0"]  # noqa: S104  # nosec B104
    return extra + argv


if __name__ == "__main__":
    sys.exit(main(space_argv(sys.argv[1:])))
