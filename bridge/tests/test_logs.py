"""Logging: line formats, call ids across threads, redaction, idempotent setup, rotation, errors."""

from __future__ import annotations

import io
import logging
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from unprivileged import error_as_unprivileged

from centralita import logs
from centralita.logs import Event, LoggingSetupError, RedactingFilter, call_context, call_logger, setup_logging

FILE_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (?P<rest>.*)$")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    yield
    logs.teardown_logging()
    root.setLevel(level)
    assert root.handlers == handlers


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


def ours() -> list[logging.Handler]:
    """The root logger's handlers that setup_logging installed."""
    return [
        handler
        for handler in logging.getLogger().handlers
        if handler.get_name() in {"centralita.file", "centralita.stream"}
    ]


def test_lines_with_and_without_a_call(tmp_path: Path, stream: io.StringIO) -> None:
    log_file = tmp_path / "inbound_openai.log"
    setup_logging(log_file, stream=stream)

    logging.getLogger("centralita.telephony.ari").info("bridge ready")
    call_logger("1732543387.12").info("%s ...", Event.CONNECTING)
    logging.getLogger("centralita.calls.call").warning("no call here")

    assert stream.getvalue().splitlines() == [
        "INFO call=- bridge ready",
        "INFO call=1732543387.12 Iniciando conexión WebSocket con OpenAI ...",
        "WARNING call=- no call here",
    ]
    file_lines = log_file.read_text(encoding="utf-8").splitlines()
    rests = []
    for line in file_lines:
        match = FILE_LINE.match(line)
        assert match is not None, line
        rests.append(match["rest"])
    assert rests == [
        "INFO call=- bridge ready",
        "INFO call=1732543387.12 Iniciando conexión WebSocket con OpenAI ...",
        "WARNING call=- no call here",
    ]


def test_level_filters_and_bad_level_is_refused(stream: io.StringIO) -> None:
    setup_logging(None, level="warning", stream=stream)
    logging.getLogger("centralita").info("hidden")
    logging.getLogger("centralita").error("shown")
    assert stream.getvalue() == "ERROR call=- shown\n"
    with pytest.raises(ValueError, match=r"'LOUD'.*DEBUG, INFO"):
        setup_logging(None, level="LOUD", stream=stream)


def test_call_context_and_plain_extra(stream: io.StringIO) -> None:
    setup_logging(None, stream=stream)
    log = logging.getLogger("centralita.realtime")
    with call_context("1.1"):
        log.info("inside")
        call_logger("2.2").info("the adapter wins")
    log.info("outside")
    log.info("as call.py does", extra={"call_id": "3.3"})
    call_logger("4.4").info("extras kept", extra={"other": 1})
    assert stream.getvalue().splitlines() == [
        "INFO call=1.1 inside",
        "INFO call=2.2 the adapter wins",
        "INFO call=- outside",
        "INFO call=3.3 as call.py does",
        "INFO call=4.4 extras kept",
    ]
    with pytest.raises(ValueError, match="without spaces"):
        call_logger("two words")


