"""End of a voice turn: Smart Turn on real speech, the last word, and "stop" said over an answer."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from backend.audio.turn_end import (
    SMART_TURN_PATH,
    SmartTurn,
    TurnEndConfig,
    TurnEndDetector,
    TurnModelError,
    ends_mid_phrase,
    smart_turn,
)
from backend.conversation.stop_words import is_stop_request, stop_languages
from backend.conversation.turns import Conversation
from backend.conversation.voice import LISTENING, VoiceSession
from backend.models.asr import Transcript

TURNS = Path(__file__).parent / "fixtures" / "turns"
CHUNK_S = 0.1
MIC_RATE = 48000


def _clip(name: str) -> np.ndarray:
    audio, rate = sf.read(TURNS / name, dtype="float32")
    assert rate == 16000
    return audio


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(16000 * seconds), np.float32)


class ScriptedASR:
    """Speech recognition that hears whatever the test says was said, in order."""

    def __init__(self, *texts: str, language: str = "en", end_mark_probability: float | None = 0.95) -> None:
        self.texts = list(texts)
        self.language = language
        self.end_mark_probability = end_mark_probability  # how sure Whisper was of a closing ". ? !"
        self.calls = 0
        self.forced: list[str | None] = []

    def transcribe(self, clip, language=None) -> Transcript:
        self.calls += 1
        self.forced.append(language)
        text = self.texts.pop(0) if len(self.texts) > 1 else self.texts[0]
        return Transcript(text=text, language=self.language, language_probability=0.99,
                          duration_s=clip.duration_s, no_speech=False, end_mark_probability=self.end_mark_probability)


def _feed(voice: VoiceSession, samples: np.ndarray) -> list[tuple[float, object]]:
    """Play 16 kHz audio into the session as the browser sends it; (stream time after the chunk, event) pairs."""
    import soxr

    pcm = (np.clip(soxr.resample(samples, 16000, MIC_RATE), -1, 1) * 32767).astype(np.int16)
    step = int(MIC_RATE * CHUNK_S)
    out = []
    for k, i in enumerate(range(0, len(pcm), step)):
        for event in voice.hear(pcm[i:i + step], MIC_RATE):
            out.append(((k + 1) * CHUNK_S, event))
        voice.wait_for_verdict(30)  # as if each judgement were done by the next chunk
    return out


def _hand_over(voice: VoiceSession, speech: np.ndarray, silence_s: float) -> tuple[float, object]:
    """Play 0.5 s of silence, ``speech``, then ``silence_s`` of silence: the one turn handed over, and how
    long after the end of the speech it came (stream time)."""
    events = _feed(voice, np.concatenate([_silence(0.5), speech, _silence(silence_s)]))
    handed = [(t, e) for t, e in events if e.kind == "utterance"]
    assert len(handed) == 1, [(e.kind, e.verdict) for _, e in events]
    t, event = handed[0]
    return t - (0.5 + len(speech) / 16000), event


def _voice(tmp_path, asr) -> VoiceSession:
    voice = VoiceSession(Conversation(engine=None, session_dir=tmp_path / "s", asr=asr), end_of_turn="smart")
    voice.start()
    return voice


# -- the model -------------------------------------------------------------------------------------

def test_smart_turn_tells_a_finished_question_from_speech_cut_inside_a_sentence():
    model = smart_turn()
    pause = _silence(0.2)  # the VAD hands the utterance over with 200 ms of the pause after it
    finished = model.probability(np.concatenate([_clip("en_finished_wealth_tax.wav"), pause]))
    cut_en = model.probability(np.concatenate([_clip("en_cut_and_the_answer_that.wav"), pause]))
    cut_de = model.probability(np.concatenate([_clip("de_cut_und_das.wav"), pause]))
    assert finished > 0.8, finished
    assert cut_en < 0.2 and cut_de < 0.2, (cut_en, cut_de)


def test_a_model_file_that_is_not_the_checked_one_is_refused(tmp_path):
    with pytest.raises(TurnModelError, match="not found"):
        SmartTurn(tmp_path / "missing.onnx")
    changed = tmp_path / "model.onnx"
    shutil.copyfile(SMART_TURN_PATH, changed)
    with changed.open("r+b") as f:
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(TurnModelError, match="sha256"):
        SmartTurn(changed)


# -- the words -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "language", "unfinished"), [
    ("I'd like to know more about the", "en", True),
    ("I'd like to know more about the.", "en", True),  # Whisper's full stop after a cut-off article
    ("I was going to ask you and", "en", True),
    ("So the answer is, well", "en", True),  # no closing punctuation
    ("Let me think…", "en", True),
    ("What is this?", "en", False),  # "this", "it", "me" end sentences: not in the list
    ("Can you help me?", "en", False),
    ("I'd like to know the time.", "en", False),
    ("Ich möchte wissen, was der Preis für die", "de", True),
    ("Wie spät ist es?", "de", False),
    ("Je voudrais savoir le prix du", "fr", True),
    ("Quiero saber el precio de la", "es", True),
    ("¿Qué hora es?", "es", False),
])
def test_an_utterance_ending_mid_phrase_is_unfinished(text, language, unfinished):
    assert ends_mid_phrase(text, language) is unfinished


def test_no_word_list_means_no_verdict_from_words():
    assert ends_mid_phrase("Habari ya asubuhi na", "sw") is None


def test_a_language_neither_signal_covers_falls_back_to_the_silence_rule():
    detector = TurnEndDetector(TurnEndConfig(silence_ms=500))
    verdict, transcript = detector.judge(_clip("en_finished_wealth_tax.wav"), lambda: None, language="sw")
    assert (verdict.finished, verdict.wait_ms, verdict.reason) == (False, 500, "silence") and transcript is None


def test_a_pause_where_no_word_was_heard_yet_keeps_the_turn_open():
    # The voice sounds finished, but Whisper made out no word: there is nothing to answer yet.
    detector = TurnEndDetector()
    heard = Transcript(text="", language="en", language_probability=0.0, duration_s=3.0, no_speech=True)
    verdict, transcript = detector.judge(_clip("en_finished_wealth_tax.wav"), lambda: heard, language="en")
    assert verdict.probability >= detector.config.finished_probability
    assert not verdict.finished and verdict.wait_ms == detector.config.unfinished_wait_ms
    assert transcript is heard


def _heard(text: str, end_mark_probability: float | None) -> Transcript:
    return Transcript(text=text, language="en", language_probability=0.99, duration_s=3.0, no_speech=False,
                      end_mark_probability=end_mark_probability)


def test_a_sentence_whisper_hardly_closed_waits_a_little_before_it_is_answered():
    detector = TurnEndDetector()
    c = detector.config
    finished = _clip("en_finished_wealth_tax.wav")  # Smart Turn: finished
    sure, _ = detector.judge(finished, lambda: _heard("Who's going to implement a tax?", 0.95), language="en")
    unsure, transcript = detector.judge(finished, lambda: _heard("Europe is full at the moment.", 0.44), language="en")
    assert (sure.finished, sure.wait_ms, sure.reason) == (True, 0, "audio")
    assert (unsure.finished, unsure.wait_ms, unsure.reason) == (True, c.unsure_wait_ms, "unsure")
    assert unsure.end_mark_probability == 0.44 and transcript.text.startswith("Europe")
    # shorter than the wait for words that stop mid-phrase, longer than a cut-off
    assert 1000 < c.unsure_wait_ms < c.unfinished_wait_ms
    # nothing known of the language, and Whisper names one without a word list: its doubt still holds
    guessed = Transcript(text="Håskande implement.", language="no", language_probability=0.4, duration_s=1.7,
                         no_speech=False, end_mark_probability=0.33)
    first_turn, _ = detector.judge(finished, lambda: guessed, language=None)
    assert (first_turn.reason, first_turn.wait_ms, first_turn.mid_phrase) == ("unsure", c.unsure_wait_ms, None)
    # Whisper's doubt is about a closing mark: with none, the words already say "unfinished"
    open_ended, _ = detector.judge(finished, lambda: _heard("Europe is full of", None), language="en")
    assert open_ended.reason == "words" and open_ended.wait_ms == c.unfinished_wait_ms


# -- the voice session -----------------------------------------------------------------------------

def test_a_finished_question_is_handed_over_at_the_first_short_pause(tmp_path):
    asr = ScriptedASR("Who's going to implement a 4 % global wealth tax?")
    voice = _voice(tmp_path, asr)
    speech = _clip("en_finished_wealth_tax.wav")
    events = _feed(voice, np.concatenate([_silence(0.5), speech, _silence(3.0)]))
    handed = [(t, e) for t, e in events if e.kind == "utterance"]
    assert len(handed) == 1
    t, event = handed[0]
    # the fixed rule waited 0.5 s of silence; a 200 ms pause and one chunk are enough now
    assert t - (0.5 + len(speech) / 16000) < 0.5
    assert event.transcript.text.endswith("tax?") and event.verdict.finished  # the words come with the turn
    assert asr.calls == 1


def test_a_pause_after_a_sentence_whisper_doubts_is_answered_after_the_shorter_wait(tmp_path):
    asr = ScriptedASR("Who's going to implement a tax.", end_mark_probability=0.5)
    voice = _voice(tmp_path, asr)
    waited, event = _hand_over(voice, _clip("en_finished_wealth_tax.wav"), 3.0)
    assert event.verdict.reason == "unsure"
    assert voice.turn_end.config.unsure_wait_ms / 1000 <= waited < voice.turn_end.config.unfinished_wait_ms / 1000
    assert asr.calls == 1 and event.transcript.text.endswith("tax.")  # the words heard at the pause


def test_speech_that_goes_on_within_the_shorter_wait_joins_the_same_turn(tmp_path):
    asr = ScriptedASR("And the answer is clear.", "And the answer that comes back is, who is going to implement a tax?",
                      end_mark_probability=0.5)
    # finished_probability 0: the first pause counts as sounding finished, so that the words decide
    voice = VoiceSession(Conversation(engine=None, session_dir=tmp_path / "s", asr=asr), end_of_turn="smart",
                         turn_end=TurnEndDetector(TurnEndConfig(finished_probability=0.0)))
    voice.start()
    first, second = _clip("en_cut_and_the_answer_that.wav"), _clip("en_finished_wealth_tax.wav")
    # 0.8 s between the clips, and their own edges: the next word starts about 1.05 s after the last one, within
    # the 1.2 s wait, though the VAD confirms it as speech only after the wait is over
    events = _feed(voice, np.concatenate([_silence(0.5), first, _silence(0.8), second, _silence(2.0)]))
    handed = [e for _, e in events if e.kind == "utterance"]
    assert len(handed) == 1, [(e.kind, e.verdict) for _, e in events]
    assert len(handed[0].audio) / 16000 >= len(first) / 16000 + 0.8 + len(second) / 16000 - 0.1
    assert asr.calls == 2 and handed[0].transcript.text.endswith("tax?")  # heard at each pause


@pytest.mark.real
def test_a_real_pause_after_words_that_read_as_a_sentence_is_not_answered_at_once(real_models_dir):
    # "Und Europa ist im Moment voll" | von bauphysikalischen Glashäusern: Smart Turn hears a finished
    # sentence (0.98) and Whisper may write a full stop, but it hardly chose one (0.44 on one CPU).
    from backend.media import AudioClip
    from backend.models.asr import open_recognizer

    whisper = open_recognizer(str(real_models_dir / "whisper-base"), device="cpu")
    detector = TurnEndDetector()
    pause = _silence(0.2)

    def judge(name: str, language: str):
        audio = np.concatenate([_silence(0.3), _clip(name), pause])
        return detector.judge(audio, lambda: whisper.transcribe(AudioClip(samples=audio), language=language),
                              language=language)

    cut, heard_cut = judge("de_cut_europa_ist_im_moment_voll.wav", "de")
    assert cut.wait_ms >= detector.config.unsure_wait_ms, (cut, heard_cut.text)
    finished, heard = judge("en_finished_wealth_tax.wav", "en")
    assert (finished.finished, finished.wait_ms) == (True, 0), (finished, heard.text)
    assert heard.end_mark_probability >= detector.config.sure_end_probability


def test_a_transcript_ending_in_an_article_keeps_the_turn_open(tmp_path):
    # The voice sounds finished, but the words stop at "the": wait for the rest.
    asr = ScriptedASR("Who's going to implement the")
    voice = _voice(tmp_path, asr)
    speech = _clip("en_finished_wealth_tax.wav")
    end = 0.5 + len(speech) / 16000
    events = _feed(voice, np.concatenate([_silence(0.5), speech, _silence(1.5)]))
    assert not [e for _, e in events if e.kind == "utterance"]
    # Nobody goes on: after the longer limit the turn is handed over all the same.
    more = _feed(voice, _silence(2.0))
    handed = [(t, e) for t, e in more if e.kind == "utterance"]
    assert len(handed) == 1 and handed[0][1].verdict.reason == "words"
    waited = voice.vad.stream_time - (2.0 - handed[0][0]) - end
    assert voice.turn_end.config.unfinished_wait_ms / 1000 <= waited < 3.5
    assert len(handed[0][1].audio) >= len(speech)


def test_speech_after_an_unfinished_pause_joins_the_same_turn(tmp_path):
    asr = ScriptedASR("And the answer that comes back is, who is going to implement a tax?")
    voice = _voice(tmp_path, asr)
    first, second = _clip("en_cut_and_the_answer_that.wav"), _clip("en_finished_wealth_tax.wav")
    events = _feed(voice, np.concatenate([_silence(0.5), first, _silence(0.6), second, _silence(2.0)]))
    handed = [e for _, e in events if e.kind == "utterance"]
    assert len(handed) == 1, [e.kind for _, e in events]
    assert len(handed[0].audio) / 16000 >= len(first) / 16000 + 0.6 + len(second) / 16000 - 0.1
    assert voice.utterances == 1
    # the first pause sounded unfinished, and the user went on within a second: its words were not needed
    assert asr.calls == 1 and handed[0].transcript.text.endswith("tax?")


def test_a_turn_held_as_unfinished_keeps_the_words_heard_at_its_pause(tmp_path):
    # Smart Turn hears "And the answer that" as unfinished; nobody goes on. The turn is handed over
    # after the longer wait with the words Whisper heard at the pause: they are not heard again.
    asr = ScriptedASR("And the answer that")
    voice = _voice(tmp_path, asr)
    speech = _clip("en_cut_and_the_answer_that.wav")
    events = _feed(voice, np.concatenate([_silence(0.5), speech, _silence(3.5)]))
    handed = [e for _, e in events if e.kind == "utterance"]
    assert len(handed) == 1 and handed[0].verdict.reason == "audio" and not handed[0].verdict.finished
    assert handed[0].transcript.text == "And the answer that" and asr.calls == 1


def test_a_voice_heard_as_unfinished_with_words_that_end_surely_waits_the_shorter_time(tmp_path):
    # The sound says "more to come", the words heard after a second of silence end a sentence Whisper
    # closed surely: the two disagree, and the turn goes after the shorter wait, not the longer one.
    asr = ScriptedASR("And the answer is no.", end_mark_probability=0.95)
    voice = _voice(tmp_path, asr)
    speech = _clip("en_cut_and_the_answer_that.wav")
    waited, event = _hand_over(voice, speech, 3.5)
    config = voice.turn_end.config
    assert event.verdict.reason == "unsure", event.verdict
    assert config.unsure_wait_ms / 1000 <= waited < config.unfinished_wait_ms / 1000
    assert event.transcript.text == "And the answer is no." and asr.calls == 1
    # words Whisper hardly closed leave the longer wait as it was
    voice = _voice(tmp_path / "doubted", ScriptedASR("And the answer is no.", end_mark_probability=0.4))
    waited, event = _hand_over(voice, speech, 3.5)
    assert event.verdict.reason == "audio" and waited >= config.unfinished_wait_ms / 1000


class HeldUpASR(ScriptedASR):
    """Speech recognition that hears nothing until the test lets it (a Whisper call on a busy CPU)."""

    def __init__(self, *texts: str) -> None:
        super().__init__(*texts)
        self.go = threading.Event()
        self.started = threading.Event()

    def transcribe(self, clip, language=None) -> Transcript:
        self.started.set()
        assert self.go.wait(30), "the test never let the transcription finish"
        return super().transcribe(clip, language)


def _feed_live(voice: VoiceSession, samples: np.ndarray) -> list:
    """Feed chunks without waiting for any verdict, as the browser's stream does."""
    import soxr

    pcm = (np.clip(soxr.resample(samples, 16000, MIC_RATE), -1, 1) * 32767).astype(np.int16)
    step = int(MIC_RATE * CHUNK_S)
    return [e for i in range(0, len(pcm), step) for e in voice.hear(pcm[i:i + step], MIC_RATE)]


