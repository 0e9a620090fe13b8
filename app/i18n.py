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
