"""The conversation: history, the language of each turn, streaming answers, stop and barge-in.

A ``Conversation`` belongs to one browser session. Every answer runs inside a
``CancelScope`` (backend/cancel.py): Stop cancels it; a barge-in or a new turn cancels it
and opens the next generation, so any chunk that still carries an old generation (text
or audio) is thrown away wherever it surfaces.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend import media
from backend.cancel import CancelScope
from backend.errors import MediaError, ModelUnavailableError, UserFacingError
from backend.language import decide, detect, tags
from backend.media import video as video_media
from backend.models.engine import Engine, GenerationStats, PromptMessage

if TYPE_CHECKING:
    from backend.models.asr import Transcript

log = logging.getLogger(__name__)

# Images from earlier turns stay in the prompt so follow-up questions work, but
# each one costs hundreds of tokens: keep the most recent few.
MAX_IMAGES_IN_CONTEXT = 4
# Below this many letters an answer's language cannot be told reliably.
MIN_LETTERS_TO_JUDGE_LANGUAGE = 24
MIN_CONFIDENCE_TO_SWITCH = 0.5
# Told to a model that reads text only, when the user showed it pictures or a video.
BLIND_NOTE = "(The user also shared pictures or a video, which you cannot see; say so if it matters.)"
VIDEO_SOUND_NOTE = "(Said in the video:)"


# Far beyond any model's context; longer pastes are refused before any work is done on them.
MAX_MESSAGE_CHARS = 100_000
# C0/C1 control characters other than tab and newlines, and lone UTF-16 surrogates (a browser can
# send them; they cannot be encoded as UTF-8 and would break the tokenizer and the page).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_SURROGATE_RE = re.compile(r"[\ud800-\udfff]")
# Names people give recordings; a file that is neither an image nor audio gets the reason its
# name suggests (empty, a text file...), never more than that from the name.
_AUDIO_SUFFIXES = {".wav", ".wave", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".webm", ".aif",
                   ".aiff", ".wma", ".amr", ".3gp", ".caf"}


def clean_text(text: str | None) -> str:
    """The user's text without control characters or lone surrogates, stripped."""
    text = _SURROGATE_RE.sub("\ufffd", text or "")
    return _CONTROL_RE.sub("", text.replace("\r\n", "\n")).strip()


def unusable_file(path: str, limits: media.MediaLimits) -> MediaError:
    """The most specific reason a file is neither an image nor a recording we can read."""
    try:
        if Path(path).suffix.lower() in video_media.VIDEO_SUFFIXES:
            video_media.load_video(path, limits, max_frames=1)
        elif Path(path).suffix.lower() in _AUDIO_SUFFIXES:
            media.load_audio(path, limits)
        else:
            media.load_image(path, limits)
    except MediaError as err:
        if err.key not in {"media.not_an_image", "media.image_corrupt"}:
            return err
    return MediaError(
        "This file is neither an image, a recording nor a video Omnilingo can read.", key="media.unsupported_file",
    )


def cannot_see(engine: Engine) -> MediaError:
    """Pictures sent to a model that reads text only.

    The message is refused rather than answered from its text alone: a text model asked "what does
    this sign say?" would answer as if it had seen the sign. Refused, the message box keeps the text
    and the picture, so nothing is lost and the user chooses: send the text alone, or restart with a
    model that sees."""
    return MediaError(
        f"This model cannot read pictures: {engine.name} reads text only. Send your message without the "
        "picture, or start Omnilingo with a model that sees pictures (--model google/gemma-4-E2B-it).",
        key="media.model_cannot_see", model=engine.name,
    )


def system_prompt(language: str, firm: bool = False) -> str:
    if language == "und":
        return (
            "You are Omnilingo, a helpful assistant. Answer in the same language as the user's "
            "latest message. Be clear and concise. When the user shares images, look at them carefully."
        )
    name = tags.language_name(language)
    own = tags.autonym(language)
    label = name if own == name or not own else f"{name} ({own})"
    prompt = (
        f"You are Omnilingo, a helpful assistant. Answer in {label}, the language the user writes in, "
        f"unless they ask for another language. Be clear and concise. When the user shares images, "
        f"look at them carefully; describe or read them in {name}."
    )
    if firm:
        prompt += f" Your previous answer was not in {name}. Write your whole answer in {name} only."
    return prompt