def test_the_microphone_is_heard_on_while_the_pause_is_judged(tmp_path):
    asr = HeldUpASR("Who's going to implement a 4 % global wealth tax?")
    voice = _voice(tmp_path, asr)
    speech = _clip("en_finished_wealth_tax.wav")
    events = _feed_live(voice, np.concatenate([_silence(0.5), speech, _silence(0.5)]))
    assert asr.started.wait(30)  # Whisper is at work on the pause ...
    after_pause = voice.vad.stream_time
    events += _feed_live(voice, _silence(1.0))  # ... and the stream goes on being heard meanwhile
    assert voice.vad.stream_time == pytest.approx(after_pause + 1.0, abs=0.11)
    assert not [e for e in events if e.kind == "utterance"]
    asr.go.set()
    voice.wait_for_verdict(30)
    handed = [e for e in _feed_live(voice, _silence(0.1)) if e.kind == "utterance"]  # the next chunk brings it
    assert len(handed) == 1 and handed[0].transcript.text.endswith("tax?") and handed[0].verdict.finished


def test_speech_that_resumes_while_the_pause_is_judged_joins_the_same_turn(tmp_path):
    # The first pause's words say "finished", but the user went on before the verdict came in.
    asr = HeldUpASR("Who's going to implement a 4 % global wealth tax?")
    voice = _voice(tmp_path, asr)
    first, second = _clip("en_finished_wealth_tax.wav"), _clip("en_cut_and_the_answer_that.wav")
    events = _feed_live(voice, np.concatenate([_silence(0.5), first, _silence(0.3)]))
    assert asr.started.wait(30)
    events += _feed_live(voice, second)
    asr.go.set()  # the stale verdict arrives while the user speaks: it is not acted on
    voice.wait_for_verdict(30)
    events += [e for _, e in _feed(voice, _silence(3.0))]
    handed = [e for e in events if e.kind == "utterance"]
    assert len(handed) == 1, [e.kind for e in events]
    assert len(handed[0].audio) / 16000 >= (len(first) + len(second)) / 16000
    assert voice.utterances == 1


