"""Playing a call's recording in the console: supervisors and admins only, audited, and never anything but a
regular ``<call id>.wav`` of the recording directory (Asterisk's directory: a link there must lead nowhere)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from web_support import CALL_ID, OTHER_CALL_ID, Console, build_console, log_in

from centralita.web.recordings import open_recording

WAV = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256)) * 40


@pytest.fixture
def console(tmp_path: Path) -> Iterator[Console]:
    for built in build_console(tmp_path):
        built.settings.recordings_dir.mkdir()
        (built.settings.recordings_dir / f"{CALL_ID}.wav").write_bytes(WAV)
        yield built


def test_a_supervisor_hears_the_recording_and_the_playback_is_audited(console: Console) -> None:
    client = console.client()
    assert log_in(client, "sara") == 302
    page = client.get(f"/historial/{CALL_ID}").get_data(as_text=True)
    assert f'<audio class="recording" controls preload="none" src="/historial/{CALL_ID}/grabacion">' in page
    response = client.get(f"/historial/{CALL_ID}/grabacion")
    assert response.status_code == 200
    assert response.mimetype == "audio/wav"
    assert response.headers["Cache-Control"] == "no-store"
    assert response.content_length == len(WAV)
    assert response.get_data() == WAV
    entries = [e for e in console.store.audit_entries(50) if e["action"] == "recording_played"]
    assert [(e["user"], e["target"], e["detail"]) for e in entries] == [("sara", CALL_ID, f"{len(WAV)} bytes")]


def test_an_admin_hears_it_too(console: Console) -> None:
    client = console.client()
    assert log_in(client, "ada") == 302
    assert client.get(f"/historial/{CALL_ID}/grabacion").get_data() == WAV


def test_a_viewer_gets_no_player_and_no_recording(console: Console) -> None:
    client = console.client()
    assert log_in(client, "vera") == 302
    page = client.get(f"/historial/{CALL_ID}").get_data(as_text=True)
    assert "<audio" not in page
    assert "grabacion" not in page
    assert client.get(f"/historial/{CALL_ID}/grabacion").status_code == 403
    assert not [e for e in console.store.audit_entries(50) if e["action"] == "recording_played"]


def test_no_login_no_recording(console: Console) -> None:
    response = console.client().get(f"/historial/{CALL_ID}/grabacion")
    assert response.status_code == 302
    assert "/entrar" in response.headers["Location"]


def test_a_call_without_a_recording_has_no_player_and_404(console: Console) -> None:
    client = console.client()
    assert log_in(client, "sara") == 302
    assert "<audio" not in client.get(f"/historial/{OTHER_CALL_ID}").get_data(as_text=True)
    assert client.get(f"/historial/{OTHER_CALL_ID}/grabacion").status_code == 404


def test_a_link_planted_in_the_directory_leads_nowhere(console: Console, tmp_path: Path) -> None:
    secret = tmp_path / "web" / "web.db"
    planted = console.settings.recordings_dir / f"{OTHER_CALL_ID}.wav"
    planted.symlink_to(secret)
    client = console.client()
    assert log_in(client, "sara") == 302
    assert "<audio" not in client.get(f"/historial/{OTHER_CALL_ID}").get_data(as_text=True)
    assert client.get(f"/historial/{OTHER_CALL_ID}/grabacion").status_code == 404


@pytest.mark.parametrize("call_id", ["..", ".hidden", "a/b", "../web/web", "x" * 200, ""])
def test_ids_that_could_name_another_file_find_nothing(tmp_path: Path, call_id: str) -> None:
    (tmp_path / ".hidden.wav").write_bytes(WAV)
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.wav").write_bytes(WAV)
    assert open_recording(tmp_path, call_id) is None


def test_a_directory_or_a_fifo_named_like_a_recording_is_not_one(tmp_path: Path) -> None:
    (tmp_path / "dir.wav").mkdir()
    os.mkfifo(tmp_path / "fifo.wav")
    assert open_recording(tmp_path, "dir") is None
    assert open_recording(tmp_path, "fifo") is None  # and opening it did not block
    (tmp_path / "ok.wav").write_bytes(WAV)
    found = open_recording(tmp_path, "ok")
    assert found is not None
    with found[0] as file:
        assert (file.read(), found[1]) == (WAV, len(WAV))
