"""The conversation: language per turn, images kept across turns, stop, barge-in, errors that lose nothing."""

from __future__ import annotations

import shutil
import threading
import time

import pytest

from backend.conversation.turns import Conversation, system_prompt
from backend.errors import MediaError, UserFacingError
from tests.fakes import ScriptedEngine, long_answer, tokens


@pytest.fixture()
def conversation(gemma_engine, tmp_path):
    conv = Conversation(gemma_engine, tmp_path / "session", max_new_tokens=16)
    yield conv
    conv.close()


def _ask(conv: Conversation, text: str, files=None, language="auto"):
    turn = conv.add(conv.prepare(text, files, language))
    deltas = list(conv.answer(turn))
    return turn, deltas


def test_turn_records_language_and_answer(conversation):
    turn, deltas = _ask(conversation, "Wie spät ist es in Berlin, und wie wird das Wetter morgen?")
    assert turn.language.tag == "de" and turn.answer_language == "de"
    assert turn.status == "done" and turn.answer == "".join(deltas) and turn.answer
    assert turn.stats.new_tokens == 16


def test_system_prompt_names_the_answer_language():
    prompt = system_prompt("fr")
    assert "French" in prompt and "français" in prompt
    assert "Japanese" in system_prompt("ja", firm=True) and "only" in system_prompt("ja", firm=True)
    assert "same language" in system_prompt("und")


def test_language_override_wins(conversation):
    turn, _ = _ask(conversation, "Tell me about the history of Lisbon, please.", language="pt")
    assert turn.language.tag == "en" and turn.answer_language == "pt"
    assert "Portuguese" in conversation.prompt_for(turn)[0].text


def test_short_reply_keeps_the_conversation_language(conversation):
    _ask(conversation, "¿Cuál es la montaña más alta de América del Sur?")
    turn, _ = _ask(conversation, "ok")
    assert turn.answer_language == "es"


def test_images_stay_in_context_for_follow_ups(conversation, corpus):
    image = str(corpus / "images" / "rapid_el_rec.jpg")
    first, _ = _ask(conversation, "What does this sign say?", [image])
    assert len(first.image_paths) == 1
    follow_up = conversation.add(conversation.prepare("And what language is it in?"))
    prompt = conversation.prompt_for(follow_up)
    users = [m for m in prompt if m.role == "user"]
    assert len(users[0].images) == 1 and users[-1].images == []
    assert [m.role for m in prompt] == ["system", "user", "assistant", "user"]
    inputs = conversation.engine.encode(prompt)
    assert "pixel_values" in inputs


def test_upload_is_copied_under_a_name_of_our_own(conversation, corpus, tmp_path):
    odd = tmp_path / "weird name ;rm -rf.png"
    shutil.copy(corpus / "images" / "easy_french.jpg", odd)
    turn = conversation.prepare("Lis ce panneau s'il te plaît", [str(odd)])
    kept = turn.image_paths[0]
    assert kept.startswith(str(conversation.session_dir)) and "rm" not in kept


def test_bad_file_raises_and_keeps_history(conversation, tmp_path):
    _ask(conversation, "Bonjour, quelle heure est-il à Montréal ?")
    before = list(conversation.turns)
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)  # a truncated PNG
    with pytest.raises(MediaError):
        conversation.prepare("Et cette image ?", [str(bad)])
    assert conversation.turns == before


def test_empty_message_is_refused(conversation):
    with pytest.raises(UserFacingError) as info:
        conversation.prepare("   ")
    assert info.value.key == "error.empty_message"


def _scripted(tmp_path, **engine_args) -> tuple[Conversation, ScriptedEngine]:
    engine = ScriptedEngine(**engine_args)
    return Conversation(engine, tmp_path / "s", max_new_tokens=2000), engine


def test_stop_marks_the_turn_stopped(tmp_path):
    conv, _ = _scripted(tmp_path, answer=long_answer())
    turn = conv.add(conv.prepare("Count to ten thousand, please."))
    for i, _ in enumerate(conv.answer(turn)):
        if i == 2:
            conv.stop()
    assert turn.status == "stopped" and turn.stats.stopped
    assert turn.answer == "".join(tokens(long_answer())[:3]), "the partial answer stays, and nothing after Stop"


