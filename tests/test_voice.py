"""Voice mode's turn-taking: listening → thinking → speaking → listening, and barge-in from any of them."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from backend import media
from backend.conversation.speaker import answer_aloud
from backend.conversation.turns import Conversation
from backend.conversation.voice import LISTENING, OFF, SPEAKING, THINKING, VoiceSession
from backend.models.tts import SpeechRouter
from tests.fakes import ScriptedEngine, ScriptedVoice, long_answer, tokens

CHUNK_S = 0.25


def _mic_chunks(samples_16k: np.ndarray, rate: int = 48000, chunk_s: float = CHUNK_S):
    """What the browser sends: 48 kHz int16 mono, a quarter second at a time."""
    import soxr

    up = soxr.resample(samples_16k, 16000, rate)
    pcm = (np.clip(up, -1, 1) * 32767).astype(np.int16)
    step = int(rate * chunk_s)
    for i in range(0, len(pcm), step):
        yield rate, pcm[i:i + step]


def _speech(corpus, name="sr_english.wav") -> np.ndarray:
    return media.load_audio(corpus / "speech" / name).samples


def _silence(seconds: float) -> np.ndarray:
    return np.zeros(int(16000 * seconds), dtype=np.float32)


def _feed(voice: VoiceSession, samples: np.ndarray, chunk_s: float = CHUNK_S) -> list:
    events = []
    for rate, chunk in _mic_chunks(samples, chunk_s=chunk_s):
        events += voice.hear(chunk, rate)
    return events


def _chunk_kinds(voice: VoiceSession, samples: np.ndarray, chunk_s: float) -> list[list[str]]:
    """The events of each microphone chunk, in order."""
    return [[e.kind for e in voice.hear(chunk, rate)] for rate, chunk in _mic_chunks(samples, chunk_s=chunk_s)]


@pytest.fixture()
def voice(tmp_path):
    # A scripted model: the answer is still being written, at a known pace, when the user talks over it.
    conversation = Conversation(ScriptedEngine(long_answer(), token_delay_s=0.01), tmp_path / "s", max_new_tokens=3000)
    session = VoiceSession(conversation)
    session.start()
    yield session
    session.stop()
    conversation.close()


def test_off_until_started(tmp_path, corpus):
    session = VoiceSession(Conversation(ScriptedEngine(), tmp_path / "s"))
    assert session.state == OFF and _feed(session, _speech(corpus)) == []


def test_an_utterance_becomes_a_turn_with_its_first_word(voice, corpus):
    speech = _speech(corpus, "jfk.flac")
    events = _feed(voice, np.concatenate([_silence(1.0), speech, _silence(1.0)]))
    kinds = [e.kind for e in events]
    assert kinds[0] == "speech_start" and "utterance" in kinds
    start = events[0]
    utterance = next(e for e in events if e.kind == "utterance")
    # the pre-roll keeps the audio from before the onset, so the first word is not clipped
    assert utterance.audio is not None
    assert len(utterance.audio) / 16000 >= (utterance.t - start.t) + 0.3
    assert voice.state == THINKING


def test_noise_never_starts_a_turn(voice):
    rng = np.random.default_rng(0)
    noise = (0.05 * rng.standard_normal(16000 * 3)).astype(np.float32)
    clicks = np.zeros(16000 * 2, dtype=np.float32)
    clicks[::4000] = 0.9
    assert not [e for e in _feed(voice, np.concatenate([noise, clicks])) if e.kind in {"speech_start", "utterance"}]
    assert voice.state == LISTENING


def test_state_follows_the_answer(voice, monkeypatch):
    from backend.conversation import voice as voice_module

    monkeypatch.setattr(voice_module, "PLAYBACK_SLACK_S", 0.0)
    voice.answering(5)
    assert voice.state == THINKING
    voice.played(np.zeros(1600, dtype=np.float32), 16000)
    assert voice.state == SPEAKING
    voice.finished(4)  # an older answer finishing changes nothing
    assert voice.state == SPEAKING
    voice.finished(5)
    # the page still plays the 0.1 s it was handed: cutting in now still stops it
    assert voice.state == SPEAKING
    time.sleep(0.15)
    voice.hear(np.zeros(1600, dtype=np.float32), 16000)
    assert voice.state == LISTENING


def test_speech_during_an_answer_interrupts_it(voice, corpus):
    conversation = voice.conversation
    turn = conversation.add(conversation.prepare("Tell me a very long story about the sea."))
    voice.answering(turn.generation)
    barged = []

    def talk_over_it():
        time.sleep(0.3)
        barged.extend(e for e in _feed(voice, _speech(corpus, "jfk.flac")[: 16000 * 2]) if e.kind == "barge_in")

    talker = threading.Thread(target=talk_over_it)
    talker.start()
    list(conversation.answer(turn))
    talker.join()
    assert barged, "user speech over the answer must barge in"
    assert turn.status == "interrupted" and 0 < turn.stats.new_tokens < len(tokens(long_answer()))
    assert voice.state == LISTENING and voice.barge_ins == 1


def test_two_barge_ins_in_a_row(voice, corpus):
    conversation = voice.conversation
    speech = _speech(corpus, "jfk.flac")[: 16000 * 2]
    for expected in (1, 2):
        turn = conversation.add(conversation.prepare("Another long story, please."))
        voice.answering(turn.generation)
        voice.played(np.zeros(800, dtype=np.float32), 16000)
        events = _feed(voice, np.concatenate([speech, _silence(1.0)]))
        assert [e.kind for e in events].count("barge_in") == 1
        assert turn.status == "interrupted" and voice.barge_ins == expected
        list(conversation.answer(turn))  # the stale turn never starts
        assert turn.stats.new_tokens == 0


def _speaking(voice: VoiceSession) -> None:
    """An answer is playing: ten seconds of it were handed to the page."""
    turn = voice.conversation.add(voice.conversation.prepare("Tell me a long story."))
    voice.answering(turn.generation)
    voice.played(np.zeros(16000 * 10, dtype=np.float32), 16000)


def test_the_answer_pauses_at_the_first_sound_of_speech_before_the_barge_in(voice, corpus):
    _speaking(voice)
    chunks = _chunk_kinds(voice, np.concatenate([_silence(0.5), _speech(corpus, "jfk.flac")[: 16000 * 2]]), 0.05)
    paused = next(i for i, kinds in enumerate(chunks) if "pause" in kinds)
    barged = next(i for i, kinds in enumerate(chunks) if "barge_in" in kinds)
    # the microphone's chunks are 50 ms: the page falls silent a chunk or more before the barge-in is sure
    assert barged - paused >= 1, chunks
    assert not any("resume" in kinds for kinds in chunks)
    assert voice.barge_ins == 1 and voice.state == LISTENING


def test_a_cough_pauses_the_answer_and_it_plays_on(voice, corpus):
    _speaking(voice)
    burst = _speech(corpus, "jfk.flac")[16000 : 16000 + int(0.08 * 16000)]  # 80 ms of a word
    kinds = [k for chunk in _chunk_kinds(voice, np.concatenate([_silence(1.0), burst, _silence(0.6)]), 0.05)
             for k in chunk]
    assert [k for k in kinds if k in ("pause", "resume", "barge_in")] == ["pause", "resume"]
    assert voice.barge_ins == 0 and voice.state == SPEAKING
    assert voice.conversation.turns[-1].status == "pending", "the answer was not interrupted"


def _cough_over_own_voice(voice: VoiceSession, corpus, page_says: bool) -> list[str]:
    """An answer plays and comes back through the mic 50 ms late; a cough over it pauses it, and the page
    holds and releases it 60 ms after each event (the reply's way to the page). Returns the events."""
    answer = _speech(corpus, "silero_de.wav")[: 16000 * 4]
    answer = answer / np.sqrt(np.mean(answer**2)) * 0.1
    turn = voice.conversation.add(voice.conversation.prepare("Tell me a long story."))
    voice.answering(turn.generation)
    voice.played(answer, 16000)
    cough = _speech(corpus, "jfk.flac")[16000 : 16000 + int(0.1 * 16000)]
    user = np.zeros(len(answer) + 16000, np.float32)
    user[24000 : 24000 + len(cough)] = cough / np.sqrt(np.mean(cough**2)) * 0.3
    delay, lag, step = 800, 960, 800
    out = np.zeros(len(user), np.float32)  # what the speakers play, on the mic's clock
    held: list[list[int]] = []  # [from, to) mic samples the speakers held the answer
    kinds: list[str] = []
    for a in range(0, len(user), step):
        b = a + step
        for m in range(a, b):  # the speakers: the answer, moved on by what they were held
            if not any(h <= m < (r or m + 1) for h, r in held):
                k = m - sum(r - h for h, r in held if r and r <= m)
                out[m] = answer[k] if k < len(answer) else 0.0
        mic = user[a:b] + 0.5 * np.concatenate([np.zeros(delay, np.float32), out])[a:b]
        events = [e.kind for e in voice.hear((mic * 32767).astype(np.int16), 16000)]
        kinds += events
        if "pause" in events:
            held.append([b + lag, 0])
            if page_says:
                voice.speakers_held((b + lag) / 16000)
        if "resume" in events and held:
            held[-1][1] = b + lag
            if page_says:
                voice.speakers_released((b + lag) / 16000)
    return [k for k in kinds if k in ("pause", "resume", "barge_in")]


def test_the_echo_guard_follows_the_page_speakers(voice, corpus):
    # The pause event goes to the page; its speakers stop later, and it says where: lined up with what they
    # really played, the echo neither barges in while they hold the answer nor after it plays on.
    assert _cough_over_own_voice(voice, corpus, page_says=True) == ["pause", "resume"]
    assert voice.barge_ins == 0 and voice.conversation.turns[-1].status == "pending"


def test_an_echo_guard_not_told_of_the_hold_barges_in(voice, corpus):
    # What the page's word is for: the guard subtracts the echo of what no longer plays, and so adds the
    # assistant's voice, inverted, to what the voice detector hears.
    assert "barge_in" in _cough_over_own_voice(voice, corpus, page_says=False)


def test_a_hold_never_released_does_not_leave_the_next_answer_unguarded(voice, corpus):
    # The page held an answer and never played it on: Stop silenced it (or a barge-in came before the page's
    # word). The next answer's echo must still be cancelled, not wait behind that hold.
    _speaking(voice)
    _feed(voice, _silence(1.0), 0.05)
    voice.speakers_held(voice.vad.stream_time)
    voice.conversation.interrupt()  # the Stop button
    answer = _speech(corpus, "silero_de.wav")[: 16000 * 3]
    answer = answer / np.sqrt(np.mean(answer**2)) * 0.1
    turn = voice.conversation.add(voice.conversation.prepare("And now?"))
    voice.answering(turn.generation)
    voice.played(answer, 16000)
    mic = np.zeros(len(answer) + 16000, np.float32)
    mic[800 : 800 + len(answer)] = 0.5 * answer  # its echo, 50 ms late
    kinds = [e.kind for e in _feed(voice, mic, 0.05)]
    assert not {"pause", "barge_in"} & set(kinds), kinds


def test_nothing_to_pause_while_listening(voice, corpus):
    kinds = [e.kind for e in _feed(voice, np.concatenate([_silence(0.5), _speech(corpus, "jfk.flac")[:16000]]), 0.05)]
    assert "speech_start" in kinds and "pause" not in kinds and "barge_in" not in kinds


def test_barge_in_during_speech_drops_the_queued_sentences(tmp_path):
    first_sentence_played = threading.Event()

    def hold_the_rest(i: int) -> None:
        # the model writes on only once the first sentence was heard: the rest is queued behind it
        if i == 3:
            first_sentence_played.wait(30)

    sentences = ["The moon is bright tonight. ", "It shines on the sea. ", "The waves are calm. "]
    engine = ScriptedEngine(sentences + ["The wind is soft. ", "Good night!"], before_piece=hold_the_rest)
    conversation = Conversation(engine, tmp_path / "s")
    voice = VoiceSession(conversation)
    voice.start()
    turn = conversation.add(conversation.prepare("Please tell me about the night."))
    voice.answering(turn.generation)
    played, heard_after = [], []
    for event in answer_aloud(conversation, turn, SpeechRouter(engines=[ScriptedVoice()]), speak=True):
        if event.kind != "audio":
            continue
        if played:
            heard_after.append(event.chunk.audio.text)
            continue
        voice.played(event.chunk.audio.samples, event.chunk.audio.sample_rate)
        played.append(event.chunk.audio.text)
        assert voice.state == SPEAKING
        voice.barge_in()
        first_sentence_played.set()
    assert played == ["The moon is bright tonight."], "the first sentence is heard before the user cuts in"
    assert turn.status == "interrupted" and voice.state == LISTENING
    assert heard_after == [], "no sentence of the old answer after the barge-in"
    assert "Good night" not in turn.answer, "the model stopped writing at the barge-in"
    voice.stop()
    conversation.close()


def test_own_voice_from_the_speakers_does_not_interrupt(voice, corpus):
    """The assistant's own words, coming back through speakers at -6 dB and 120 ms late."""
    from bench.vad_noise import espeak

    conversation = voice.conversation
    turn = conversation.add(conversation.prepare("Tell me about the sea."))
    voice.answering(turn.generation)
    own = espeak("The sea covers most of our planet and holds countless forms of life.", "en")
    voice.played(own, 16000)
    delay = int(0.12 * 16000)
    echo = np.zeros(len(own) + delay, dtype=np.float32)
    echo[delay:] = 0.5 * own
    events = _feed(voice, echo)
    assert not [e for e in events if e.kind == "barge_in"]
    assert voice.barge_ins == 0


def test_voice_listens_again_after_an_automatic_language_retry(tmp_path):
    # Answers in English whatever it is asked: the drift an automatic language retry is for.
    drifting = ScriptedEngine("The capital of Australia is Canberra, a planned city chosen as a compromise.")
    conversation = Conversation(drifting, tmp_path / "s")
    voice = VoiceSession(conversation)
    voice.start()
    turn = conversation.add(conversation.prepare("Quelle est la capitale de l'Australie ?"))
    voice.answering(turn.generation)
    answered = []
    while turn is not None:  # what the chat does with --auto-retry-language
        list(answer_aloud(conversation, turn, None, speak=False))
        answered.append(turn)
        turn = conversation.auto_retry(turn)
    voice.finished(conversation.generation)
    assert len(answered) == 2 and answered[1].firm_language and answered[1].status == "done"
    assert voice.state == LISTENING, "the answer is over: the next words are a new turn, not a barge-in"
    conversation.close()


def test_the_echo_guard_is_changed_under_the_lock_hear_holds(tmp_path):
    conversation = Conversation(ScriptedEngine(), tmp_path / "s")
    voice = VoiceSession(conversation)
    voice.start()
    held = []
    played, cleared = voice.echo.played, voice.echo.clear
    voice.echo.played = lambda *a, **k: (held.append(("played", voice._lock.locked())), played(*a, **k))
    voice.echo.clear = lambda: (held.append(("clear", voice._lock.locked())), cleared())
    voice.played(np.zeros(1600, dtype=np.float32), 16000)
    voice.barge_in()
    assert held == [("played", True), ("clear", True)]
    conversation.close()
