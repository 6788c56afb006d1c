"""The admin calls API: bearer auth, sid validation, no path traversal, listing order."""

from __future__ import annotations

import os
import time
from pathlib import Path

import orjson
import pytest
from starlette.applications import Starlette
from starlette.testclient import TestClient

from app.admin.calls import calls_routes
from app.recording.store import LocalCallStore

TOKEN = "s3cret-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SID = "CA0123456789abcdef0123456789abcdef"


def client(directory: Path, token: str | None = TOKEN) -> TestClient:
    return TestClient(Starlette(routes=calls_routes(LocalCallStore(directory), token)))


def add_call(directory: Path, sid: str, *, ended_ago_s: float = 0, mp3: bool = False) -> None:
    record = {"call_sid": sid, "end_reason": "caller_hangup", "transcript": []}
    (directory / f"{sid}.json").write_bytes(orjson.dumps(record))
    (directory / f"{sid}.wav").write_bytes(b"RIFF-wav-" + sid.encode())
    if mp3:
        (directory / f"{sid}.mp3").write_bytes(b"\xff\xe3mp3")
    moment = time.time() - ended_ago_s
    for path in directory.glob(f"{sid}.*"):
        os.utime(path, (moment, moment))


@pytest.fixture
def calls_dir(tmp_path: Path) -> Path:
    add_call(tmp_path, SID, mp3=True)
    return tmp_path


@pytest.mark.parametrize("path", ["/calls", f"/calls/{SID}", f"/calls/{SID}/recording"])
@pytest.mark.parametrize("token", [None, ""])
def test_without_an_admin_token_the_routes_do_not_exist(
    calls_dir: Path, path: str, token: str | None
) -> None:
    response = client(calls_dir, token).get(path, headers=AUTH)
    assert response.status_code == 404


@pytest.mark.parametrize("path", ["/calls", f"/calls/{SID}", f"/calls/{SID}/recording"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Bearer {TOKEN}x"},
    ],
)
def test_a_missing_or_wrong_token_is_401(
    calls_dir: Path, path: str, headers: dict[str, str]
) -> None:
    response = client(calls_dir).get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert b"RIFF" not in response.content and SID.encode() not in response.content


def test_the_right_token_reads_a_call_and_its_recordings(calls_dir: Path) -> None:
    api = client(calls_dir)
    record = api.get(f"/calls/{SID}", headers={"Authorization": f"bearer {TOKEN}"})
    assert record.status_code == 200 and record.json()["call_sid"] == SID

    wav = api.get(f"/calls/{SID}/recording", headers=AUTH)
    assert wav.status_code == 200
    assert wav.headers["content-type"] == "audio/wav"
    assert wav.content == b"RIFF-wav-" + SID.encode()

    mp3 = api.get(f"/calls/{SID}/recording?format=mp3", headers=AUTH)
    assert mp3.status_code == 200 and mp3.headers["content-type"] == "audio/mpeg"
    assert api.get(f"/calls/{SID}/recording?format=ogg", headers=AUTH).status_code == 400


def test_unknown_and_unfinished_calls_are_404(tmp_path: Path) -> None:
    api = client(tmp_path)
    assert api.get("/calls/CA00000000000000", headers=AUTH).status_code == 404
    (tmp_path / "CAinprogress01.wav").write_bytes(b"RIFF")  # no record yet: still recording
    assert api.get("/calls/CAinprogress01/recording", headers=AUTH).status_code == 404
    add_call(tmp_path, "CAnomp3000001")
    assert api.get("/calls/CAnomp3000001/recording?format=mp3", headers=AUTH).status_code == 404


@pytest.mark.parametrize(
    "sid",
    [
        "CA123",
        "XX0123456789abcdef",
        "CA0123456789.json",
        "CA0123456789%2E%2E",
        "%2E%2E",
        "CA" + "a" * 65,
    ],
)
def test_invalid_call_sids_are_400(calls_dir: Path, sid: str) -> None:
    api = client(calls_dir)
    assert api.get(f"/calls/{sid}", headers=AUTH).status_code == 400
    assert api.get(f"/calls/{sid}/recording", headers=AUTH).status_code == 400


