"""The campaign request spool: the console's writer, the dialer's reader, and every file it must not trust."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from dialer_helpers import target

from centralita.dialer.requests import (
    MAX_IMPORT_BYTES,
    MAX_REQUEST_BYTES,
    RequestError,
    RequestSpool,
    parse_request,
    pending_requests,
    write_request,
)
from centralita.dialer.store import CampaignState, CampaignStore

NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    directory = tmp_path / "requests"
    directory.mkdir()
    return directory


@pytest.fixture
def store(tmp_path: Path) -> Iterator[CampaignStore]:
    with CampaignStore(tmp_path / "dialer.db") as campaigns:
        campaigns.ensure_campaign("norte-dic")
        campaigns.upsert_targets("norte-dic", [target(1), target(2)])
        campaigns.start_campaign("norte-dic")
        campaigns.ensure_campaign("sur-dic")
        campaigns.upsert_targets("sur-dic", [target(3)])
        campaigns.start_campaign("sur-dic")
        yield campaigns


def owns_norte(name: str) -> bool:
    return name.startswith("norte")


def actions(store: CampaignStore) -> list[tuple[str, str, str, str, str]]:
    return [
        (row["campaign"], row["action"], row["user"], row["source"], row["result"]) for row in reversed(store.actions())
    ]


def test_a_written_request_is_one_finished_file_the_console_lists(spool: Path) -> None:
    request = write_request(spool, "pause", "norte-dic", "sara", NOW)
    files = list(spool.iterdir())
    assert len(files) == 1
    assert files[0].name.endswith(f"-{request.request_id}.json")
    assert not files[0].name.startswith(".")  # the dot name is only the file being written
    assert files[0].stat().st_mode & 0o777 == 0o640
    content = json.loads(files[0].read_text())
    assert content == {
        "action": "pause",
        "campaign": "norte-dic",
        "user": "sara",
        "request_id": request.request_id,
        "requested_at": "2026-12-05T12:00:00.000+00:00",
    }
    assert pending_requests(spool) == [request]


def test_requests_are_listed_and_applied_oldest_first(spool: Path, store: CampaignStore) -> None:
    later = write_request(spool, "resume", "norte-dic", "sara", NOW + timedelta(seconds=1))
    first = write_request(spool, "pause", "norte-dic", "sara", NOW)
    assert [request.request_id for request in pending_requests(spool)] == [first.request_id, later.request_id]
    outcomes = RequestSpool(spool, store, owns_norte).process()
    assert [(outcome.request.action, outcome.result) for outcome in outcomes] == [
        ("pause", "applied"),
        ("resume", "applied"),
    ]
    assert store.campaign("norte-dic").state is CampaignState.RUNNING


def test_the_writer_refuses_an_unknown_action_and_an_unprintable_name(spool: Path) -> None:
    with pytest.raises(ValueError, match="'stop' is not a campaign action"):
        write_request(spool, "stop", "norte-dic", "sara", NOW)
    with pytest.raises(RequestError, match="campaign"):
        write_request(spool, "pause", "norte\n-dic", "sara", NOW)
    assert list(spool.iterdir()) == []


def test_the_dialer_applies_a_pause_audits_it_with_the_console_user_and_deletes_it(
    spool: Path, store: CampaignStore, caplog: pytest.LogCaptureFixture
) -> None:
    request = write_request(spool, "pause", "norte-dic", "sara", NOW)
    caplog.set_level(logging.INFO)
    outcomes = RequestSpool(spool, store, owns_norte).process()
    assert [(outcome.result, outcome.detail) for outcome in outcomes] == [("applied", "")]
    assert store.campaign("norte-dic").state is CampaignState.PAUSED
    assert store.campaign("sur-dic").state is CampaignState.RUNNING
    assert actions(store) == [("norte-dic", "pause", "sara", "console", "applied")]
    assert store.actions()[0]["request_id"] == request.request_id
    assert list(spool.iterdir()) == []
    assert f"campaign request {request.request_id} from console user sara: pause campaign norte-dic: applied" in (
        caplog.text
    )
    # The same pause again changes nothing and says so.
    write_request(spool, "pause", "norte-dic", "sara", NOW)
    assert [outcome.result for outcome in RequestSpool(spool, store, owns_norte).process()] == ["unchanged"]


def test_unknown_campaign_other_boxs_campaign_and_forbidden_state_are_refused_and_audited(
    spool: Path, store: CampaignStore, caplog: pytest.LogCaptureFixture
) -> None:
    write_request(spool, "pause", "norte-no-existe", "sara", NOW)
    write_request(spool, "pause", "sur-dic", "sara", NOW + timedelta(seconds=1))
    store.pause_campaign("norte-dic")
    write_request(spool, "pause", "norte-dic", "sara", NOW + timedelta(seconds=2))
    with CampaignStore(store.path) as other:
        other.ensure_campaign("norte-vacia")  # a draft with nobody to call cannot be started
    write_request(spool, "resume", "norte-vacia", "sara", NOW + timedelta(seconds=3))
    caplog.set_level(logging.INFO)
    outcomes = RequestSpool(spool, store, owns_norte).process()
    assert [(outcome.request.campaign, outcome.result) for outcome in outcomes] == [
        ("norte-no-existe", "refused"),
        ("sur-dic", "refused"),
        ("norte-dic", "unchanged"),
        ("norte-vacia", "refused"),
    ]
    assert "There is no campaign 'norte-no-existe'" in outcomes[0].detail
    assert "not one of this box's" in outcomes[1].detail
    assert "nobody left to call" in outcomes[3].detail
    assert store.campaign("sur-dic").state is CampaignState.RUNNING  # another box's: untouched
    assert [row[4] for row in actions(store)] == ["refused", "refused", "unchanged", "refused"]
    assert "pause campaign norte-no-existe: refused" in caplog.text
    assert list(spool.iterdir()) == []


def test_garbled_files_are_deleted_with_a_log_line_and_change_nothing(
    spool: Path, store: CampaignStore, caplog: pytest.LogCaptureFixture
) -> None:
    stamp = "00000000000000000001"
    (spool / f"{stamp}-aaaaaaaaaaaaaaaa.json").write_text("{not json")
    (spool / f"{stamp}-bbbbbbbbbbbbbbbb.json").write_text(json.dumps(["pause", "norte-dic"]))
    (spool / f"{stamp}-cccccccccccccccc.json").write_text(
        json.dumps(
            {
                "action": "drop",
                "campaign": "norte-dic",
                "user": "x",
                "request_id": "c" * 16,
                "requested_at": NOW.isoformat(),
            }
        )
    )
    (spool / "notas.txt").write_text("hola")
    caplog.set_level(logging.WARNING)
    assert RequestSpool(spool, store, owns_norte).process() == []
    assert list(spool.iterdir()) == []
    assert store.campaign("norte-dic").state is CampaignState.RUNNING
    assert store.actions() == []
    assert "deleted unread: it is not JSON in UTF-8" in caplog.text
    assert "deleted unread: it is not a JSON object" in caplog.text
    assert "its action 'drop' is not one of pause, resume" in caplog.text
    assert "its name is not <time>-<id>.json" in caplog.text


def test_a_symlink_is_never_followed(
    spool: Path, store: CampaignStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A link to a valid request elsewhere (or to a file only the dialer may read) is not read, and the file it
    # points to stays.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_request(elsewhere, "pause", "norte-dic", "sara", NOW)
    real_file = next(elsewhere.iterdir())
    (spool / real_file.name).symlink_to(real_file)
    caplog.set_level(logging.WARNING)
    assert RequestSpool(spool, store, owns_norte).process() == []
    assert "a symbolic link is never followed" in caplog.text
    assert list(spool.iterdir()) == []
    assert real_file.exists()
    assert store.campaign("norte-dic").state is CampaignState.RUNNING
    assert store.actions() == []


def test_a_too_big_file_and_a_fifo_are_refused(
    spool: Path, store: CampaignStore, caplog: pytest.LogCaptureFixture
) -> None:
    request = {
        "action": "pause",
        "campaign": "norte-dic",
        "user": "sara",
        "request_id": "d" * 16,
        "requested_at": NOW.isoformat(),
        "padding": "x" * MAX_REQUEST_BYTES,
    }
    (spool / f"{'1' * 20}-{'d' * 16}.json").write_text(json.dumps(request))
    os.mkfifo(spool / f"{'2' * 20}-{'e' * 16}.json")  # opening it must not block the dialer
    caplog.set_level(logging.WARNING)
    assert RequestSpool(spool, store, owns_norte).process() == []
    assert f"larger than {MAX_REQUEST_BYTES} bytes" in caplog.text
    assert "not a regular file" in caplog.text
    assert list(spool.iterdir()) == []
    assert store.campaign("norte-dic").state is CampaignState.RUNNING


def test_at_most_limit_requests_a_round(spool: Path, store: CampaignStore) -> None:
    for second in range(5):
        write_request(spool, "pause", "norte-dic", "sara", NOW + timedelta(seconds=second))
    spool_reader = RequestSpool(spool, store, owns_norte)
    assert len(spool_reader.process(limit=3)) == 3
    assert len(list(spool.iterdir())) == 2
    assert len(spool_reader.process(limit=3)) == 2


def test_a_missing_spool_is_logged_once(tmp_path: Path, store: CampaignStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    reader = RequestSpool(tmp_path / "absent", store, owns_norte)
    assert reader.process() == []
    assert reader.process() == []
    assert caplog.text.count("cannot be read") == 1
    assert pending_requests(tmp_path / "absent") == []


def test_parse_request_names_what_is_wrong() -> None:
    good = {
        "action": "resume",
        "campaign": "c",
        "user": "u",
        "request_id": "0123456789abcdef",
        "requested_at": NOW.isoformat(),
    }
    assert parse_request(json.dumps(good).encode()).action == "resume"
    for key, value, message in (
        ("request_id", "../../etc", "request_id is not 16 hexadecimal digits"),
        ("requested_at", "ayer", "requested_at is not an ISO-8601 time"),
        ("requested_at", "2026-12-05T12:00:00", "no time zone"),
        ("user", "", "'user' is missing"),
        ("campaign", 5, "'campaign' is missing"),
    ):
        with pytest.raises(RequestError, match=message):
            parse_request(json.dumps({**good, key: value}).encode())


def test_a_request_that_cannot_be_deleted_is_applied_once(
    spool: Path, store: CampaignStore, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_request(spool, "pause", "norte-dic", "sara", NOW)

    def read_only(*_args: object, **_kwargs: object) -> None:
        raise OSError(30, "Read-only file system")

    reader = RequestSpool(spool, store, owns_norte)
    monkeypatch.setattr(os, "unlink", read_only)
    caplog.set_level(logging.ERROR)
    assert [outcome.result for outcome in reader.process()] == ["applied"]
    assert reader.process() == []
    assert reader.process() == []
    assert len(store.actions()) == 1
    assert caplog.text.count("cannot be deleted (Read-only file system)") == 1
    assert "run site.yml" in caplog.text


def test_the_read_only_store_reads_and_never_writes(store: CampaignStore) -> None:
    reader = CampaignStore.read_only(store.path)
    try:
        assert [campaign.name for campaign in reader.campaigns()] == ["norte-dic", "sur-dic"]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.pause_campaign("norte-dic")
    finally:
        reader.close()
    assert store.campaign("norte-dic").state is CampaignState.RUNNING


# ---- imports ---------------------------------------------------------------------------------------------------

GOOD_CSV = (
    "id_cliente;nombre;telefono;monto;vencimiento\n"
    "C100;Ana Quispe;5550001111;350,50;2026-11-30\n"
    "C101;Luis Peña;+52 55 4000 9999;1200;01/11/2026\n"
).encode()


def import_spool(spool: Path, store: CampaignStore) -> RequestSpool:
    return RequestSpool(spool, store, owns_norte, region="MX", timezone=UTC, clock=lambda: NOW)


def detail_of(store: CampaignStore) -> dict[str, object]:
    detail: dict[str, object] = json.loads(store.actions(1)[0]["detail"])
    return detail


def test_an_import_request_carries_the_file_and_the_dialer_imports_every_row(spool: Path, store: CampaignStore) -> None:
    request = write_request(spool, "import", "norte-enero", "sara", NOW, data=GOOD_CSV, file_name="clientes.csv")
    [waiting] = pending_requests(spool)
    assert (waiting.action, waiting.file_name, waiting.encoding, waiting.data) == (
        "import",
        "clientes.csv",
        "",
        GOOD_CSV,
    )
    [outcome] = import_spool(spool, store).process()
    assert (outcome.request.request_id, outcome.result) == (request.request_id, "applied")
    assert list(spool.iterdir()) == []
    campaign = store.campaign("norte-enero")
    assert campaign.state is CampaignState.DRAFT  # imported, not started: a person starts it
    assert store.status("norte-enero").targets == {"pending": 2}
    assert actions(store)[-1] == ("norte-enero", "import", "sara", "console", "applied")
    detail = detail_of(store)
    assert (detail["rows"], detail["added"], detail["updated"], detail["warning_count"]) == (2, 2, 0, 0)
    # Again: the same customers, updated in place, nobody added twice.
    write_request(spool, "import", "norte-enero", "sara", NOW, data=GOOD_CSV, file_name="clientes.csv")
    import_spool(spool, store).process()
    assert (detail_of(store)["added"], detail_of(store)["unchanged"]) == (0, 2)
    assert store.status("norte-enero").targets == {"pending": 2}


def test_an_import_with_one_bad_row_imports_nothing_and_records_the_rows_problems(
    spool: Path, store: CampaignStore
) -> None:
    bad = GOOD_CSV + b"C102;Eva;5550002222;12x;2026-11-30\nC103;Rosa;5550003333;100;2027-01-31\n"
    write_request(spool, "import", "norte-enero", "sara", NOW, data=bad, file_name="clientes.csv")
    [outcome] = import_spool(spool, store).process()
    assert outcome.result == "refused"
    assert "norte-enero" not in [campaign.name for campaign in store.campaigns()]
    detail = detail_of(store)
    assert detail["problem_count"] == 2
    problems = detail["problems"]
    assert isinstance(problems, list)
    assert problems[0].startswith("line 4: amount '12x' is not a number")
    assert problems[1].startswith("line 5: due date 2027-01-31 is in the future")
    assert list(spool.iterdir()) == []


def test_an_import_into_an_existing_campaign_adds_to_it_and_a_finished_one_is_refused(
    spool: Path, store: CampaignStore
) -> None:
    write_request(spool, "import", "norte-dic", "sara", NOW, data=GOOD_CSV, file_name="clientes.csv")
    import_spool(spool, store).process()
    assert store.status("norte-dic").targets == {"pending": 4}
    assert store.campaign("norte-dic").state is CampaignState.RUNNING
    with sqlite3.connect(store.path) as db:
        db.execute("UPDATE campaigns SET state = 'finished' WHERE name = 'norte-dic'")
    write_request(spool, "import", "norte-dic", "sara", NOW, data=GOOD_CSV.replace(b"C100", b"C200"), file_name="x.csv")
    [outcome] = import_spool(spool, store).process()
    assert outcome.result == "refused"
    assert "is finished" in str(detail_of(store)["error"])
    assert store.status("norte-dic").targets == {"pending": 4}


def test_an_import_of_a_file_the_importer_refuses_or_of_another_boxs_campaign_changes_nothing(
    spool: Path, store: CampaignStore
) -> None:
    write_request(spool, "import", "norte-enero", "sara", NOW, data=b"id,nombre\nC1,Ana\n", file_name="corto.csv")
    later = NOW + timedelta(seconds=1)  # the spool's order is the time of the request
    write_request(spool, "import", "sur-enero", "sara", later, data=GOOD_CSV, file_name="clientes.csv")
    first, second = import_spool(spool, store).process()
    assert (first.result, second.result) == ("refused", "refused")
    assert "lacks the columns phone, amount_due, due_date" in json.loads(store.actions(2)[1]["detail"])["error"]
    assert "not one of this box's" in json.loads(second.detail)["error"]
    assert [campaign.name for campaign in store.campaigns()] == ["norte-dic", "sur-dic"]


def test_the_dialer_reads_an_import_in_the_encoding_asked(spool: Path, store: CampaignStore) -> None:
    latin = GOOD_CSV.decode().encode("latin-1")
    write_request(spool, "import", "norte-a", "sara", NOW, data=latin, file_name="a.csv")
    later = NOW + timedelta(seconds=1)
    write_request(spool, "import", "norte-b", "sara", later, data=latin, file_name="b.csv", encoding="latin-1")
    first, second = import_spool(spool, store).process()
    assert first.result == "refused"
    assert "is not UTF-8" in json.loads(store.actions(2)[1]["detail"])["error"]
    assert second.result == "applied"
    with pytest.raises(RequestError, match="encoding 'klingon'"):
        write_request(spool, "import", "norte-c", "sara", NOW, data=latin, file_name="c.csv", encoding="klingon")


def test_import_requests_that_are_not_well_formed_are_refused(spool: Path, store: CampaignStore) -> None:
    with pytest.raises(RequestError, match="csv is empty"):
        write_request(spool, "import", "norte-a", "sara", NOW, data=b"", file_name="a.csv")
    with pytest.raises(RequestError, match="larger than"):
        write_request(spool, "import", "norte-a", "sara", NOW, data=b"x" * (MAX_IMPORT_BYTES + 1), file_name="a.csv")
    base = json.loads(write_request(spool, "pause", "norte-dic", "sara", NOW).to_json())
    assert parse_request(json.dumps(base).encode()).action == "pause"
    # Only an import may be larger than a pause or resume: the spare room is not for them.
    with pytest.raises(RequestError, match=f"larger than {MAX_REQUEST_BYTES} bytes"):
        parse_request(json.dumps({**base, "padding": "x" * MAX_REQUEST_BYTES}).encode())
    with pytest.raises(RequestError, match="not base64"):
        parse_request(json.dumps({**base, "action": "import", "file_name": "a.csv", "csv": "%%%"}).encode())
    with pytest.raises(RequestError, match=r"csv .* is missing"):
        parse_request(json.dumps({**base, "action": "import", "file_name": "a.csv"}).encode())
    with pytest.raises(RequestError, match="file_name"):
        parse_request(json.dumps({**base, "action": "import", "csv": "QQ=="}).encode())
