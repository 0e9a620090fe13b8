"""Conversations as files: Markdown and JSON to download, and back into a Conversation after a reload.

JSON embeds images (and, in downloads, recordings) as base64. One self-contained file is what a
person expects from "download", and it is the only form that survives a server restart when the
page keeps the conversation in the browser (gr.BrowserState): a reference to a file in the
server's temp folder would point at nothing once the server is back. Base64 costs a third more
bytes, so the copy kept in the browser shrinks pictures first (``for_browser``) and leaves
recordings out (their transcript stays).

Everything read back is untrusted: it came from a browser. Text is cleaned and bounded, images
are decoded and checked by backend.media and written under names of our own, unknown fields are
ignored, and anything unusable is dropped rather than raised.
"""

from __future__ import annotations

import base64
import binascii
import io
import itertools
import json
import logging
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from backend import media
from backend.conversation.turns import Conversation, Turn, TurnStatus
from backend.errors import MediaError, UserFacingError
from backend.language import decide, detect, tags

log = logging.getLogger(__name__)

FORMAT = "omnilingo.conversation"
VERSION = 1
# What a restore accepts at most (a browser can send anything).
MAX_TURNS = 500
MAX_TEXT_CHARS = 100_000
MAX_IMAGES_PER_TURN = 16
# Pictures kept in the browser are shrunk to this many pixels on their long side.
BROWSER_IMAGE_SIDE = 768
FINISHED = {TurnStatus.DONE, TurnStatus.STOPPED, TurnStatus.INTERRUPTED, TurnStatus.ERROR, TurnStatus.NO_SPEECH}
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
         ".bmp": "image/bmp", ".tif": "image/tiff", ".wav": "audio/wav"}


# --------------------------------------------------------------------------- export


def _encode_file(path: str | Path) -> dict[str, str] | None:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError:
        log.warning("a file of the conversation is gone: %s", path.name)
        return None
    return {"name": path.name, "mime": _MIME.get(path.suffix.lower(), "application/octet-stream"),
            "data": base64.b64encode(data).decode("ascii")}


def _shrunk_image(path: str | Path, side: int) -> dict[str, str] | None:
    try:
        image = media.load_image(path)
    except MediaError:
        return None
    image.thumbnail((side, side))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return {"name": Path(path).stem + ".jpg", "mime": "image/jpeg",
            "data": base64.b64encode(buffer.getvalue()).decode("ascii")}


def _turn_dict(turn: Turn, *, audio: bool, image_side: int | None) -> dict[str, Any]:
    guess = turn.language
    images = [_shrunk_image(p, image_side) if image_side else _encode_file(p) for p in turn.image_paths]
    data: dict[str, Any] = {
        "id": turn.id,
        "text": turn.text,
        "transcript": turn.transcript,
        "language": {"tag": guess.tag, "name": guess.name, "autonym": guess.autonym,
                     "confidence": round(float(guess.confidence), 4)},
        "answer_language": turn.answer_language,
        "language_override": turn.language_override,
        "language_source": turn.language_source,
        "answer": turn.answer,
        # an answer cut by the reload is kept as far as it got
        "status": turn.status if turn.status in FINISHED else "stopped",
        "error": turn.error,
        "error_key": turn.error_key,
        "notes": list(turn.notes),
        "images": [i for i in images if i is not None],
    }
    if audio and turn.audio_path:
        data["audio"] = _encode_file(turn.audio_path)
    return data


def to_dict(conversation: Conversation, *, audio: bool = True, image_side: int | None = None) -> dict[str, Any]:
    """The whole conversation as plain data; images embedded as base64."""
    with conversation._lock:
        turns = list(conversation.turns)
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "turns": [_turn_dict(t, audio=audio, image_side=image_side) for t in turns],
    }


def to_json(conversation: Conversation, *, audio: bool = True) -> str:
    """The download: everything, with the images and recordings as they were sent."""
    return json.dumps(to_dict(conversation, audio=audio), ensure_ascii=False, indent=1)