def test_the_language_picked_in_the_page_is_the_one_heard_at_a_pause(tmp_path):
    # "zum" ends a German phrase; in English it would be a word like any other.
    asr = ScriptedASR("Wir gehen heute zum", language="en")
    voice = _voice(tmp_path, asr)
    voice.spoken_language = "de"
    events = _feed(voice, np.concatenate([_silence(0.5), _clip("en_finished_wealth_tax.wav"), _silence(1.5)]))
    assert asr.forced == ["de"] and not [e for _, e in events if e.kind == "utterance"]
    voice.spoken_language = "auto"
    assert voice._language() in (None, "und")  # nothing said yet: no language


# -- "stop" means stop -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "language"), [
    ("Wait, stop.", "en"), ("Stop! Stop!", "en"), ("Hold on, please.", "en"), ("Arrête, attends !", "fr"),
    ("¡Espera, para!", "es"), ("Halt, warte bitte.", "de"), ("Aspetta un attimo.", "it"), ("Pare, por favor.", "pt"),
    ("Wacht even.", "nl"), ("Стоп, подожди.", "ru"), ("停一下", "zh"), ("ちょっと待って。", "ja"), ("잠깐만요", "ko"),
])
def test_stop_and_wait_in_many_languages(text, language):
    assert is_stop_request(text, language)


