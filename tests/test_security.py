"""Security defaults: no remote code, uploads kept under our own names, minimal serving, no secrets in logs."""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

import pytest
from PIL import Image

from app import cli
from backend.settings import Settings
from tests.support import free_port

SECRET = "sk-omnilingo-test-0123456789abcdef"


# --------------------------------------------------------------------------- remote code


def _recorded_load(monkeypatch, **engine_kwargs) -> dict:
    """Load a LocalEngine with transformers' loaders replaced by a recorder that stops the load."""
    import transformers

    from backend.models.engine import LocalEngine

    seen: dict = {}

    def record(name):
        def loader(model, *args, **kwargs):
            seen[name] = kwargs.get("trust_remote_code")
            raise OSError("stop here")
        return loader

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", record("config"))
    engine = LocalEngine("some/model", device="cpu", **engine_kwargs)
    with pytest.raises(Exception):  # noqa: B017 - the recorder stops the load on purpose
        engine.load()
    return seen


def test_remote_code_is_off_by_default(monkeypatch):
    assert Settings().trust_remote_code is False
    assert Settings.from_env({}).trust_remote_code is False
    settings, _ = cli.settings_from_args([])
    assert settings.trust_remote_code is False
    assert _recorded_load(monkeypatch) == {"config": False}


def test_remote_code_only_with_the_flag_and_a_warning(monkeypatch, caplog):
    settings, _ = cli.settings_from_args(["--trust-remote-code"])
    assert settings.trust_remote_code is True
    from backend.runtime import build_engine

    assert build_engine(settings).trust_remote_code is True
    assert _recorded_load(monkeypatch, trust_remote_code=True) == {"config": True}
    with caplog.at_level(logging.WARNING, logger="omnilingo"):
        cli.warn_if_exposed(settings)
    assert "trust-remote-code" in caplog.text and "trust" in caplog.text


def test_remote_code_flag_is_the_only_way_in_the_code():
    """Nothing in the app turns trust_remote_code on by itself."""
    root = Path(__file__).resolve().parents[1]
    offenders = []
    for path in list((root / "app").rglob("*.py")) + list((root / "backend").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"trust_remote_code\s*=\s*True", line):
                offenders.append(f"{path.name}:{number}")
    assert offenders == []


# --------------------------------------------------------------------------- uploads


class _NoEngine:
    name = "none"
    accepts_images = True
    accepts_audio = False

    def load(self, progress=None) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.mark.parametrize("name", ["../../escape.png", "photo;rm -rf ~.png", "a\nb.png", "run.sh.png",
                                  "%2e%2e%2fx.png", "ñandú 写真.png"])
def test_uploads_are_kept_under_names_of_our_own(tmp_path, name):
    from backend.runtime import Runtime

    runtime = Runtime(Settings(model="unused", asr_model="off", tts_engine="off"), engine=_NoEngine())
    try:
        upload_dir = tmp_path / "uploads" / "deeper" / "still"
        upload_dir.mkdir(parents=True)
        source = upload_dir / Path(name.replace("/", "_")).name
        Image.new("RGB", (16, 16), (1, 2, 3)).save(source, "PNG")
        source.chmod(0o755)
        conversation = runtime.new_conversation()
        turn = conversation.prepare("What is this?", [str(source)])
        kept = Path(turn.image_paths[0])
        assert kept.parent == conversation.session_dir
        assert conversation.session_dir.parent == runtime.work_dir
        assert re.fullmatch(r"image-\d{4}\.png", kept.name)
        assert not kept.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        assert not (tmp_path / "escape.png").exists() and not (tmp_path / "uploads" / "escape.png").exists()
        conversation.close()
        assert not kept.exists()
    finally:
        runtime.close()
    assert not runtime.work_dir.exists() or not any(runtime.work_dir.iterdir())


# --------------------------------------------------------------------------- serving