class TurnStatus(StrEnum):
    """Where a turn stands; the values are what transcripts store and the page compares."""

    PENDING = "pending"
    STREAMING = "streaming"
    DONE = "done"
    STOPPED = "stopped"
    INTERRUPTED = "interrupted"
    ERROR = "error"
    NO_SPEECH = "no_speech"


class Note(StrEnum):
    """Remarks kept in ``turn.notes`` (speech failures add their error key, "tts.…", beside these)."""

    HISTORY_SHORTENED = "history_shortened"
    HEARD_BY_MODEL_ONLY = "heard_by_model_only"
    NO_VOICE = "tts.no_voice"
    # another voice than the chosen one spoke (backend.models.tts NOTE_FALLBACK / NOTE_NONCOMMERCIAL)
    VOICE_FALLBACK = "voice_fallback"
    VOICE_NONCOMMERCIAL = "voice_noncommercial"
    LANGUAGE_FROM_ANSWER = "language_from_answer"  # the answer settled a close call


@dataclass
class Turn:
    id: int
    text: str
    language: detect.LanguageGuess
    answer_language: str
    language_override: str = "auto"
    # Where answer_language came from (backend.language.decide.SOURCES), what the message's
    # evidence ranked (best first), and the priors it was weighed with.
    language_source: str = decide.DETECTED
    language_candidates: list[tuple[str, float]] = field(default_factory=list)
    priors: decide.Priors = field(default_factory=decide.Priors)
    image_paths: list[str] = field(default_factory=list)
    audio_path: str | None = None  # a recording, or a video's sound track
    video_path: str | None = None
    frame_paths: list[str] = field(default_factory=list)  # pictures taken from the video, in order
    frame_times: list[float] = field(default_factory=list)  # where in the video each was taken, seconds
    transcript: str | None = None
    answer: str = ""
    status: TurnStatus = TurnStatus.PENDING
    error: str | None = None
    error_key: str | None = None
    error_params: dict[str, Any] = field(default_factory=dict)
    answer_guess: detect.LanguageGuess | None = None
    generation: int = 0
    firm_language: bool = False
    notes: list[str] = field(default_factory=list)
    stats: GenerationStats = field(default_factory=GenerationStats)
    asr_s: float | None = None
    # Wall-clock (time.time()) of each stage the first time it is reached: the voice path's
    # latency as the log and bench/voice_browser.py see it (never shown in the page).
    timings: dict[str, float] = field(default_factory=dict)

    def mark(self, stage: str) -> None:
        self.timings.setdefault(stage, time.time())

    @property
    def prompt_text(self) -> str:
        """What the model reads: the typed text, the transcript of the recording (or video), or both."""
        transcript = self.transcript
        if transcript and self.video_path:
            transcript = f"{VIDEO_SOUND_NOTE} {transcript}"
        if transcript and self.text:
            return f"{self.text}\n\n{transcript}"
        return self.text or transcript or ""

    @property
    def frames_seen(self) -> int:
        return len(self.frame_paths)

    @property
    def language_mismatch(self) -> bool:
        """True when the answer is surely in another language than the one asked for."""
        guess = self.answer_guess
        if guess is None or not guess.known or self.answer_language == "und":
            return False
        if sum(ch.isalpha() for ch in self.answer) < MIN_LETTERS_TO_JUDGE_LANGUAGE:
            return False
        return tags.normalize_tag(guess.tag) != tags.normalize_tag(self.answer_language)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["language_mismatch"] = self.language_mismatch
        return data


def _better_transcript(candidate, current) -> bool:
    """Whether a second hearing is the better one: speech where the first heard none, else the
    higher of Whisper's average log-probability per token plus log P(speech)."""
    if candidate.no_speech or not candidate.text.strip():
        return False
    if current.no_speech or not current.text.strip():
        return True

    def score(heard) -> float | None:
        logprob = getattr(heard, "avg_logprob", None)
        if logprob is None:
            return None
        return logprob + math.log(max(1e-6, 1.0 - float(getattr(heard, "no_speech_probability", 0.0) or 0.0)))

    mine, theirs = score(candidate), score(current)
    return mine is not None and theirs is not None and mine > theirs