@pytest.mark.parametrize(("text", "language"), [
    ("Wait, what is the capital of Peru?", "en"),
    ("No.", "en"),  # may answer something the assistant asked
    ("Okay.", "en"),
    ("Arrête de parler de la météo et parle-moi de Paris.", "fr"),
    ("", "en"),
])
def test_a_question_or_a_bare_answer_is_no_stop_request(text, language):
    assert not is_stop_request(text, language)


def test_every_language_with_a_stop_list_stops_on_its_first_phrase():
    import json

    from backend.conversation.stop_words import PHRASES_PATH

    data = json.loads(PHRASES_PATH.read_text(encoding="utf-8"))["languages"]
    assert set(data) == stop_languages()
    for language, entry in data.items():
        assert is_stop_request(entry["stop"][0], language), language


def _said_over_an_answer(tmp_path, heard: str, clip: str, tail_s: float, end_of_turn: str):
    """``clip`` spoken while an answer is under way, Whisper hearing ``heard``: (voice, conversation, asr,
    the kinds of event, the generation the answer had)."""
    asr = ScriptedASR(heard)
    conversation = Conversation(engine=None, session_dir=tmp_path / "s", asr=asr)
    voice = VoiceSession(conversation, end_of_turn=end_of_turn)
    voice.start()
    voice.answering(conversation.generation)
    before = conversation.generation
    events = _feed(voice, np.concatenate([_silence(0.5), _clip(clip), _silence(tail_s)]))
    return voice, conversation, asr, [e.kind for _, e in events], before


