"""Video files: frames spread over the clip, the sound track heard, limits told plainly, and what the
model is given (frames + transcript, or a note when it cannot see)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from backend import media
from backend.conversation.turns import BLIND_NOTE, Conversation
from backend.errors import MediaError
from backend.media import video
from tests.fakes import ScriptedEngine
from tests.support import make_video


def speech(corpus: Path) -> Path:
    return corpus / "speech" / "sr_english.wav"


def test_a_short_clip_gives_a_handful_of_frames_in_order_and_its_sound(tmp_path, corpus):
    clip = video.load_video(make_video(tmp_path / "q.mp4", 4, sound=speech(corpus)))
    assert len(clip.frames) == video.MIN_FRAMES
    assert clip.times_s == sorted(clip.times_s) and 0 < clip.times_s[0] < 1.5 and clip.times_s[-1] > 2.5
    assert all(f.mode == "RGB" and f.size == (96, 64) for f in clip.frames)
    # the moving test pattern: the frames differ
    assert len({f.tobytes() for f in clip.frames}) == len(clip.frames)
    assert clip.audio is not None and clip.audio.sample_rate == media.TARGET_RATE
    assert 2.5 < clip.audio.duration_s <= 4.1
    assert float(np.abs(clip.audio.samples).max()) > 0.05  # the speech, not silence


def test_longer_clips_give_more_frames_up_to_the_setting(tmp_path):
    long = make_video(tmp_path / "walk.mp4", 300, size=(32, 32), fps=1)
    assert len(video.load_video(long, max_frames=8).frames) == 8
    assert len(video.load_video(long, max_frames=3).frames) == 3
    medium = video.load_video(make_video(tmp_path / "m.mp4", 60, size=(32, 32), fps=1), max_frames=8)
    assert video.MIN_FRAMES < len(medium.frames) < 8
    # spread over the whole clip, not bunched at its start
    assert medium.times_s[0] < 10 and medium.times_s[-1] > 50


@pytest.mark.parametrize("suffix", [".webm", ".mov"])
def test_webm_and_mov(tmp_path, corpus, suffix):
    clip = video.load_video(make_video(tmp_path / f"clip{suffix}", 2, sound=speech(corpus)))
    assert len(clip.frames) == video.MIN_FRAMES and clip.audio is not None


def test_a_silent_film_has_frames_and_no_sound(tmp_path):
    clip = video.load_video(make_video(tmp_path / "silent.mp4", 2))
    assert clip.frames and clip.audio is None


def test_big_frames_are_shrunk_for_the_model(tmp_path):
    clip = video.load_video(make_video(tmp_path / "hd.mp4", 0.4, size=(1920, 1080)))
    assert max(clip.frames[0].size) == video.MAX_FRAME_SIDE


@pytest.mark.parametrize(
    ("build", "key", "words"),
    [
        (lambda t: make_video(t / "hour.mp4", 3600, size=(16, 16), fps=0.2), "media.video_too_long",
         "too long (60:00 min; the limit is 10:00 min)"),
        (lambda t: make_video(t / "huge.mp4", 0.2, size=(4400, 2200)), "media.video_too_large",
         "4400×2200"),
        (lambda t: _bytes(t / "broken.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20),
         "media.not_video", "not a video"),
        (lambda t: _bytes(t / "empty.mp4", b""), "media.empty_file", "is empty"),
        (lambda t: _bytes(t / "notes.mp4", b"this is a shopping list\n"), "media.not_video", "text file"),
    ],
    ids=["one_hour", "huge_resolution", "corrupt", "zero_length", "text"],
)
def test_unusable_videos_are_refused_plainly(tmp_path, build, key, words):
    with pytest.raises(MediaError) as info:
        video.load_video(build(tmp_path))
    assert info.value.key == key and words in info.value.message


def test_a_truncated_video_keeps_what_decodes_or_says_it_is_damaged(tmp_path):
    whole = make_video(tmp_path / "whole.mp4", 3).read_bytes()
    cut = _bytes(tmp_path / "cut.mp4", whole[: len(whole) // 2])
    try:
        clip = video.load_video(cut)
    except MediaError as err:
        assert err.key in {"media.video_corrupt", "media.not_video", "media.video_empty"}
    else:
        assert clip.frames


def test_a_song_with_cover_art_is_a_recording_not_a_video(tmp_path, corpus):
    import subprocess

    cover = tmp_path / "cover.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(cover)
    song = tmp_path / "song.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(speech(corpus)), "-i", str(cover),
                    "-map", "0:a", "-map", "1:v", "-c:v", "png", "-disposition:v", "attached_pic", "-c:a",
                    "libmp3lame", str(song)], check=True, capture_output=True, timeout=60)
    assert not video.is_video_file(song) and media.is_audio_file(song)
    assert not video.is_video_file(corpus / "images" / "easy_french.jpg")


def _bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- what the model is given


class Heard:
    """A speech recognizer that hears a set sentence in a set language."""

    def __init__(self, text: str, language: str = "fr") -> None:
        self.text, self.language = text, language

    def transcribe(self, clip):
        from types import SimpleNamespace

        return SimpleNamespace(text=self.text, language=self.language, language_probability=0.97, no_speech=False)


def test_frames_and_transcript_reach_the_prompt(tmp_path, corpus):
    engine = ScriptedEngine("Un tableau.")
    conversation = Conversation(engine, tmp_path / "s", asr=Heard("Qu'est-ce qu'on voit sur ce tableau ?"))
    turn = conversation.add(conversation.prepare("", [str(make_video(tmp_path / "q.mp4", 4,
                                                                        sound=speech(corpus)))]))
    assert "".join(conversation.answer(turn)) == "Un tableau."
    user = engine.prompts[-1][-1]
    assert len(user.images) == len(turn.frame_paths) == video.MIN_FRAMES
    assert "Qu'est-ce qu'on voit sur ce tableau ?" in user.text
    assert turn.language.tag == "fr" and turn.answer_language == "fr"
    assert Path(turn.video_path).parent == conversation.session_dir and turn.audio_path


def test_all_eight_frames_of_a_long_clip_reach_the_prompt(tmp_path):
    """The video's frames are not cut to the context's budget for older pictures."""
    engine = ScriptedEngine("ok")
    conversation = Conversation(engine, tmp_path / "s", video_frames=8)
    turn = conversation.add(conversation.prepare("What happens?", [str(make_video(tmp_path / "walk.mp4", 300,
                                                                                  size=(32, 32), fps=1))]))
    list(conversation.answer(turn))
    assert len(engine.prompts[-1][-1].images) == 8


def test_a_video_beside_images_stays_within_the_picture_limit(tmp_path):
    pictures = []
    for i in range(6):
        pictures.append(str(tmp_path / f"p{i}.png"))
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(pictures[-1])
    conversation = Conversation(ScriptedEngine("ok"), tmp_path / "s", video_frames=8)
    turn = conversation.prepare("compare", pictures + [str(make_video(tmp_path / "w.mp4", 300, size=(32, 32),
                                                                      fps=1))])
    assert len(turn.image_paths) + len(turn.frame_paths) == conversation.limits.max_images_per_turn


def test_a_model_that_cannot_see_gets_the_transcript_and_a_note(tmp_path, corpus):
    engine = ScriptedEngine("ok", accepts_images=False)
    conversation = Conversation(engine, tmp_path / "s", asr=Heard("What colour is the car?", "en"))
    turn = conversation.add(conversation.prepare("", [str(make_video(tmp_path / "q.mp4", 3,
                                                                        sound=speech(corpus)))]))
    list(conversation.answer(turn))
    user = engine.prompts[-1][-1]
    assert "What colour is the car?" in user.text and BLIND_NOTE in user.text


def test_a_bad_video_loses_nothing(tmp_path):
    conversation = Conversation(ScriptedEngine("ok"), tmp_path / "s")
    broken = _bytes(tmp_path / "broken.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 20)
    with pytest.raises(MediaError) as info:
        conversation.prepare("look", [str(broken)])
    assert info.value.key in {"media.not_video", "media.video_corrupt"}
    assert list(conversation.session_dir.iterdir()) == [] and conversation.turns == []


def test_the_chat_shows_the_video_with_its_transcript(tmp_path, corpus):
    from app import render

    conversation = Conversation(ScriptedEngine("ok"), tmp_path / "s", asr=Heard("Where is this?", "en"))
    turn = conversation.add(conversation.prepare("Look", [str(make_video(tmp_path / "q.mp4", 3,
                                                                            sound=speech(corpus)))]))
    list(conversation.answer(turn))
    message = render.user_message(turn)
    paths = [block["path"] for block in message["content"] if isinstance(block, dict)]
    assert paths == [turn.video_path]  # the video (its sound plays in it), not a second audio player
    assert "Look" in message["content"][0] and "Where is this?" in message["content"][0]


# --------------------------------------------------------------------------- the camera in voice mode


def test_the_camera_keeps_nothing_while_off_and_the_newest_pictures_while_on(tmp_path):
    from backend.conversation.camera import MAX_AGE_S, CameraFeed

    def plain(rgb):
        return np.broadcast_to(np.array(rgb, np.uint8), (48, 64, 3)).copy()

    red, green, blue = plain((255, 0, 0)), plain((0, 255, 0)), plain((0, 0, 255))
    feed = CameraFeed(keep=2)
    assert not feed.see(red, now=0.0) and feed.latest(now=0.0) == []  # off: dropped
    feed.start()
    for t, picture in enumerate((red, green, blue)):
        assert feed.see(picture, now=float(t))
    assert [img.getpixel((0, 0)) for img in feed.latest(now=2.0)] == [(0, 255, 0), (0, 0, 255)]  # the last two
    assert feed.latest(now=2.0 + MAX_AGE_S + 1) == []  # a stalled stream sends nothing stale
    feed.see(red)
    feed.see(green)
    saved = feed.save_latest(tmp_path, "voice-0001-camera")
    assert [p.name for p in saved] == ["voice-0001-camera-1.jpg", "voice-0001-camera-2.jpg"]
    assert Image.open(saved[-1]).size == (64, 48)
    feed.stop()
    assert feed.latest() == [] and not feed.see(blue)


def test_a_spoken_turn_with_a_camera_picture_shows_both(tmp_path, corpus):
    """What voice mode hands the conversation: the utterance and the camera's picture, one turn."""
    from app import render

    picture = tmp_path / "voice-0001-camera-1.jpg"
    Image.open(corpus / "images" / "easy_french.jpg").save(picture)
    engine = ScriptedEngine("Un panneau.")
    conversation = Conversation(engine, tmp_path / "s", asr=Heard("Que dit ce panneau ?"))
    turn = conversation.add(conversation.prepare("", [str(speech(corpus)), str(picture)]))
    list(conversation.answer(turn))
    assert len(engine.prompts[-1][-1].images) == 1 and "Que dit ce panneau" in engine.prompts[-1][-1].text
    shown = [b["path"] for b in render.user_message(turn)["content"] if isinstance(b, dict)]
    assert shown == [turn.image_paths[0], turn.audio_path]