def test_launch_serves_only_what_it_must(tmp_path):
    import httpx

    from app.server import create_app
    from app.ui import ASSETS, launch_kwargs
    from backend.runtime import Runtime

    settings = Settings(model="unused", port=free_port(), inbrowser=False, asr_model="off", tts_engine="off")
    runtime = Runtime(settings, engine=_NoEngine())
    runtime._ready.set()
    demo, runtime = create_app(settings, runtime)
    kwargs = launch_kwargs(runtime)
    allowed = [Path(p).resolve() for p in kwargs.get("allowed_paths") or []]
    assert all(p in {runtime.work_dir.resolve(), ASSETS.resolve()} for p in allowed), allowed
    assert kwargs["max_file_size"] == f"{settings.max_upload_mb}mb"
    assert "auth" not in kwargs and kwargs["server_name"] == "127.0.0.1" and not kwargs["share"]
    secret = tmp_path / "private.txt"
    secret.write_text("do not serve me")
    demo.launch(**kwargs, prevent_thread_lock=True, quiet=True)
    try:
        base = f"http://127.0.0.1:{settings.port}"
        for path in (str(secret), "/etc/passwd", str(Path(__file__).resolve()), str(ASSETS.parent / "README.md")):
            response = httpx.get(f"{base}/gradio_api/file={path}", timeout=10)
            assert response.status_code in {403, 404}, (path, response.status_code)
            assert "do not serve me" not in response.text and "root:" not in response.text
    finally:
        demo.close()
        runtime.close()


@pytest.mark.parametrize(("argv", "needle"), [
    (["--host", "0.0.0.0"], "anyone who can reach this machine"),  # noqa: S104 - the case under test
    (["--share"], "--share makes the app reachable"),
])
def test_exposed_binding_warns(caplog, argv, needle):
    settings, _ = cli.settings_from_args(argv)
    with caplog.at_level(logging.WARNING, logger="omnilingo"):
        cli.warn_if_exposed(settings)
    assert needle in caplog.text


def test_local_binding_is_quiet(caplog):
    settings, _ = cli.settings_from_args([])
    with caplog.at_level(logging.WARNING, logger="omnilingo"):
        cli.warn_if_exposed(settings)
    assert caplog.text == ""


def test_auth_flag_and_variable_reach_launch(monkeypatch):
    from app.ui import launch_kwargs
    from backend.runtime import Runtime

    for argv, env in ((["--auth", "ana:s3cret:with:colons"], {}), ([], {"OMNILINGO_AUTH": "ana:s3cret:with:colons"})):
        for key in list(os.environ):
            if key.startswith("OMNILINGO_"):
                monkeypatch.delenv(key)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings, _ = cli.settings_from_args(argv)
        runtime = Runtime(settings, engine=_NoEngine())
        try:
            assert launch_kwargs(runtime)["auth"] == ("ana", "s3cret:with:colons")
            assert "s3cret" not in repr(settings) and settings.public_dict()["auth"] == "***"
        finally:
            runtime.close()


# --------------------------------------------------------------------------- secrets


def test_api_key_never_reaches_logs_or_messages(caplog, monkeypatch):
    pytest.importorskip("backend.models.remote", reason="the remote engine is not in this tree")
    from backend.runtime import Runtime

    monkeypatch.setenv("OMNILINGO_API_KEY", SECRET)
    settings, _ = cli.settings_from_args(["--engine", "openai", "--base-url", "http://127.0.0.1:9/v1",
                                          "--model", "some-model", "--asr-model", "off", "--tts", "off"])
    assert settings.api_key == SECRET
    assert SECRET not in repr(settings) and SECRET not in str(settings.public_dict())
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("omnilingo").info("settings: %s", settings.public_dict())
        cli.warn_if_exposed(settings)
        runtime = Runtime(settings)
        try:
            status = runtime.wait_until_loaded(60)
            messages = [status.message]
            conversation = runtime.new_conversation()
            turn = conversation.add(conversation.prepare("Hello there, are you awake?"))
            try:
                for _ in conversation.answer(turn, max_new_tokens=4):
                    pass
            except Exception as err:  # noqa: BLE001 - the message is what is checked
                messages.append(str(err))
            messages.append(turn.error or "")
        finally:
            runtime.close()
    assert SECRET not in caplog.text
    assert all(SECRET not in m for m in messages)