class Conversation:
    """One person's chat with the model."""

    def __init__(
        self,
        engine: Engine,
        session_dir: Path | None = None,
        limits: media.MediaLimits | None = None,
        max_new_tokens: int = 1024,
        asr=None,
        video_frames: int = 8,
    ) -> None:
        self.engine = engine
        self.video_frames = video_frames  # most frames the model sees of one video
        self.asr = asr  # backend.models.asr.SpeechRecognizer, or None when speech input is off
        self.limits = limits or media.MediaLimits()
        self.max_new_tokens = max_new_tokens
        self.session_dir = Path(session_dir or tempfile.mkdtemp(prefix="omnilingo-session-"))
        self.session_dir.mkdir(parents=True, exist_ok=True)
        self.turns: list[Turn] = []
        # The current answer's scope; the engine and the speaker are handed it.
        self.scope = CancelScope(0)
        self._ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._lock = threading.RLock()

    @property
    def generation(self) -> int:
        return self.scope.generation

    # -- preparing a turn ------------------------------------------------------------
    def _keep_image(self, source: str | Path) -> str:
        """Keep an uploaded image in this session's folder under a name of our own (never the user's),
        with its real format's extension."""
        target = self.session_dir / f"image-{next(self._file_ids):04d}{media.image_suffix(source)}"
        shutil.copyfile(source, target)
        return str(target)

    def _keep_recording(self, clip: media.AudioClip) -> str:
        """Keep a recording as the 16 kHz WAV the pipeline hears, so the chat can play it back
        whatever the browser recorded."""
        import soundfile as sf

        target = self.session_dir / f"audio-{next(self._file_ids):04d}.wav"
        sf.write(target, clip.samples, clip.sample_rate, subtype="PCM_16")
        return str(target)

    def _keep_video(self, source: str | Path, clip: video_media.VideoClip) -> tuple[str, list[str]]:
        """Keep a video (for the chat to play) and the frames the model sees of it, under names of our own."""
        number = next(self._file_ids)
        suffix = ".webm" if clip.source_format.startswith(("matroska", "webm")) else ".mp4"
        target = self.session_dir / f"video-{number:04d}{suffix}"
        shutil.copyfile(source, target)
        frames = []
        for index, frame in enumerate(clip.frames, 1):
            path = self.session_dir / f"video-{number:04d}-frame-{index:02d}.jpg"
            frame.save(path, quality=90)
            frames.append(str(path))
        return str(target), frames

    def _current_language(self) -> str:
        for turn in reversed(self.turns):
            if turn.answer_language != "und":
                return turn.answer_language
        return "und"

    def priors(self, override: str = "auto", browser: tuple[str, ...] | list[str] = ()) -> decide.Priors:
        """What the app knows before reading a message: the pinned language, the conversation's, the browser's."""
        pinned = tags.normalize_tag(override) if override and override != "auto" else None
        previous = self._current_language()
        return decide.Priors(pinned=pinned, conversation=None if previous == "und" else previous,
                             browser=tuple(browser))

    @staticmethod
    def _settle(turn: Turn, decision: decide.Decision, fallback: detect.LanguageGuess) -> None:
        """Record a decision on the turn; the message's language is the evidence's best named one."""
        turn.answer_language, turn.language_source = decision.tag, decision.source
        turn.language_candidates = [(str(t), float(p)) for t, p in decision.candidates]
        named = [(tag, p) for tag, p in decision.candidates if tag != tags.UNKNOWN]
        if named and not (fallback.known and fallback.tag == named[0][0]):
            tag, p = named[0]
            fallback = detect.LanguageGuess(tag, tags.language_name(tag), tags.autonym(tag), round(p, 3))
        turn.language = fallback

    def prepare(self, text: str, files: list[str] | None = None, language: str = "auto",
                browser: tuple[str, ...] | list[str] = ()) -> Turn:
        """Check a new message and its files; raise UserFacingError and change nothing if they are unusable."""
        text = clean_text(text)
        if len(text) > MAX_MESSAGE_CHARS:
            raise UserFacingError(
                "This message is too long for the model: shorten it or split it into parts.",
                key="error.too_long", tokens=None, limit=MAX_MESSAGE_CHARS,
            )
        images: list[str] = []
        audio: list[str] = []
        videos: list[str] = []
        for path in files or []:
            if media.is_image_file(path):
                images.append(path)
            elif video_media.is_video_file(path):
                videos.append(path)
            elif media.is_audio_file(path):
                audio.append(path)
            else:
                raise unusable_file(path, self.limits)
        if not text and not images and not audio and not videos:
            raise UserFacingError("Type a message, or add an image or a recording.", key="error.empty_message")
        if len(audio) + len(videos) > 1:
            raise MediaError("Send one recording or video at a time.", key="media.too_many_recordings")
        # Known once the model is loaded; a message sent during loading is checked again in answer().
        # A video is still heard by a model that reads text only: its transcript, with a note.
        if images and not getattr(self.engine, "accepts_images", True):
            raise cannot_see(self.engine)
        # Decode everything before keeping anything: a bad file loses nothing.
        media.load_images(images, self.limits)
        clip = media.load_audio(audio[0], self.limits) if audio else None
        film = None
        if videos:
            # The video's frames share the message's picture budget with the images sent beside it.
            budget = max(1, min(self.video_frames, self.limits.max_images_per_turn - len(images)))
            film = video_media.load_video(videos[0], self.limits, max_frames=budget)
            clip = film.audio
        guess = detect.detect(text)
        with self._lock:
            priors = self.priors(language, browser)
            turn = Turn(
                id=next(self._ids),
                text=text,
                language=guess,
                answer_language=tags.UNKNOWN,
                language_override=language or "auto",
                priors=priors,
                image_paths=[self._keep_image(p) for p in images],
                audio_path=self._keep_recording(clip) if clip is not None else None,
            )
            if film is not None:
                turn.video_path, turn.frame_paths = self._keep_video(videos[0], film)
                turn.frame_times = [round(t, 2) for t in film.times_s]
            self._settle(turn, decide.decide(text, priors), guess)
        return turn

    def add(self, turn: Turn) -> Turn:
        """Append a turn and open its generation: a barge-in from now on cancels it, even before it starts."""
        with self._lock:
            self.scope = self.scope.next()
            turn.generation = self.scope.generation
            self.turns.append(turn)
        return turn

    # -- prompting ---------------------------------------------------------------------
    def prompt_for(self, turn: Turn) -> list[PromptMessage]:
        history = [t for t in self.turns if t.id < turn.id and t.status not in {TurnStatus.ERROR, TurnStatus.NO_SPEECH}]
        image_budget = MAX_IMAGES_IN_CONTEXT
        messages: list[PromptMessage] = []
        for past in reversed(history + [turn]):
            images = []
            pictures = past.image_paths + past.frame_paths
            # The turn being answered shows all its pictures (a video's frames are already within the
            # per-message limit); older turns share what is left of the context's budget.
            budget = max(image_budget, len(pictures)) if past is turn else image_budget
            if budget > 0 and pictures:
                kept = pictures[-budget:]
                images = [media.load_image(p, self.limits) for p in kept]
                image_budget -= len(kept)
            audio = []
            if past is turn and turn.audio_path and getattr(self.engine, "accepts_audio", False):
                audio = [media.load_audio(turn.audio_path, self.limits).samples]
            if past is not turn and past.answer:
                messages.append(PromptMessage("assistant", past.answer))
            text = past.prompt_text
            if pictures and not getattr(self.engine, "accepts_images", True):
                text = (f"{text}\n\n" if text else "") + BLIND_NOTE
            frames = min(len(past.frame_paths), len(images))  # the frames come last among the pictures
            messages.append(PromptMessage("user", text, images=images, audio=audio, video_frames=frames,
                                          video_times=past.frame_times[len(past.frame_times) - frames:]))
        messages.reverse()
        return [PromptMessage("system", system_prompt(turn.answer_language, turn.firm_language))] + messages

    # -- answering ---------------------------------------------------------------------
    def prefill(self, language: str | None) -> bool:
        """Before the first turn: run the system prompt for ``language`` through the engine once, so that
        the engine's prompt cache holds it when the first question comes. For voice mode, where the first
        answer is heard: llama.cpp took 0.63 s to its first token with the prompt cold, 0.23-0.45 s with the
        system prompt prefilled (bench/voice_browser.py). True when it ran."""
        engine = self.engine
        language = tags.normalize_tag(language) if language not in (None, "", "auto") else "und"
        if (self.turns or language == "und" or engine is None or not getattr(engine, "keeps_prompt_prefix", False)
                or not getattr(engine, "loaded", False)):
            return False
        messages = [PromptMessage("system", system_prompt(language)), PromptMessage("user", "")]
        try:
            for _ in engine.stream(messages, CancelScope(), max_new_tokens=1):
                pass
        except Exception:  # noqa: BLE001 - only a head start: the first turn then prefills it all
            log.warning("prefilling the system prompt failed", exc_info=True)
            return False
        return True

    def answer(self, turn: Turn, max_new_tokens: int | None = None) -> Iterator[str]:
        """Stream the answer to ``turn``; yields text deltas of the current generation only."""
        with self._lock:
            scope = self.scope
            if scope.is_stale(turn.generation):
                if turn.status == TurnStatus.PENDING:
                    moved_on = turn.generation != scope.generation
                    turn.status = TurnStatus.INTERRUPTED if moved_on else TurnStatus.STOPPED
                return
            turn.status = TurnStatus.STREAMING
            turn.answer = ""
        stats = turn.stats = GenerationStats()
        try:
            if turn.image_paths and not getattr(self.engine, "accepts_images", True):
                raise cannot_see(self.engine)
            if turn.audio_path and turn.transcript is None and not self.hear(turn):
                return
            messages = self.prompt_for(turn)
            for delta in self.engine.stream(messages, scope, max_new_tokens or self.max_new_tokens, stats):
                if scope.cancelled:
                    break  # a chunk that was on its way when the answer was stopped
                turn.mark("first_token")
                turn.answer += delta
                yield delta
        except UserFacingError as err:
            turn.status, turn.error, turn.error_key, turn.error_params = (
                TurnStatus.ERROR, err.message, err.key, err.params)
            raise
        except Exception as err:  # never a traceback for the user; the log keeps it
            log.exception("answer failed")
            turn.status, turn.error, turn.error_key = (
                TurnStatus.ERROR, "Something went wrong while answering.", "error.generation")
            raise UserFacingError(turn.error, key="error.generation") from err
        finally:
            if stats.truncated_history:
                turn.notes.append(Note.HISTORY_SHORTENED)
        if turn.status == TurnStatus.STREAMING:
            if self.scope is not scope:
                turn.status = TurnStatus.INTERRUPTED
            elif scope.cancelled or stats.stopped:
                turn.status = TurnStatus.STOPPED
            else:
                turn.status = TurnStatus.DONE
        if turn.answer.strip():
            turn.answer_guess = detect.detect(turn.answer)
            self._redecide(turn)

    @staticmethod
    def _redecide(turn: Turn) -> None:
        """The answer and the message agree on a language the message's evidence ranked close: take it."""
        guess = turn.answer_guess
        if guess is None or not guess.known or guess.confidence < MIN_CONFIDENCE_TO_SWITCH \
                or sum(ch.isalpha() for ch in turn.answer) < MIN_LETTERS_TO_JUDGE_LANGUAGE:
            return
        current = decide.Decision(turn.answer_language, turn.language_source, 0.0,
                                  tuple((str(t), float(p)) for t, p in turn.language_candidates))
        better = decide.redecide(current, guess.tag)
        if better is not None:
            turn.answer_language, turn.language_source = better.tag, better.source
            turn.notes.append(Note.LANGUAGE_FROM_ANSWER)

    def hear(self, turn: Turn, transcript: Transcript | None = None) -> bool:
        """Transcribe the turn's recording; False (and a "did not catch that" turn) when nothing was said.

        Whisper's spoken-language ID, the text detector on the transcript and the turn's priors
        decide the answer language; a pinned language is the one Whisper transcribes in.
        ``transcript``: the words were already heard (voice mode transcribes at the pause that
        ends the turn)."""
        if turn.audio_path is None:
            return True  # nothing recorded: the typed text stands
        pinned = turn.priors.pinned
        if transcript is not None and (not pinned or tags.normalize_tag(transcript.language) == pinned):
            return self._use_transcript(turn, transcript)  # else heard again in the pinned language
        clip = media.load_audio(turn.audio_path, self.limits)
        accepts_audio = getattr(self.engine, "accepts_audio", False)
        if self.asr is None:
            if accepts_audio:
                turn.notes.append(Note.HEARD_BY_MODEL_ONLY)
                return True
            raise UserFacingError("Speech input is not available in this setup.", key="asr.unavailable")
        started = time.perf_counter()
        turn.mark("asr_start")
        priors = turn.priors
        try:
            transcript = self._transcribe(clip, priors.pinned)  # a pinned language is what Whisper hears
            heard = decide.spoken(getattr(transcript, "language_probs", None), transcript.language,
                                  transcript.language_probability)
            prior = next((tag for tag, _, _ in priors.ranked()), None)
            surest = max((p for tag, p in heard.items() if tag != tags.UNKNOWN), default=0.0)
            if not priors.pinned and prior and surest < decide.SPEECH_SURE \
                    and tags.normalize_tag(transcript.language) != prior and self._asr_takes_language():
                # Whisper is unsure: also hear it in the language the person probably speaks, keep the better.
                again = self.asr.transcribe(clip, language=prior)
                if _better_transcript(again, transcript):
                    transcript = again
        except ModelUnavailableError:
            if not accepts_audio:
                raise
            log.warning("speech recognition unavailable; the model hears the recording itself")
            turn.notes.append(Note.HEARD_BY_MODEL_ONLY)
            return True
        finally:
            turn.asr_s = time.perf_counter() - started
            turn.mark("asr_end")
        return self._use_transcript(turn, transcript)

    def _use_transcript(self, turn: Turn, transcript: Transcript) -> bool:
        if transcript.no_speech or not transcript.text.strip():
            turn.transcript = ""
            turn.status = TurnStatus.NO_SPEECH
            turn.error = "I did not catch that. Please try again, a little closer to the microphone."
            turn.error_key = "asr.no_speech"
            return False
        turn.transcript = transcript.text.strip()
        heard = decide.spoken(getattr(transcript, "language_probs", None), transcript.language,
                              transcript.language_probability)
        tag = tags.normalize_tag(transcript.language)
        whisper_guess = detect.LanguageGuess(
            tag=tag, name=tags.language_name(tag), autonym=tags.autonym(tag),
            confidence=round(float(heard.get(tag, transcript.language_probability)), 3),
        )
        self._settle(turn, decide.decide_speech(heard, turn.transcript, turn.priors, transcript.language),
                     whisper_guess)
        return True

    def _asr_takes_language(self) -> bool:
        import inspect

        try:
            return "language" in inspect.signature(self.asr.transcribe).parameters
        except (TypeError, ValueError):
            return False

    def _transcribe(self, clip, language: str | None):
        if language and self._asr_takes_language():
            return self.asr.transcribe(clip, language=language)
        return self.asr.transcribe(clip)

    def stop(self) -> None:
        """The Stop button: end the answer in progress within one decode step."""
        self.scope.cancel()

    def stop_turn(self, turn: Turn) -> None:
        """Stop ``turn``'s answer if it is still the one running (never a newer one)."""
        with self._lock:
            if turn.generation == self.scope.generation:
                self.scope.cancel()

    def interrupt(self) -> int:
        """A barge-in: stop the answer, mark it interrupted, and start a new generation."""
        with self._lock:
            for turn in self.turns:
                if turn.status in {TurnStatus.PENDING, TurnStatus.STREAMING}:
                    turn.status = TurnStatus.INTERRUPTED
            self.scope = self.scope.next()
            return self.scope.generation

    def _repeat(self, turn_id: int) -> Turn:
        """A new turn that asks ``turn_id``'s question again with a firmer language instruction,
        in its place in the history."""
        original = next(t for t in self.turns if t.id == turn_id)
        retry = Turn(
            id=next(self._ids),
            text=original.text,
            language=original.language,
            answer_language=original.answer_language,
            language_override=original.language_override,
            language_source=original.language_source,
            language_candidates=list(original.language_candidates),
            priors=original.priors,
            image_paths=list(original.image_paths),
            audio_path=original.audio_path,
            video_path=original.video_path,
            frame_paths=list(original.frame_paths),
            frame_times=list(original.frame_times),
            transcript=original.transcript,
            firm_language=True,
        )
        self.turns = [t for t in self.turns if t.id != turn_id]
        return retry

    def retry_in_language(self, turn_id: int) -> Turn:
        """The user asks again, firmly: a new turn in a new generation."""
        with self._lock:
            retry = self._repeat(turn_id)
        return self.add(retry)

    def auto_retry(self, turn: Turn) -> Turn | None:
        """One firmer retry for an answer that drifted to another language (never a second one).

        The retry continues the same answer: it runs in the turn's scope, so Stop or a barge-in
        ends it like the first attempt, and whoever waits for that answer sees it finish."""
        if turn.status != TurnStatus.DONE or not turn.language_mismatch or turn.firm_language:
            return None
        with self._lock:
            if self.scope.is_stale(turn.generation):
                return None
            retry = self._repeat(turn.id)
            retry.generation = self.scope.generation
            self.turns.append(retry)
        return retry

    def clear(self) -> None:
        with self._lock:
            self.scope = self.scope.next()
            self.turns = []
            for child in self.session_dir.glob("*"):
                child.unlink(missing_ok=True)

    def close(self) -> None:
        self.clear()
        shutil.rmtree(self.session_dir, ignore_errors=True)

    # -- persistence ----------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps([t.to_dict() for t in self.turns], ensure_ascii=False, default=str)

    @property
    def busy(self) -> bool:
        return any(t.status == TurnStatus.STREAMING for t in self.turns)

    def last(self) -> Turn | None:
        return self.turns[-1] if self.turns else None