@pytest.mark.parametrize("end_of_turn", ["smart", "silence"])
def test_stop_said_over_an_answer_ends_it_and_listens(tmp_path, end_of_turn):
    voice, conversation, _, kinds, before = _said_over_an_answer(
        tmp_path, "Wait, stop.", "en_finished_wealth_tax.wav", 3.0, end_of_turn)
    assert "barge_in" in kinds and "stop_request" in kinds and "utterance" not in kinds
    assert conversation.generation > before and voice.utterances == 0 and voice.state == LISTENING


def test_stop_said_in_a_voice_that_sounds_unfinished_still_only_stops(tmp_path):
    # Smart Turn hears "more to come" at the pause, so no words are heard there; the turn goes after the
    # longer silence, and the words are heard then, before it can become a question.
    voice, _, asr, kinds, _ = _said_over_an_answer(
        tmp_path, "Wait, stop.", "en_cut_and_the_answer_that.wav", 3.5, "smart")
    assert "barge_in" in kinds and "stop_request" in kinds and "utterance" not in kinds, kinds
    assert asr.calls == 1 and voice.utterances == 0


def test_a_question_said_over_an_answer_is_still_a_new_turn(tmp_path):
    _, _, _, kinds, _ = _said_over_an_answer(
        tmp_path, "Wait, what is the capital of Peru?", "en_finished_wealth_tax.wav", 1.5, "silence")
    assert "barge_in" in kinds and "utterance" in kinds and "stop_request" not in kinds