def test_two_calls_in_two_threads_log_their_own_ids(stream: io.StringIO) -> None:
    setup_logging(None, stream=stream)
    # Both calls are set up before either logs, so a shared "current call" would mislabel one of them.
    both_ready = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def call(call_id: str) -> None:
        try:
            adapter = call_logger(call_id)
            with call_context(call_id):
                both_ready.wait()
                for number in range(20):
                    logging.getLogger("centralita.media.rtp").info("ctx %s line %d", call_id, number)
                    adapter.info("adapter %s line %d", call_id, number)
        except BaseException as error:
            errors.append(error)
            raise

    threads = [threading.Thread(target=call, args=(call_id,)) for call_id in ("100.1", "200.2")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    lines = stream.getvalue().splitlines()
    assert len(lines) == 80
    for line in lines:
        match = re.fullmatch(r"INFO call=(\S+) (?:ctx|adapter) (\S+) line \d+", line)
        assert match is not None, line
        assert match[1] == match[2], line
    assert {line.split()[1] for line in lines} == {"call=100.1", "call=200.2"}


API_KEY = "sk-proj-AbCdEf0123456789_xyz-987"
ARI_PASSWORD = "ari-pass-fedcba9876"


def test_redaction_of_configured_secrets_and_key_shapes(tmp_path: Path, stream: io.StringIO) -> None:
    log_file = tmp_path / "inbound_openai.log"
    setup_logging(log_file, stream=stream, secrets=[ARI_PASSWORD, "", "  "])
    log = call_logger("9.9")

    log.info("ARI login with password %s", ARI_PASSWORD)
    log.info("key %s in a message", API_KEY)
    log.info("headers: %s", {"Authorization": "Bearer eyJhbGciOi.J9-token_x", "X": "1"})
    log.info("Authorization: Basic Y2VudHJhbGl0YTpzZWNyZXQ=")
    log.info("ws://127.0.0.1:8088/ari/events?app=centralita&api_key=centralita:%s", "other-pass")
    log.info("http://centralita:pw123@127.0.0.1:8088/ari")
    log.info("desk-0123456789 and risk-assessment are not keys")

    for text in (stream.getvalue(), log_file.read_text(encoding="utf-8")):
        for secret in (ARI_PASSWORD, API_KEY, "eyJhbGciOi", "Y2VudHJhbGl0YTpzZWNyZXQ=", "other-pass", "pw123"):
            assert secret not in text
        assert "ARI login with password ***" in text
        assert "key *** in a message" in text
        assert "'Bearer ***'" in text
        assert "Authorization: Basic ***" in text
        assert "&api_key=***\n" in text
        assert "http://centralita:***@127.0.0.1:8088/ari" in text
        assert "desk-0123456789 and risk-assessment are not keys" in text


def test_redaction_of_tracebacks(stream: io.StringIO) -> None:
    setup_logging(None, stream=stream, secrets=[ARI_PASSWORD])
    try:
        raise ConnectionError(f"refused: Authorization: Bearer {API_KEY} password={ARI_PASSWORD}")
    except ConnectionError:
        logging.getLogger("centralita").exception("Realtime error: cannot connect")
    text = stream.getvalue()
    assert "Traceback" in text
    assert "ConnectionError: refused: Authorization: Bearer *** password=***" in text
    assert API_KEY not in text
    assert ARI_PASSWORD not in text


def test_redacting_filter_alone() -> None:
    redacting = RedactingFilter(["abc", "abcdef"])
    assert redacting.redact("x abcdef y abc") == "x *** y ***"
    record = logging.LogRecord("n", logging.INFO, __file__, 1, "bad %d", ("not a number",), None)
    assert redacting.filter(record) is True
    assert record.getMessage() == "bad %d (the arguments of this message could not be formatted)"


def test_setup_twice_does_not_duplicate_handlers(tmp_path: Path, stream: io.StringIO) -> None:
    root = logging.getLogger()
    before = len(root.handlers)
    setup_logging(tmp_path / "a.log", stream=stream)
    assert len(root.handlers) == before + 2
    setup_logging(tmp_path / "a.log", stream=stream)
    assert len(root.handlers) == before + 2
    assert len(ours()) == 2
    logging.getLogger("centralita").info("once")
    assert stream.getvalue() == "INFO call=- once\n"
    assert len((tmp_path / "a.log").read_text(encoding="utf-8").splitlines()) == 1

    setup_logging(None, stream=stream)
    assert [handler.get_name() for handler in ours()] == ["centralita.stream"]


def test_failed_setup_keeps_the_previous_handlers(tmp_path: Path, stream: io.StringIO) -> None:
    setup_logging(None, stream=stream)
    previous = ours()
    (tmp_path / "file").write_text("", encoding="utf-8")
    with pytest.raises(LoggingSetupError) as caught:
        setup_logging(tmp_path / "file" / "x.log", stream=stream)
    assert isinstance(caught.value, OSError)  # what the start-up catches and prints
    assert str(tmp_path / "file" / "x.log") in str(caught.value)
    assert ours() == previous


def test_log_file_is_reopened_after_rotation(tmp_path: Path, stream: io.StringIO) -> None:
    log_file = tmp_path / "asterisk" / "inbound_openai.log"  # the directory is created
    setup_logging(log_file, stream=stream)
    log = logging.getLogger("centralita")
    log.info("before rotation")
    rotated = log_file.with_name("inbound_openai.log.1")
    log_file.rename(rotated)  # what logrotate does (without copytruncate)
    assert not log_file.exists()

    log.info("after rotation")

    assert log_file.exists()
    assert log_file.read_text(encoding="utf-8").endswith("INFO call=- after rotation\n")
    assert "after rotation" not in rotated.read_text(encoding="utf-8")
    assert rotated.read_text(encoding="utf-8").endswith("INFO call=- before rotation\n")


def test_a_full_disk_is_one_warning_in_the_journal_and_the_file_says_what_it_missed(
    tmp_path: Path, stream: io.StringIO
) -> None:
    """A log file on a full filesystem (here a link to /dev/full, whose writes fail with ENOSPC): every line still
    reaches the journal, with one warning instead of a traceback per line, and nothing reaches the caller. When
    the file can be written again, it and the journal say how many lines are in the journal only."""
    log_file = tmp_path / "inbound_openai.log"
    log_file.symlink_to("/dev/full")
    setup_logging(log_file, stream=stream)
    log = call_logger("1732543387.12", "centralita.test")
    for n in range(5):
        log.info("call started %d", n)  # raises nothing
    journal = stream.getvalue().splitlines()
    assert journal == [
        f"WARNING call=- log file {log_file} cannot be written (No space left on device): its lines go to the journal"
        " only until it can be written again; free space on its filesystem or fix its owner and mode",
        *(f"INFO call=1732543387.12 call started {n}" for n in range(5)),
    ]

    log_file.unlink()  # space again: the next line finds a file it can write
    log.info("call ended")
    log.info("call started 5")

    written = [FILE_LINE.match(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    assert all(written), written
    rest = [match["rest"] for match in written if match]
    assert re.fullmatch(
        rf"WARNING call=- log file {re.escape(str(log_file))} written again: the 5 lines logged since "
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d are in the journal only",
        rest[0],
    ), rest
    assert rest[1:] == ["INFO call=1732543387.12 call ended", "INFO call=1732543387.12 call started 5"]
    assert stream.getvalue().splitlines()[len(journal) :] == [
        rest[0],
        "INFO call=1732543387.12 call ended",
        "INFO call=1732543387.12 call started 5",
    ]
    assert "Traceback" not in stream.getvalue()


def test_a_log_file_that_cannot_even_be_opened_again_does_not_reach_the_caller(
    tmp_path: Path, stream: io.StringIO
) -> None:
    """The log file's directory replaced by a file (the reopening after a rotation then fails with ENOTDIR, which
    the standard handler would raise into the code that logged)."""
    directory = tmp_path / "asterisk"
    log_file = directory / "inbound_openai.log"
    setup_logging(log_file, stream=stream)
    log = logging.getLogger("centralita.test")
    log.info("before")
    log_file.unlink()
    directory.rmdir()
    directory.write_text("not a directory", encoding="utf-8")

    log.info("during 1")
    log.info("during 2")

    assert stream.getvalue().splitlines() == [
        "INFO call=- before",
        f"WARNING call=- log file {log_file} cannot be written (Not a directory): its lines go to the journal only"
        " until it can be written again; free space on its filesystem or fix its owner and mode",
        "INFO call=- during 1",
        "INFO call=- during 2",
    ]
    directory.unlink()
    directory.mkdir()
    log.info("after")
    assert log_file.read_text(encoding="utf-8").splitlines()[-1].endswith("INFO call=- after")
    assert "the 2 lines logged since" in log_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("subdirectory", ["", "asterisk"], ids=["file", "parent"])
def test_unwritable_directory_names_path_and_fix(subdirectory: str, stream: io.StringIO) -> None:
    # Not tmp_path: pytest's base directory is private to its owner, and the unprivileged child must reach it.
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        log_file = directory / subdirectory / "inbound_openai.log"
        directory.chmod(0o555)
        try:
            message = error_as_unprivileged(lambda: setup_logging(log_file, stream=stream), LoggingSetupError)
        finally:
            directory.chmod(0o755)
        assert not log_file.exists()
    assert str(log_file) in message
    assert "Permission denied" in message
    assert "LOG_FILE" in message
    assert "install -d" in message
    assert ours() == []


def test_the_docstring_lists_every_event() -> None:
    assert logs.__doc__ is not None
    for event in Event:
        assert f"\n    {event.value} " in logs.__doc__


def test_a_workers_lines_carry_its_name_before_the_call(tmp_path: Path, stream: io.StringIO) -> None:
    """With several workers (WORKERS) they share one log file: each line says which one wrote it."""
    log_file = tmp_path / "inbound.log"
    setup_logging(log_file, stream=stream, worker="centralita-2")
    call_logger("1732543387.12", "centralita.test").info("call started")
    logging.getLogger("centralita.test").warning("ARI disconnected")
    assert stream.getvalue().splitlines() == [
        "INFO worker=centralita-2 call=1732543387.12 call started",
        "WARNING worker=centralita-2 call=- ARI disconnected",
    ]
    lines = log_file.read_text().splitlines()
    assert [line.split(" ", 2)[2] for line in lines] == [
        "INFO worker=centralita-2 call=1732543387.12 call started",
        "WARNING worker=centralita-2 call=- ARI disconnected",
    ]
    with pytest.raises(ValueError, match="worker's name"):
        setup_logging(None, stream=stream, worker="two words")
