"""UI translations: complete, consistent with English, reachable by the browser, chosen by locale."""

from __future__ import annotations

import ast
import re
import string
import unicodedata
import warnings
from collections import Counter
from pathlib import Path

import pytest

from app import i18n
from app.locales import load_locales, locale_from_request, lookup_chain, match_locale

REPO = Path(__file__).resolve().parents[1]
FILES = load_locales()
# English: the UI strings of app/i18n.py and the backend messages of en.json.
ENGLISH = dict(i18n.STRINGS["en"])
TRANSLATIONS = {code: table for code, table in FILES.items() if code != "en"}
ERROR_CLASSES = {"UserFacingError", "MediaError", "ModelUnavailableError", "GenerationError"}


def placeholders(text: str) -> set[tuple[str, str]]:
    """(name, format spec) of every {field} in a str.format template."""
    return {(name, spec or "") for _, name, spec, _ in string.Formatter().parse(text) if name is not None}


def backend_error_keys() -> dict[str, list[dict]]:
    """Every key="..." given to an error in backend/ (every module), with the keyword parameters of each raise."""
    sites: dict[str, list[dict]] = {}
    for path in sorted((REPO / "backend").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            keywords = {kw.arg: kw.value for kw in node.keywords if kw.arg}
            key = keywords.get("key")
            if not (isinstance(key, ast.Constant) and isinstance(key.value, str)):
                continue
            func = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            splat = any(kw.arg is None for kw in node.keywords)
            params = {
                name: not (isinstance(value, ast.Constant) and value.value is None)
                for name, value in keywords.items() if name != "key"
            }
            sites.setdefault(key.value, []).append(
                {"where": f"{path.name}:{node.lineno}", "func": func, "params": params, "splat": splat}
            )
        # A plain text scan too, so that no key="..." escapes the syntax walk.
        for key in re.findall(r'\bkey="([a-z_]+\.[a-z0-9_.]+)"', source):
            sites.setdefault(key, [])
        # keys stored on a turn without a raise (turn.error_key = "asr.no_speech")
        for key in re.findall(r'error_key\s*=\s*"([a-z_]+\.[a-z0-9_.]+)"', source):
            sites.setdefault(key, [])
    return sites


BACKEND_KEYS = backend_error_keys()


# -- completeness --------------------------------------------------------------------------------


def test_enough_locales_and_scripts():
    codes = set(FILES)
    assert {"en", "es", "fr", "de", "pt", "ru", "ar", "hi", "zh", "ja"} <= codes
    languages = {code.split("-")[0] for code in codes}
    assert len(languages) >= 10, languages
    scripts = {code: dominant_script(table) for code, table in TRANSLATIONS.items()}
    assert len(set(scripts.values()) | {"Latin"}) >= 4, scripts
    assert scripts["ru"] == "Cyrillic"
    assert scripts["ar"] == "Arabic"
    assert scripts["hi"] == "Devanagari"
    assert scripts["zh"] == "Han"
    assert scripts["ja"] in {"Han", "Kana"}
    assert script_counts(FILES["ja"])["Kana"] > 100, "Japanese without kana"
    for code in ("es", "fr", "de", "pt"):
        assert scripts[code] == "Latin"


@pytest.mark.parametrize("code", sorted(TRANSLATIONS))
def test_locale_has_every_key_and_no_unknown_key(code):
    table = TRANSLATIONS[code]
    assert sorted(set(ENGLISH) - set(table)) == [], f"{code}.json lacks keys"
    assert sorted(set(table) - set(ENGLISH)) == [], f"{code}.json has keys English does not know"
    assert all(isinstance(text, str) and text.strip() for text in table.values())


@pytest.mark.parametrize("code", sorted(TRANSLATIONS))
def test_placeholders_match_english(code):
    for key, english in ENGLISH.items():
        text = TRANSLATIONS[code].get(key)
        if text is None:
            continue  # reported by test_locale_has_every_key_and_no_unknown_key
        assert placeholders(text) == placeholders(english), f"{code} {key}: {text!r}"
        dummy = {name: 1 for name, _ in placeholders(english)}
        text.format(**dummy)  # no stray braces


@pytest.mark.parametrize("code", sorted(TRANSLATIONS))
def test_locale_is_actually_translated(code):
    same = [key for key, text in TRANSLATIONS[code].items() if text == ENGLISH.get(key)]
    # the brand name and the "{name} · {tag} · {confidence}%" badge may stay as they are,
    # and a short word that two languages share ("Conversation" in French)
    others = [key for key in same if key not in {"app.title", "turn.detected"}]
    assert len(others) <= 2 and all(len(ENGLISH[key]) <= 20 for key in others), others


def test_traditional_chinese_is_not_simplified():
    simplified, traditional = FILES["zh"], FILES["zh-TW"]
    differing = [key for key in simplified if simplified[key] != traditional[key]]
    assert len(differing) > 0.8 * len(simplified)
    assert "訊息" in "".join(traditional.values()) and "消息" in "".join(simplified.values())


def test_english_backend_messages_do_not_shadow_ui_strings():
    ui_only = {key for key in i18n.STRINGS["en"] if key not in FILES["en"]}
    assert ui_only, "app/i18n.py lost its UI strings"
    # STRINGS["en"] holds both; en.json must never redefine a UI key differently
    for key, text in FILES["en"].items():
        assert i18n.STRINGS["en"].get(key, text) == text


# -- backend messages ------------------------------------------------------------------------------


def test_backend_keys_found():
    assert len(BACKEND_KEYS) >= 30, sorted(BACKEND_KEYS)
    assert {"media.file_too_large", "error.out_of_memory", "tts.no_voice", "model.unavailable"} <= set(BACKEND_KEYS)


@pytest.mark.parametrize("key", sorted(BACKEND_KEYS))
def test_backend_key_has_english_and_translations(key):
    assert key in ENGLISH, f"{key} (raised in {[s['where'] for s in BACKEND_KEYS[key]]}) has no English text"
    missing = [code for code, table in TRANSLATIONS.items() if key not in table]
    assert not missing, f"{key} is not translated into {missing}"


@pytest.mark.parametrize("key", sorted(BACKEND_KEYS))
def test_backend_placeholders_are_always_passed(key):
    """Every {field} of the English text is a keyword argument (never None) at every raise of that key."""
    needed = {name for name, _ in placeholders(ENGLISH.get(key, ""))}
    for site in BACKEND_KEYS[key]:
        if site["splat"]:
            continue
        given = {name for name, present in site["params"].items() if present}
        assert needed <= given, f"{key} at {site['where']} does not pass {sorted(needed - given)}"


# -- choosing a locale -----------------------------------------------------------------------------

REQUEST_CASES = [
    (None, "en"),
    ("", "en"),
    ("*", "en"),
    ("sw-KE", "en"),
    ("fr-FR,fr;q=0.9,en-US;q=0.8,en;q=0.7", "fr"),
    ("FR-fr", "fr"),
    ("de-CH", "de"),
    ("es_MX", "es"),
    ("pt-BR,pt;q=0.9", "pt"),
    ("pt-PT", "pt"),
    ("ru", "ru"),
    ("ar-EG,ar;q=0.9", "ar"),
    ("hi-IN", "hi"),
    ("ja-JP", "ja"),
    ("ko-KR", "ko"),
    ("zh", "zh"),
    ("zh-CN,zh;q=0.9", "zh"),
    ("zh-SG", "zh"),
    ("zh-Hans-HK", "zh"),
    ("zh-TW", "zh-TW"),
    ("zh-HK", "zh-TW"),
    ("zh-MO", "zh-TW"),
    ("zh-Hant", "zh-TW"),
    ("zh-hant-tw", "zh-TW"),
    ("sw, ja;q=0.5", "ja"),
    ("en;q=0.1, ru;q=0.9", "ru"),
    ("fr;q=0, es", "es"),
    ("fr;q=abc, de;q=0.5", "de"),
    ("de;q=0.5, fr;q=0.5", "de"),
    ("tlh, xx-YY;q=0.8", "en"),
    (" en-GB ; q=1.0 , fr ; q=0.2", "en"),
]


@pytest.mark.parametrize(("header", "expected"), REQUEST_CASES)
def test_locale_from_request(header, expected):
    assert locale_from_request(header) == expected
    if hasattr(i18n, "locale_from_request") and "ko" in i18n.STRINGS:  # once app/i18n.py loads the files
        assert i18n.locale_from_request(header) == expected


def test_traditional_chinese_falls_back_to_simplified_when_alone():
    available = ["en", "zh"]
    assert locale_from_request("zh-TW", available) == "zh"
    assert locale_from_request("zh-Hant", ["en", "zh", "zh-Hant"]) == "zh-Hant"
    assert match_locale("zh-HK", ["en"]) is None


def test_lookup_chain_mirrors_the_browser():
    assert lookup_chain("zh-TW", FILES) == ["zh-TW", "zh", "en"]
    assert lookup_chain("pt-BR", FILES) == ["pt", "en"]
    assert lookup_chain("xx", FILES) == ["en"]
    assert lookup_chain(None, FILES) == ["en"]


# -- translate() -------------------------------------------------------------------------------------


def test_translate_falls_back_to_english(monkeypatch):
    english = ENGLISH["button.new"]
    assert i18n.translate("button.new", "xx") == english
    assert i18n.translate("button.new", "xx-YY") == english
    assert i18n.translate("no.such.key", "fr") == "no.such.key"
    monkeypatch.setitem(i18n.STRINGS, "xx", {"button.stop": "XSTOP"})
    assert i18n.translate("button.stop", "xx") == "XSTOP"
    assert i18n.translate("button.new", "xx") == english
    assert i18n.translate("button.retry", "xx", language="Deutsch") == "Answer again in Deutsch"


def test_translate_uses_the_locale_files():
    # every locale file reaches the UI's table, the backend's English messages included
    assert set(TRANSLATIONS) <= set(i18n.STRINGS)
    assert FILES["en"].items() <= i18n.STRINGS["en"].items()
    assert i18n.translate("button.new", "fr") == "Nouvelle conversation"
    assert i18n.translate("button.new", "fr-CA") == "Nouvelle conversation"
    assert i18n.translate("button.stop", "zh-HK") == "停止"
    assert i18n.translate("media.too_many_images", "de", count=9, limit=8) == (
        "Zu viele Bilder in einer Nachricht (9; die Grenze liegt bei 8)."
    )
    assert i18n.translate("media.audio_too_long", "en", name="a.wav", seconds=700.0, limit_seconds=600.0) == (
        "“a.wav” is too long (the limit is 600 s)."
    )


def test_translate_error_uses_params_or_the_english_message():
    from backend.errors import MediaError, UserFacingError

    err = MediaError("The file 'a.png' is empty.", key="media.empty_file", name="a.png")
    assert i18n.translate_error(err, "es") == "El archivo «a.png» está vacío."
    # a raise that lost its parameters shows its own English text, never "{name}"
    bare = UserFacingError("The model x could not be loaded.", key="model.unavailable")
    assert i18n.translate_error(bare, "fr") == "The model x could not be loaded."
    unknown = UserFacingError("Plain English.", key="nobody.knows")
    assert i18n.translate_error(unknown, "fr") == "Plain English."
    # English readers get the raise's own message, which may say more than the template
    assert i18n.translate_error(err, "en-US") == "The file 'a.png' is empty."
    assert i18n.translate_error(err, None) == "The file 'a.png' is empty."


# -- what Gradio's gr.I18n needs ---------------------------------------------------------------------


def gradio_frontend_locales() -> set[str]:
    """Locales the installed Gradio front end can select (its bundled translations)."""
    import gradio

    assets = Path(gradio.__file__).parent / "templates" / "frontend" / "assets"
    found: set[str] = set()
    for path in assets.glob("core-*.js"):
        found |= set(re.findall(r'"\./lang/([A-Za-z-]+)\.json"', path.read_text(encoding="utf-8", errors="ignore")))
    return found


def test_locale_codes_suit_gradio_i18n():
    import gradio as gr

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # gr.I18n warns on codes that are not BCP 47
        gr.I18n(**{"en": ENGLISH, **TRANSLATIONS})
    selectable = gradio_frontend_locales()
    if not selectable:
        pytest.skip("Gradio's front-end bundle was not found")
    for code in TRANSLATIONS:
        # The browser picks one of Gradio's own locales (or its base language), then looks a key
        # up in that locale, then in its base language: "zh-CN" → "zh", "pt-BR" → "pt".
        reachable = code in selectable or any(g.split("-")[0] == code for g in selectable)
        assert reachable, f"{code}.json can never be chosen by Gradio's front end"


# -- helpers -----------------------------------------------------------------------------------------


def _script_of(char: str) -> str | None:
    if not char.isalpha():
        return None
    name = unicodedata.name(char, "")
    for prefix, script in (
        ("LATIN", "Latin"), ("CYRILLIC", "Cyrillic"), ("ARABIC", "Arabic"), ("DEVANAGARI", "Devanagari"),
        ("CJK", "Han"), ("HIRAGANA", "Kana"), ("KATAKANA", "Kana"), ("HANGUL", "Hangul"),
    ):
        if name.startswith(prefix):
            return script
    return "Other"


def script_counts(table: dict[str, str]) -> Counter:
    text = "".join(re.sub(r"\{[^}]*\}", "", value) for value in table.values())
    # product names, formats and command-line options are Latin in every language
    text = re.sub(r"Omnilingo|Whisper|MMS-TTS|espeak-ng|--[a-z-]+ ?(PATH)?|[A-Z]{2,}\S*|openai/\S+", "", text)
    return Counter(filter(None, map(_script_of, text)))


def dominant_script(table: dict[str, str]) -> str:
    return script_counts(table).most_common(1)[0][0]



# --------------------------------------------------------------------------- language names in the reader's language


def test_language_names_follow_the_ui_language():
    from app import render
    from backend.conversation.turns import Turn
    from backend.language import detect, tags

    asked = detect.detect("Quelle est la capitale du Portugal, et combien d'habitants y vivent ?")
    answer = "Die Hauptstadt von Portugal ist Lissabon, dort leben ungefähr fünfhunderttausend Menschen."
    turn = Turn(id=1, text="Quelle est la capitale du Portugal ?", language=asked, answer_language="fr",
                answer=answer, status="done", answer_guess=detect.detect(answer))
    assert turn.language_mismatch
    # own name first (what the writer recognises), then the name in the UI's language
    assert render.language_badge(turn, "de").startswith("français (Französisch)")
    assert render.language_badge(turn, "ja").startswith("français (フランス語)")
    assert render.language_badge(turn, "en").startswith("français (French)")
    german = render.assistant_message(turn, "de")
    assert "Französisch" in german["content"] and "Deutsch" in german["content"]
    assert german["options"][0]["label"] == i18n.translate("button.retry", "de", language="Französisch")
    # Traditional Chinese names come from CLDR's zh-Hant data
    assert tags.display_name("fr", "zh-TW") == "法文"
    assert tags.display_name("fr", "not a locale") == "French"
