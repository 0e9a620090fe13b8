"""Every string the UI shows, by key, per locale. English is the fallback for missing keys."""

from __future__ import annotations

STRINGS: dict[str, dict[str, str]] = {
    "en": {
        "app.title": "Omnilingo",
        "app.tagline": "Talk, type or show a picture — in your language.",
        "chat.label": "Conversation",
        "chat.placeholder": "Ask anything in any language, or drop images here…",
        "chat.empty": "Ask in any language. Omnilingo answers in yours.",
        "input.label": "Your message",
        "language.label": "Answer language",
        "language.auto": "Auto (detect)",
        "button.new": "New conversation",
        "button.stop": "Stop",
        "button.retry": "Answer again in {language}",
        "button.listen": "🔊 Listen",
        "speak.label": "Speak answers",
        "voice.start": "🎙️ Start voice conversation",
        "voice.stop": "⏹ End voice conversation",
        "voice.mic_label": "Microphone",
        "voice.listening": "Listening…",
        "voice.thinking": "Thinking…",
        "voice.speaking": "Speaking… (just talk to interrupt)",
        "audio.label": "Spoken answer",
        "status.loading": "Loading the model… {detail} ({seconds} s)",
        "status.ready": "Model ready: {model}",
        "status.failed": "The model is not available. {detail}",
        "status.waiting": "Waiting for the model to finish loading…",
        "turn.detected": "{name} · {tag} · {confidence}%",
        "turn.unknown_language": "language not detected",
        "turn.stopped": "Stopped.",
        "turn.interrupted": "Interrupted.",
        "turn.mismatch": "This answer looks like {answer_language}, not {language}.",
        "turn.history_shortened": "Older messages were left out so that this one fits the model.",
        "turn.error": "No answer: {message}",
        "turn.no_speech": "I did not catch that. Please try again, a little closer to the microphone.",
        "turn.heard_by_model_only": "Speech recognition is not available: the model listened to the recording itself.",
        "turn.no_voice": "There is no voice for this language yet: the answer is shown as text only.",
        "turn.speech_failed": "The answer could not be spoken; it is shown as text.",
        "error.busy": "Please wait for the answer to finish, or press Stop.",
        "error.generic": "Something went wrong. Your message is kept; please try again.",
    },
}


def translate(key: str, locale: str = "en", **params: object) -> str:
    table = STRINGS.get(locale.split("-")[0], {})
    text = table.get(key) or STRINGS["en"].get(key) or key
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError):
        return text


def locale_from_request(accept_language: str | None) -> str:
    """The best supported locale for an Accept-Language header; English when none fits."""
    ranked = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            weight = 0.0
        if tag:
            ranked.append((-weight, index, tag.strip()))
    for _, _, tag in sorted(ranked):
        for candidate in (tag, tag.split("-")[0]):
            if candidate in STRINGS:
                return candidate
    return "en"
