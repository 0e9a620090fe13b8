"""Turns a conversation into the chat view's messages. Pure functions, easy to test."""

from __future__ import annotations

import base64
import html
import itertools
import re
import time
from typing import Any

from app.i18n import translate, translate_error
from backend.conversation.turns import Conversation, Turn
from backend.errors import UserFacingError
from backend.language import scripts, tags
from backend.models.tts import AudioChunk


def language_badge(turn: Turn, locale: str = "en") -> str:
    """The answer language and where it came from: "español (Spanish) · es · your browser's language"."""
    source = translate(f"language.source.{turn.language_source}", locale)
    tag = turn.answer_language
    if tag == tags.UNKNOWN:
        return source
    # The language's own name: a reader recognises "français" or "日本語" whatever the UI
    # language; then its name in the UI's language ("français (Französisch)").
    own, local = tags.autonym(tag), tags.display_name(tag, locale)
    name = own or local
    if own and own.casefold() != local.casefold():
        name = f"{own} ({local})"
    if turn.language_source == "detected" and turn.language.tag == tag:
        shown = translate("turn.detected", locale, name=name, tag=tag,
                          confidence=round(turn.language.confidence * 100))
    else:
        shown = translate("turn.language", locale, name=name, tag=tag)
    return f"{shown} · {source}"


def badge_html(turn: Turn, locale: str = "en") -> str:
    """The badge, with a link to the language picker one click away."""
    change = translate("language.change", locale)
    return (f'<span class="lang-badge">{html.escape(language_badge(turn, locale))}</span> '
            f'<a class="lang-change" href="#language">{html.escape(change)}</a>')


# Fenced blocks and inline code spans: Markdown shows them literally, so they need no escaping.
_CODE = re.compile(r"(```.*?(?:```|$)|`[^`\n]*`)", re.DOTALL)


def inert_markdown(text: str) -> str:
    """Markdown stays Markdown, raw HTML is shown as text (never run), code is left as typed."""
    parts = _CODE.split(text)
    return "".join(part if i % 2 else html.escape(part, quote=False) for i, part in enumerate(parts))


def _text_block(text: str, tag: str) -> str:
    """User or model text in its own writing direction."""
    direction = "rtl" if scripts.is_rtl(tag) else "auto"
    return f'<div dir="{direction}">\n\n{inert_markdown(text)}\n\n</div>'


def user_message(turn: Turn, locale: str = "en") -> dict:
    content: list = []
    shown = turn.text or turn.transcript or ""
    if turn.video_path and turn.transcript:
        # what the video says, under what was typed with it
        shown = (f"{turn.text}\n\n" if turn.text else "") + f"🎬 {turn.transcript}"
    badge = badge_html(turn, locale)
    content.append(_text_block(shown, turn.language.tag) + "\n\n" + badge if shown else badge)
    for path in turn.image_paths:
        content.append({"path": path})
    if turn.video_path:
        content.append({"path": turn.video_path})  # its sound track plays in the video
    elif turn.audio_path:
        content.append({"path": turn.audio_path})
    return {"role": "user", "content": content}


def error_text(turn: Turn, locale: str = "en") -> str:
    """The turn's error in the reader's language; its English message when no translation fits."""
    params = getattr(turn, "error_params", None) or {}
    return translate_error(UserFacingError(turn.error or "", key=turn.error_key or "", **params), locale)


def assistant_message(turn: Turn, locale: str = "en", can_speak: bool = False) -> dict | None:
    notes: list[str] = []
    if turn.status == "stopped":
        notes.append(translate("turn.stopped", locale))
    elif turn.status == "interrupted":
        notes.append(translate("turn.interrupted", locale))
    elif turn.status == "error":
        notes.append(translate("turn.error", locale, message=error_text(turn, locale)))
    elif turn.status == "no_speech":
        notes.append(translate("turn.no_speech", locale))
    if "heard_by_model_only" in turn.notes:
        notes.append(translate("turn.heard_by_model_only", locale))
    if "voice_fallback" in turn.notes:
        notes.append(translate("turn.voice_fallback", locale))
    if "voice_noncommercial" in turn.notes:
        notes.append(translate("turn.voice_noncommercial", locale))
    if "tts.no_voice" in turn.notes:
        notes.append(translate("turn.no_voice", locale))
    elif any(note.startswith("tts.") for note in turn.notes):
        notes.append(translate("turn.speech_failed", locale))
    if "history_shortened" in turn.notes:
        notes.append(translate("turn.history_shortened", locale))
    options = []
    if turn.status == "done" and turn.language_mismatch and turn.answer_guess is not None:
        wanted = tags.display_name(turn.answer_language, locale)
        notes.append(translate(
            "turn.mismatch", locale, answer_language=tags.display_name(turn.answer_guess.tag, locale),
            language=wanted,
        ))
        options.append({"value": f"retry:{turn.id}", "label": translate("button.retry", locale, language=wanted)})
    if can_speak and turn.answer and turn.status in {"done", "stopped", "interrupted"}:
        options.append({"value": f"listen:{turn.id}", "label": translate("button.listen", locale)})
    if not turn.answer and not notes and turn.status in {"pending", "streaming"}:
        return {"role": "assistant", "content": "…"}
    parts = []
    if turn.answer:
        parts.append(_text_block(turn.answer, turn.answer_language))
    parts.extend(f'<span class="turn-note">{html.escape(note)}</span>' for note in notes)
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(parts)}
    if options:
        message["options"] = options
    return message


def chat_messages(conversation: Conversation, locale: str = "en", can_speak: bool = False) -> list[dict]:
    messages: list[dict] = []
    for turn in conversation.turns:
        messages.append(user_message(turn, locale))
        reply = assistant_message(turn, locale, can_speak)
        if reply is not None:
            messages.append(reply)
    return messages


class PlayerFeed:
    """What the page's answer player (assets/answer_player.js) is handed: one id per answer and the
    WAV of each sentence so far. Every update carries them all, so a change the page misses loses
    nothing; only the new one travels (Gradio sends streamed values as diffs)."""

    # Later ids win in the page; starting from the clock keeps them growing across a restart.
    _ids = itertools.count(int(time.time() * 1000))

    def __init__(self) -> None:
        self.id = next(self._ids)
        self._chunks: list[dict[str, Any]] = []

    def add(self, audio: AudioChunk) -> dict[str, Any]:
        wav = base64.b64encode(audio.wav_bytes()).decode("ascii")
        self._chunks.append({"seq": len(self._chunks), "wav": wav})
        return {"id": self.id, "chunks": list(self._chunks), "done": False}

    def finish(self) -> dict[str, Any] | None:
        """The last update: no more sentences will come (None when nothing was spoken)."""
        return {"id": self.id, "chunks": list(self._chunks), "done": True} if self._chunks else None