# --------------------------------------------------------------------------- frames as a video or as pictures

VIDEO_BRANCH = {
    "gemma4": "{%- elif item['type'] == 'video' -%}{{ '<|video|>' }}",
    "qwen25omni": "{%- elif item['type'] == 'video' -%}{{ '<|vision_bos|><|VIDEO|><|vision_eos|>' }}",
}


@pytest.mark.parametrize("family", sorted(VIDEO_BRANCH))
def test_frames_go_as_one_video_where_the_chat_template_takes_video(tiny_dir, tmp_path, family):
    from backend.cancel import CancelScope
    from backend.models.engine import GenerationStats, LocalEngine, PromptMessage, _template_takes_video

    clip = video.load_video(make_video(tmp_path / "walk.mp4", 80, size=(160, 120), fps=1), max_frames=8)
    message = PromptMessage("user", "What happens?", images=clip.frames, video_frames=len(clip.frames),
                            video_times=clip.times_s)
    engine = LocalEngine(str(tiny_dir / family), device="cpu")
    engine.load()
    # the tiny models' template has no video item: the frames go as pictures
    assert not engine.accepts_video
    inputs = engine.encode([message])
    assert "pixel_values_videos" not in inputs and "pixel_values" in inputs

    template = engine.processor.chat_template
    engine.processor.chat_template = template.replace("{%- elif item['type'] == 'audio' -%}",
                                                      VIDEO_BRANCH[family] + "{%- elif item['type'] == 'audio' -%}")
    engine.accepts_video = _template_takes_video(engine.processor)
    assert engine.accepts_video
    inputs = engine.encode([message])
    assert "pixel_values_videos" in inputs and "pixel_values" not in inputs
    if family == "gemma4":  # each frame is labelled with where it was taken (mm:ss)
        prompt = engine.processor.tokenizer.decode(inputs["input_ids"][0])
        assert [f"{int(t) // 60:02d}:{int(t) % 60:02d}" for t in clip.times_s] == [
            stamp for stamp in prompt.split() if len(stamp) == 5 and stamp[2] == ":"]
    stats = GenerationStats()
    assert "".join(engine.stream([message], CancelScope(), 3, stats)) and stats.new_tokens == 3
    engine.close()


def test_asking_again_in_the_language_keeps_the_video(tmp_path, corpus):
    engine = ScriptedEngine("ok")
    conversation = Conversation(engine, tmp_path / "s", asr=Heard("Was passiert hier?", "de"))
    turn = conversation.add(conversation.prepare("", [str(make_video(tmp_path / "q.mp4", 3,
                                                                        sound=speech(corpus)))]))
    list(conversation.answer(turn))
    retry = conversation.retry_in_language(turn.id)
    list(conversation.answer(retry))
    assert retry.video_path == turn.video_path and retry.frame_paths == turn.frame_paths
    assert len(engine.prompts[-1][-1].images) == len(turn.frame_paths)