class SessionRegistry:
    """Per-session conversations, keyed by the UI's session id (gr.State would deep-copy events).

    A tab that goes away without saying so (a closed laptop, a lost connection) would keep its
    conversation and files forever: sessions idle longer than ``idle_s`` are closed whenever
    the registry is used, unless they are still answering."""

    def __init__(self, factory, idle_s: float | None = None, on_evict=None) -> None:
        self._factory = factory
        self._idle_s = idle_s
        self._on_evict = on_evict  # called with the session id of each evicted session
        self._sessions: dict[str, Conversation] = {}
        self._touched: dict[str, float] = {}
        self._lock = threading.Lock()

    def get(self, session_id: str) -> Conversation:
        with self._lock:
            conversation = self._sessions.get(session_id)
            if conversation is None:
                conversation = self._sessions[session_id] = self._factory(session_id)
            self._touched[session_id] = time.monotonic()
        self.evict_idle()
        return conversation

    def evict_idle(self, now: float | None = None) -> list[str]:
        """Close the sessions idle longer than the limit at ``now`` (time.monotonic); returns their ids."""
        if self._idle_s is None:
            return []
        deadline = (time.monotonic() if now is None else now) - self._idle_s
        with self._lock:
            idle = [sid for sid, touched in self._touched.items()
                    if touched < deadline and not self._sessions[sid].busy]
            evicted = [(sid, self._sessions.pop(sid)) for sid in idle]
            for sid in idle:
                self._touched.pop(sid, None)
        for session_id, conversation in evicted:
            log.info("closing a session idle for more than %.0f min", self._idle_s / 60)
            if self._on_evict is not None:
                self._on_evict(session_id)
            conversation.close()
        return [sid for sid, _ in evicted]

    def drop(self, session_id: str) -> None:
        with self._lock:
            conversation = self._sessions.pop(session_id, None)
            self._touched.pop(session_id, None)
        if conversation is not None:
            conversation.close()

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._sessions

    def __len__(self) -> int:
        return len(self._sessions)

    def close_all(self) -> None:
        for session_id in list(self._sessions):
            self.drop(session_id)