def test_an_unknown_end_of_turn_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="smart, silence"):
        VoiceSession(Conversation(engine=None, session_dir=tmp_path / "s"), end_of_turn="fast")


def test_the_words_heard_at_the_pause_are_not_heard_twice(tmp_path):
    asr = ScriptedASR("something else")
    conversation = Conversation(engine=None, session_dir=tmp_path / "s", asr=asr)
    turn = conversation.add(conversation.prepare("", [str(TURNS / "en_finished_wealth_tax.wav")]))
    heard = Transcript(text="Who's going to implement a 4 % global wealth tax?", language="en",
                       language_probability=0.98, duration_s=3.3, no_speech=False)
    assert conversation.hear(turn, heard)
    assert turn.transcript == heard.text and turn.language.tag == "en" and asr.calls == 0


def test_the_end_of_turn_model_loads_with_speech_recognition_not_when_voice_mode_starts(monkeypatch):
    from backend.audio import turn_end
    from backend.runtime import Runtime
    from backend.settings import Settings
    from tests.fakes import ScriptedEngine

    monkeypatch.setattr(turn_end, "_smart_turn", None)
    runtime = Runtime(Settings(model="unused", device="cpu", asr_model="off", tts_engine="off"),
                      engine=ScriptedEngine())
    runtime.asr = ScriptedASR("hello")
    runtime.asr.load = lambda: None
    try:
        runtime._load_asr()
        assert turn_end._smart_turn is not None
    finally:
        runtime.close()