@pytest.mark.parametrize(
    "path",
    [
        "/calls/..%2F..%2Fetc%2Fpasswd",
        "/calls/..%2f" + SID,
        f"/calls/%2E%2E%2F{SID}/recording",
        "/calls/%2Fetc%2Fpasswd/recording",
        f"/calls/{SID}%2F..%2F..%2Fsecret.json",
        "/calls/..%5C..%5Csecret",
    ],
)
def test_path_traversal_reads_nothing(tmp_path: Path, path: str) -> None:
    recordings = tmp_path / "recordings"
    recordings.mkdir()
    add_call(recordings, SID)
    (tmp_path / "secret.json").write_bytes(b'{"secret": "leaked"}')
    response = client(recordings).get(path, headers=AUTH)
    assert response.status_code in (400, 404)
    assert b"leaked" not in response.content and b"root:" not in response.content


def test_listing_is_newest_first_and_limited(tmp_path: Path) -> None:
    add_call(tmp_path, "CAoldest000001", ended_ago_s=300)
    add_call(tmp_path, "CAnewest000001", ended_ago_s=10)
    add_call(tmp_path, "CAmiddle000001", ended_ago_s=100)
    (tmp_path / "CAbroken000001.json").write_bytes(b"{not json")  # skipped, not a 500
    (tmp_path / "notes.json").write_bytes(b"{}")  # not a call
    api = client(tmp_path)

    listing = api.get("/calls", headers=AUTH).json()
    assert [c["call_sid"] for c in listing["calls"]] == [
        "CAnewest000001", "CAmiddle000001", "CAoldest000001",
    ]  # fmt: skip
    limited = api.get("/calls?limit=2", headers=AUTH).json()
    assert [c["call_sid"] for c in limited["calls"]] == ["CAnewest000001", "CAmiddle000001"]
    for bad in ("0", "-1", "abc", "100000"):
        assert api.get(f"/calls?limit={bad}", headers=AUTH).status_code == 400


def test_listing_a_missing_directory_is_empty(tmp_path: Path) -> None:
    listing = client(tmp_path / "never-created").get("/calls", headers=AUTH)
    assert listing.status_code == 200 and listing.json() == {
        "calls": [],
        "count": 0,
        "offset": 0,
        "more": False,
    }


def test_paging_filter_and_summaries(tmp_path: Path) -> None:
    sids = [f"CA{i:032x}" for i in range(5)]
    for age, sid in enumerate(sids):  # sids[0] ended last: newest
        add_call(tmp_path, sid, ended_ago_s=age * 10)
    web = tmp_path / f"{sids[3]}.json"
    web.write_bytes(
        orjson.dumps(
            {
                "call_sid": sids[3],
                "direction": "web",
                "from": "+15550001111",
                "end_reason": "agent_hangup",
                "transcript": [{}, {}],
                "tool_calls": [{}],
                "usage": {"total_tokens": 42, "prompt_tokens": 30},
            }
        )
    )
    os.utime(web, (time.time() - 30, time.time() - 30))
    api = client(tmp_path)
    first = api.get("/calls?limit=2&summary=1", headers=AUTH).json()
    assert [c["call_sid"] for c in first["calls"]] == sids[:2] and first["more"] is True
    second = api.get("/calls?limit=2&offset=2&summary=1", headers=AUTH).json()
    assert [c["call_sid"] for c in second["calls"]] == sids[2:4]
    last = api.get("/calls?limit=2&offset=4", headers=AUTH).json()
    assert [c["call_sid"] for c in last["calls"]] == sids[4:] and last["more"] is False
    found = api.get("/calls?q=WEB&summary=1", headers=AUTH).json()["calls"]
    assert found == [
        {
            "call_sid": sids[3], "direction": "web", "agent": None, "from": "+15550001111",
            "to": None, "started_at": None, "duration_s": None, "end_reason": "agent_hangup",
            "turns": 2, "tool_calls": 1, "interruptions": 0, "reconnects": 0, "tokens": 42,
        }
    ]  # fmt: skip
    assert api.get("/calls?q=%2B1555000&summary=1", headers=AUTH).json()["count"] == 1
    assert api.get("/calls?offset=-1", headers=AUTH).status_code == 400