def for_browser(conversation: Conversation) -> dict[str, Any]:
    """What the page keeps (gr.BrowserState): shrunk pictures, no recordings."""
    return to_dict(conversation, audio=False, image_side=BROWSER_IMAGE_SIDE)


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def to_markdown(conversation: Conversation, *, image_folder: str | None = None) -> str:
    """A readable transcript. Pictures are linked as ``image_folder/name`` (see ``to_zip``) or listed by name."""
    lines = ["# Omnilingo conversation", "",
             f"_Exported {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}_", ""]
    with conversation._lock:
        turns = list(conversation.turns)
    for turn in turns:
        guess = turn.language
        said = turn.text or turn.transcript or ""
        heading = "You"
        if guess.known:
            heading += f" ({guess.name}, {guess.tag})"
        lines += [f"## {heading}", ""]
        if turn.transcript and turn.text:
            lines += [said, "", "Spoken:", "", _quote(turn.transcript), ""]
        elif turn.transcript:
            lines += ["Spoken:", "", _quote(turn.transcript), ""]
        elif said:
            lines += [said, ""]
        for path in turn.image_paths:
            name = Path(path).name
            lines += [f"![{name}]({image_folder}/{name})" if image_folder else f"[image: {name}]", ""]
        answer_language = tags.language_name(turn.answer_language) if turn.answer_language != "und" else ""
        lines += ["### Omnilingo" + (f" ({answer_language})" if answer_language else ""), ""]
        if turn.answer:
            lines += [turn.answer, ""]
        if turn.status == "error" and turn.error:
            lines += [f"_No answer: {turn.error}_", ""]
        elif turn.status == "no_speech":
            lines += ["_Nothing was heard in the recording._", ""]
        elif turn.status in {"stopped", "interrupted"}:
            lines += [f"_The answer was {turn.status}._", ""]
    return "\n".join(lines).rstrip() + "\n"


def to_zip(conversation: Conversation) -> bytes:
    """conversation.md with its pictures under images/, and the self-contained conversation.json."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("conversation.md", to_markdown(conversation, image_folder="images"))
        bundle.writestr("conversation.json", to_json(conversation))
        with conversation._lock:
            paths = [p for t in conversation.turns for p in t.image_paths]
        for path in paths:
            try:
                bundle.write(path, f"images/{Path(path).name}")
            except OSError:
                log.warning("a picture of the conversation is gone: %s", Path(path).name)
    return buffer.getvalue()


def write_downloads(conversation: Conversation, folder: Path | None = None) -> tuple[Path, Path]:
    """The Markdown+pictures zip and the JSON, as files in the session's folder (for gr.DownloadButton)."""
    folder = Path(folder or conversation.session_dir)
    folder.mkdir(parents=True, exist_ok=True)
    zipped = folder / "omnilingo-conversation.zip"
    zipped.write_bytes(to_zip(conversation))
    plain = folder / "omnilingo-conversation.json"
    plain.write_text(to_json(conversation), encoding="utf-8")
    return zipped, plain


# --------------------------------------------------------------------------- import


def _clean(value: Any, limit: int = MAX_TEXT_CHARS) -> str:
    if not isinstance(value, str):
        return ""
    return _CONTROL_RE.sub("", value)[:limit].strip()


def _guess(data: Any) -> detect.LanguageGuess:
    data = data if isinstance(data, dict) else {}
    tag = tags.normalize_tag(_clean(data.get("tag"), 35) or tags.UNKNOWN)
    try:
        confidence = min(1.0, max(0.0, float(data.get("confidence", 0.0))))
    except (TypeError, ValueError):
        confidence = 0.0
    return detect.LanguageGuess(tag=tag, name=tags.language_name(tag), autonym=tags.autonym(tag),
                                   confidence=confidence)


def _decode(item: Any, limit: int) -> bytes | None:
    if not isinstance(item, dict) or not isinstance(item.get("data"), str):
        return None
    if len(item["data"]) > limit * 4 // 3 + 4:
        return None
    try:
        return base64.b64decode(item["data"], validate=True)
    except (binascii.Error, ValueError):
        return None


