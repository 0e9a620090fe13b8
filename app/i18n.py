"""Every string the UI shows, by key, per locale. English is the fallback for missing keys.

The English UI strings are here. app/locales/ holds one flat {key: text} JSON file per
locale, named by the code gr.I18n expects ("zh" Simplified, "zh-TW" Traditional), and
en.json, the English text of the backend's user-facing messages.
"""

from __future__ import annotations

import gradio as gr

from app import locales

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
        "button.download": "Download",
        "button.stop": "Stop",
        "button.retry": "Answer again in {language}",
        "button.listen": "🔊 Listen",
        "speak.label": "Speak answers",
        "voice.start": "🎙️ Start voice conversation",
        "voice.stop": "⏹ End voice conversation",
        "camera.start": "📷 Camera on",
        "camera.stop": "📷 Camera off",
        "camera.label": "Camera",
        "voice.listening": "Listening…",
        "voice.thinking": "Thinking…",
        "voice.speaking": "Speaking… (just talk to interrupt)",
        "voice.connecting": "Starting the microphone…",
        "voice.no_microphone": "The microphone could not be started. Allow it for this page, or check that one is connected.",
        "voice.disconnected": "The microphone's connection to Omnilingo was lost. Turn voice mode off and on again.",
        "status.loading": "Loading the model… {detail} ({seconds} s)",
        "status.ready": "Model ready: {model}",
        "status.failed": "The model is not available. {detail}",
        "status.inputs": "takes {inputs}",
        "status.input.text": "text",
        "status.input.pictures": "pictures",
        "status.input.sound": "sound",
        "status.input.speech_as_text": "speech (through speech recognition)",
        "status.waiting": "Waiting for the model to finish loading…",
        "turn.detected": "{name} · {tag} · {confidence}%",
        "turn.unknown_language": "language not detected",
        "turn.language": "{name} · {tag}",
        "language.source.detected": "detected",
        "language.source.browser": "your browser's language",
        "language.source.conversation": "as before",
        "language.source.pinned": "chosen by you",
        "language.source.unsure": "not sure: answering in the language of your message",
        "language.change": "change",
        "turn.stopped": "Stopped.",
        "turn.interrupted": "Interrupted.",
        "turn.mismatch": "This answer looks like {answer_language}, not {language}.",
        "turn.history_shortened": "Older messages were left out so that this one fits the model.",
        "turn.error": "No answer: {message}",
        "turn.no_speech": "I did not catch that. Please try again, a little closer to the microphone.",
        "turn.heard_by_model_only": "Speech recognition is not available: the model listened to the recording itself.",
        "turn.no_voice": "There is no voice for this language yet: the answer is shown as text only.",
        "turn.speech_failed": "The answer could not be spoken; it is shown as text.",
        "turn.voice_fallback": "The natural voice for this language could not be downloaded or loaded, "
        "so espeak-ng read this answer.",
        "turn.voice_noncommercial": "The natural voice for this language is licensed for non-commercial use only, "
        "so espeak-ng read this answer.",
        "voice.neural": "Voice for {language}: {voice} (neural) · licence: {licence}",
        "voice.espeak": "Voice for {language}: {voice} (synthetic, offline) · licence: {licence}",
        "voice.none": "No voice for {language}: answers are shown as text only.",
        "voice.licence_on_download": "read from its model card when it is downloaded",
        "voice.instead": "instead of {voice}, which cannot be used here (offline, a failed download, "
        "or a non-commercial licence)",
        "error.busy": "Please wait for the answer to finish, or press Stop.",
        "error.generic": "Something went wrong. Your message is kept; please try again.",
    },
}


# The locale files: en.json adds the backend's messages to English, the others are whole locales.
_FILES = locales.load_locales()
STRINGS["en"] = {**_FILES.get("en", {}), **STRINGS["en"]}
STRINGS.update({code: table for code, table in _FILES.items() if code != "en"})

# Labels are translated in the browser, by the visitor's locale (English fallback).
I18N = gr.I18n(**STRINGS)


def _template(key: str, locale: str | None) -> str | None:
    """The text for key in locale, else in its base language ("zh-TW" → "zh"), else in English."""
    for code in locales.lookup_chain(locale, STRINGS):
        text = STRINGS.get(code, {}).get(key)
        if text:
            return text
    return None


def translate(key: str, locale: str | None = "en", **params: object) -> str:
    text = _template(key, locale) or key
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError, TypeError):
        return text


def translate_error(err: object, locale: str | None = "en") -> str:
    """A UserFacingError in the reader's language; its own English message when the key or a parameter is missing."""
    message = getattr(err, "message", None) or str(err)
    if locales.lookup_chain(locale, STRINGS)[0] == "en":
        return message  # the raise's own English text is the most precise
    text = _template(getattr(err, "key", "") or "", locale)
    if text is None:
        return message
    try:
        return text.format(**(getattr(err, "params", None) or {}))
    except (KeyError, IndexError, ValueError, TypeError):
        return message


def locale_from_request(accept_language: str | None) -> str:
    """The best supported locale for an Accept-Language header (q-values honoured); English when none fits.

    "pt-BR" → "pt", "zh-CN" → "zh", "zh-TW", "zh-HK" and "zh-Hant" → "zh-TW".
    """
    return locales.locale_from_request(accept_language, STRINGS)
