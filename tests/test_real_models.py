"""The trained weights from the pinned packages assemble into folders that load and work."""

from __future__ import annotations

import pytest

from backend import media
from tests import real_models

pytestmark = pytest.mark.real


def test_every_model_folder_is_complete(real_models_dir):
    for model in real_models.MODELS.values():
        folder = real_models_dir / model.folder
        assert sorted(p.name for p in folder.iterdir()) == sorted(f.name for f in model.files)


def test_assembled_whisper_hears_a_real_recording(real_models_dir, corpus):
    faster_whisper = pytest.importorskip("faster_whisper")
    model = faster_whisper.WhisperModel(str(real_models_dir / "whisper-base"), device="cpu", compute_type="int8",
                                        cpu_threads=2)
    clip = media.load_audio(corpus / "speech" / "jfk.flac")
    segments, info = model.transcribe(clip.samples, beam_size=1, without_timestamps=True)
    text = " ".join(s.text for s in segments).lower()
    assert info.language == "en"
    assert "ask not what your country can do for you" in text