def _restore_image(conversation: Conversation, item: Any, number: int) -> str | None:
    """Write an embedded image under a name of ours, after media has checked it."""
    data = _decode(item, conversation.limits.max_file_bytes)
    if not data:
        return None
    staging = conversation.session_dir / f"restore-{number:04d}.part"
    staging.write_bytes(data)
    try:
        media.load_image(staging, conversation.limits)
        target = conversation.session_dir / f"image-{number:04d}{media.image_suffix(staging)}"
        staging.replace(target)
        return str(target)
    except MediaError as err:
        log.warning("a restored picture was dropped: %s", err.key)
        return None
    finally:
        staging.unlink(missing_ok=True)


def _restore_audio(conversation: Conversation, item: Any, number: int) -> str | None:
    import soundfile as sf

    data = _decode(item, conversation.limits.max_file_bytes)
    if not data:
        return None
    try:
        clip = media.load_audio(data, conversation.limits)
    except MediaError as err:
        log.warning("a restored recording was dropped: %s", err.key)
        return None
    target = conversation.session_dir / f"audio-{number:04d}.wav"
    sf.write(target, clip.samples, clip.sample_rate, subtype="PCM_16")
    return str(target)


def parse(payload: str | bytes | dict | None) -> dict[str, Any]:
    """A stored or uploaded conversation as a dict; raises UserFacingError when it is not one."""
    if payload is None or payload == "":
        return {"format": FORMAT, "version": VERSION, "turns": []}
    if isinstance(payload, (str, bytes)):
        try:
            payload = json.loads(payload)
        except (ValueError, RecursionError) as err:
            raise UserFacingError("This file is not a saved Omnilingo conversation.",
                                  key="transcript.invalid") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or not isinstance(payload.get("turns"), list):
        raise UserFacingError("This file is not a saved Omnilingo conversation.", key="transcript.invalid")
    if not isinstance(payload.get("version"), int) or payload["version"] > VERSION:
        raise UserFacingError("This conversation was saved by a newer Omnilingo.", key="transcript.newer")
    return payload


def restore(conversation: Conversation, payload: str | bytes | dict | None) -> int:
    """Rebuild ``conversation``'s turns from ``payload`` (replacing what it held); returns the turn count.

    Meant for a page reload: the browser sends back what ``for_browser`` gave it."""
    data = parse(payload)
    conversation.clear()
    turns: list[Turn] = []
    file_number = 0
    for raw in data["turns"][:MAX_TURNS]:
        if not isinstance(raw, dict):
            continue
        text = _clean(raw.get("text"))
        transcript = raw.get("transcript")
        transcript = _clean(transcript) if isinstance(transcript, str) else None
        images = []
        for item in (raw.get("images") or [])[:MAX_IMAGES_PER_TURN]:
            file_number += 1
            path = _restore_image(conversation, item, file_number)
            if path:
                images.append(path)
        audio_path = None
        if raw.get("audio"):
            file_number += 1
            audio_path = _restore_audio(conversation, raw["audio"], file_number)
        if not (text or transcript or images or audio_path):
            continue
        status = TurnStatus(raw["status"]) if raw.get("status") in FINISHED else TurnStatus.STOPPED
        override = _clean(raw.get("language_override"), 35) or "auto"
        answer_language = tags.normalize_tag(_clean(raw.get("answer_language"), 35) or tags.UNKNOWN)
        source = raw.get("language_source")
        source = source if source in decide.SOURCES else decide.DETECTED
        notes = [n for n in (raw.get("notes") or []) if isinstance(n, str) and len(n) < 64][:16]
        error = _clean(raw.get("error"), 2000) or None
        error_key = _clean(raw.get("error_key"), 64) or None
        turns.append(Turn(
            id=len(turns) + 1, text=text, language=_guess(raw.get("language")), answer_language=answer_language,
            language_override=override if override == "auto" else tags.normalize_tag(override),
            language_source=source, image_paths=images, audio_path=audio_path, transcript=transcript, answer=_clean(raw.get("answer")),
            status=status, error=error if status == "error" else None,
            error_key=error_key if status in {"error", "no_speech"} else None, notes=notes,
        ))
    with conversation._lock:
        conversation.turns = turns
        conversation._ids = itertools.count(len(turns) + 1)
        conversation._file_ids = itertools.count(file_number + 1)
    return len(turns)