def test_the_browser_language_guides_a_first_turn_when_none_was_chosen(tmp_path):
    # Nothing picked in the page and nothing said yet; Whisper takes the words for English and closes them
    # with a full stop. For a German browser "zum" still ends a phrase that goes on.
    asr = ScriptedASR("Wir gehen heute zum.", language="en")
    voice = _voice(tmp_path, asr)
    voice.spoken_language = "auto"
    voice.browser_languages = ("de", "en")
    events = _feed(voice, np.concatenate([_silence(0.5), _clip("en_finished_wealth_tax.wav"), _silence(1.5)]))
    assert not [e for _, e in events if e.kind == "utterance"]
    assert asr.forced == [None]  # the browser's language guides the judgement; Whisper still hears any
    voice.stop()
    voice.browser_languages = ()
    voice.start()
    events = _feed(voice, np.concatenate([_silence(0.5), _clip("en_finished_wealth_tax.wav"), _silence(1.5)]))
    assert [e for _, e in events if e.kind == "utterance"]  # without it, English words: a finished turn


def test_voice_mode_turned_off_while_a_pause_is_judged_leaves_nothing_behind(tmp_path):
    asr = HeldUpASR("Who's going to implement a 4 % global wealth tax?")
    voice = _voice(tmp_path, asr)
    _feed_live(voice, np.concatenate([_silence(0.5), _clip("en_finished_wealth_tax.wav"), _silence(0.5)]))
    assert asr.started.wait(30)
    voice.stop()  # the page's button, while Whisper works
    asr.go.set()
    assert voice._held is None and voice._judge_pool is None
    assert _feed_live(voice, _silence(0.5)) == []  # off: nothing heard, no stale turn handed over
    voice.start()  # and on again: a fresh pool, the next question is heard as ever
    asr.texts = ["What time is it?"]
    events = [e for _, e in _feed(voice, np.concatenate([_silence(0.5), _clip("en_finished_wealth_tax.wav"),
                                                           _silence(1.0)]))]
    assert [e.transcript.text for e in events if e.kind == "utterance"] == ["What time is it?"]
