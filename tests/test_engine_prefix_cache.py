"""A text model's next turn prefills only what is new (the KV cache of the last prompt and answer is
kept), and answers token for token what it answers with the whole prompt prefilled."""

from __future__ import annotations

import pytest

from backend.cancel import CancelScope
from backend.conversation.turns import system_prompt
from backend.errors import GenerationError
from backend.models.engine import GenerationStats, LocalEngine, PromptMessage


@pytest.fixture(scope="module")
def text_engine(tiny_text):
    engine = LocalEngine(str(tiny_text), device="cpu")
    engine.load()
    return engine


def answer(engine: LocalEngine, messages: list[PromptMessage], monkeypatch, tokens: int = 12, cache: bool = True,
           stop_after: int | None = None) -> tuple[list[int], str, GenerationStats]:
    """The new token ids, the text and the stats of one answer; ``cache=False`` prefills the whole prompt
    with no cache passed, as the engine did before it kept one, and leaves the kept cache alone."""
    outputs = []
    generate = engine._generator.generate
    stats, scope = GenerationStats(), CancelScope()

    def spy(*args, **kwargs):
        if stop_after is not None:  # a Stop pressed as the answer's token ``stop_after`` comes out
            put = kwargs["streamer"].put
            kwargs["streamer"].put = lambda value: (put(value), stats.new_tokens >= stop_after and scope.cancel())
        outputs.append(generate(*args, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(engine._generator, "generate", spy)
    monkeypatch.setattr(engine, "_prefix_cacheable", cache)
    text = "".join(engine.stream(messages, scope, tokens, stats))
    monkeypatch.undo()
    return outputs[0][0, stats.prompt_tokens:].tolist(), text, stats


def first_turn(text: str = "Hello there, how are you?", language: str = "en") -> list[PromptMessage]:
    return [PromptMessage("system", system_prompt(language)), PromptMessage("user", text)]


def test_the_next_turn_prefills_only_what_is_new_and_answers_the_same(text_engine, monkeypatch):
    text_engine._prefix = None
    messages = first_turn()
    _, said, first = answer(text_engine, messages, monkeypatch)
    messages += [PromptMessage("assistant", said), PromptMessage("user", "And tomorrow?")]

    ids, _, stats = answer(text_engine, messages, monkeypatch)
    assert stats.cached_tokens >= first.prompt_tokens  # the history, the last answer's start at least
    assert stats.cached_tokens < stats.prompt_tokens
    assert ids == answer(text_engine, messages, monkeypatch, cache=False)[0]


def test_the_same_prompt_again_prefills_its_last_token_only(text_engine, monkeypatch):
    messages = first_turn("Once more")
    answer(text_engine, messages, monkeypatch)
    ids, _, stats = answer(text_engine, messages, monkeypatch)
    assert stats.cached_tokens == stats.prompt_tokens - 1  # generate() needs one token's logits
    assert ids == answer(text_engine, messages, monkeypatch, cache=False)[0]


def test_another_system_prompt_reuses_only_the_tokens_before_it_differs(text_engine, monkeypatch):
    answer(text_engine, first_turn(language="en"), monkeypatch)
    messages = first_turn(language="fr")
    ids, _, stats = answer(text_engine, messages, monkeypatch)
    english = text_engine.encode(first_turn(language="en"))["input_ids"][0].tolist()
    french = text_engine.encode(messages)["input_ids"][0].tolist()
    shared = next(i for i, (a, b) in enumerate(zip(english, french)) if a != b)
    assert stats.cached_tokens == shared
    assert ids == answer(text_engine, messages, monkeypatch, cache=False)[0]


def test_a_conversation_prefilled_for_voice_mode_answers_its_first_turn_from_the_system_prompt(
        text_engine, monkeypatch, tmp_path):
    from backend.conversation.turns import Conversation

    text_engine._prefix = None
    messages = first_turn("What time is it?", language="fr")
    expected, _, cold = answer(text_engine, messages, monkeypatch, cache=False)
    conversation = Conversation(engine=text_engine, session_dir=tmp_path)
    assert not conversation.prefill("auto")  # no language to prefill for yet
    assert conversation.prefill("fr")
    ids, _, stats = answer(text_engine, messages, monkeypatch)
    # the system prompt and the user's turn header come from the cache; the answer is the same
    assert len(text_engine.tokenizer(system_prompt("fr"))["input_ids"]) < stats.cached_tokens < cold.prompt_tokens
    assert ids == expected


def test_a_stopped_answer_leaves_a_cache_the_next_turn_can_use(text_engine, monkeypatch):
    text_engine._prefix = None
    messages = first_turn("Tell me a long story")
    _, said, first = answer(text_engine, messages, monkeypatch, tokens=400, stop_after=3)
    assert first.stopped and first.new_tokens < 400
    messages += [PromptMessage("assistant", said), PromptMessage("user", "Go on")]
    ids, _, stats = answer(text_engine, messages, monkeypatch)
    assert stats.cached_tokens >= first.prompt_tokens
    assert ids == answer(text_engine, messages, monkeypatch, cache=False)[0]


def test_a_failed_answer_drops_the_cache(text_engine, monkeypatch):
    answer(text_engine, first_turn(), monkeypatch)

    def fails(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(text_engine._generator, "generate", fails)
    with pytest.raises(GenerationError):
        list(text_engine.stream(first_turn(), CancelScope(), 4))
    monkeypatch.undo()
    assert text_engine._prefix is None  # it might hold the failed answer's half-written keys
    assert answer(text_engine, first_turn(), monkeypatch)[2].cached_tokens == 0


def test_models_that_see_and_hear_prefill_the_whole_prompt(gemma_engine):
    for _ in range(2):
        stats = GenerationStats()
        list(gemma_engine.stream(first_turn(), CancelScope(), 4, stats))
        assert stats.cached_tokens == 0
    assert gemma_engine._prefix is None


def test_closing_the_engine_releases_the_cache(tiny_text, monkeypatch):
    engine = LocalEngine(str(tiny_text), device="cpu")
    engine.load()
    answer(engine, first_turn(), monkeypatch)
    assert engine._prefix is not None
    engine.close()
    assert engine._prefix is None


@pytest.mark.real
@pytest.mark.slow
def test_a_trained_model_answers_the_next_turn_the_same_from_the_cache(smollm2, monkeypatch):
    engine = LocalEngine(str(smollm2), device="cpu")
    engine.load()
    messages = first_turn("I'm going to Paris next week. What should I see there?")
    _, said, first = answer(engine, messages, monkeypatch, tokens=24)
    messages += [PromptMessage("assistant", said), PromptMessage("user", "Tell me more about the Louvre.")]
    ids, text, stats = answer(engine, messages, monkeypatch)
    assert stats.cached_tokens >= first.prompt_tokens
    assert ids == answer(engine, messages, monkeypatch, cache=False)[0]
    assert text.strip()