def test_stop_reaches_the_local_model(gemma_engine, tmp_path):
    conv = Conversation(gemma_engine, tmp_path / "s", max_new_tokens=2000)
    turn = conv.add(conv.prepare("Count to ten thousand, please."))
    for i, _ in enumerate(conv.answer(turn)):
        if i == 2:
            conv.stop()
    assert turn.status == "stopped" and turn.stats.new_tokens < 2000
    assert turn.answer


def test_barge_in_interrupts_and_drops_stale_chunks(tmp_path):
    conv, engine = _scripted(tmp_path, answer=long_answer(), next_answers=["Mountains are tall."])
    turn = conv.add(conv.prepare("Tell me a very long story about the sea."))
    kept = []
    for i, delta in enumerate(conv.answer(turn)):
        kept.append(delta)
        if i == 1:
            generation = conv.interrupt()
            assert generation > turn.generation
    assert turn.status == "interrupted"
    assert kept == tokens(long_answer())[:2], "nothing of the old generation after the barge-in"
    assert turn.answer == "".join(kept)
    nxt, _ = _ask(conv, "Actually, tell me about mountains instead.")
    assert nxt.status == "done" and nxt.generation > turn.generation and nxt.answer == "Mountains are tall."
    assert "sea" in engine.prompts[1][1].text, "the interrupted question stays in the history"


def test_interrupt_during_prefill_stops_before_any_text(tmp_path):
    conv, _ = _scripted(tmp_path, answer=long_answer(), first_token_delay_s=5.0)
    turn = conv.add(conv.prepare("Describe the ocean at length."))
    stream = conv.answer(turn)
    threading.Timer(0.1, conv.interrupt).start()
    started = time.monotonic()
    deltas = list(stream)
    assert turn.status == "interrupted" and deltas == [] and turn.answer == ""
    assert time.monotonic() - started < 4.0, "the prefill must not run to its end after a barge-in"


def test_retry_in_language_replaces_the_drifted_answer(conversation):
    turn, _ = _ask(conversation, "Quelle est la capitale de l'Australie ?")
    retry = conversation.retry_in_language(turn.id)
    assert retry.firm_language and retry.text == turn.text
    assert turn not in conversation.turns and conversation.turns[-1] is retry
    assert "only" in conversation.prompt_for(retry)[0].text


def test_language_mismatch_needs_enough_text(conversation):
    from backend.language import detect

    turn, _ = _ask(conversation, "Quelle est la capitale de l'Australie ?")
    turn.answer = "The capital of Australia is Canberra, a planned city chosen as a compromise."
    turn.answer_guess = detect.detect(turn.answer)
    assert turn.language_mismatch
    turn.answer = "Canberra."
    assert not turn.language_mismatch


def test_clear_forgets_everything(conversation, corpus):
    _ask(conversation, "Describe this", [str(corpus / "images" / "easy_korean.png")])
    conversation.clear()
    assert conversation.turns == [] and list(conversation.session_dir.iterdir()) == []


def test_auto_retry_happens_once_and_only_on_drift(conversation):
    from backend.language import detect

    turn, _ = _ask(conversation, "Quelle est la capitale de l'Australie ?")
    turn.answer = "The capital of Australia is Canberra, a planned city chosen as a compromise."
    turn.answer_guess = detect.detect(turn.answer)
    retry = conversation.auto_retry(turn)
    assert retry is not None and retry.firm_language
    list(conversation.answer(retry))
    retry.answer = "The capital is Canberra, which was built on purpose as the seat of government."
    retry.answer_guess = detect.detect(retry.answer)
    assert conversation.auto_retry(retry) is None, "never a second retry"
    fine, _ = _ask(conversation, "Et la plus grande ville ?")
    fine.answer, fine.answer_guess = "Sydney est la plus grande ville du pays.", detect.detect("Sydney est la plus grande ville du pays.")
    assert conversation.auto_retry(fine) is None
