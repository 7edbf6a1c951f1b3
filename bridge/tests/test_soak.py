"""The soak run's reading of what SIPp and Asterisk print, its fault schedule and its verdict.

The soak run is a script, not a package: it is loaded from its file. The texts below are what SIPp 3.6 and
Asterisk print, copied from real runs; the run itself needs the lab box and is not a test.
"""

from __future__ import annotations

import importlib.util
import random
import sys
import types
from itertools import islice
from pathlib import Path

import pytest
from paths import REPO


def load_soak() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("soak", REPO / "files" / "host" / "soak.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("soak", module)
    spec.loader.exec_module(module)
    return module


soak = load_soak()

# The end of SIPp's output once it stopped: an earlier screen, then the last one with the final counts.
SIPP_END = """\
  Successful call        |        0                  |        1
  Failed call            |        0                  |        0
----------------------------- Statistics Screen ------- [1-9]: Change Screen --
  Start Time             | 2026-12-03\t21:53:00.136391\t1796334780.136391
-------------------------+---------------------------+--------------------------
  Counter Name           | Periodic value            | Cumulative value
-------------------------+---------------------------+--------------------------
  Incoming calls created |        0                  |        0
  Outgoing calls created |        0                  |       31
  Total Calls created    |                           |       31
  Current Calls          |        0                  |
-------------------------+---------------------------+--------------------------
  Successful call        |        2                  |       27
  Failed call            |        0                  |        4
-------------------------+---------------------------+--------------------------
------------------------------ Test Terminated --------------------------------
"""


def test_sipp_figures_are_the_cumulative_column_of_the_last_screen() -> None:
    assert soak.sipp_figures(SIPP_END) == {"placed": 31, "completed": 27, "failed": 4}


def test_sipp_figures_of_an_output_without_statistics_are_empty() -> None:
    assert soak.sipp_figures("Resolving remote host '127.0.0.1'... Done.\n") == {}


def test_channel_count_reads_asterisks_answer_and_says_when_there_is_none() -> None:
    assert soak.channel_count("3 active channels\n1 active call\n45 calls processed\n") == 3
    assert soak.channel_count("1 active channel\n0 active calls\n") == 1
    assert (
        soak.channel_count("Unable to connect to remote asterisk (does /var/run/asterisk/asterisk.ctl exist?)\n") == -1
    )
    assert soak.channel_count("") == -1


def test_every_fault_kind_comes_once_in_each_round_of_four() -> None:
    faults = list(islice(soak.fault_schedule(random.Random(7)), 12))
    for start in range(0, 12, 4):
        assert sorted(faults[start : start + 4]) == sorted(soak.FAULTS)
    assert len(set(map(tuple, (faults[0:4], faults[4:8], faults[8:12])))) > 1  # the order is drawn, not fixed


def test_the_seed_replays_the_schedule() -> None:
    first = list(islice(soak.fault_schedule(random.Random(42)), 8))
    assert list(islice(soak.fault_schedule(random.Random(42)), 8)) == first
    assert any(list(islice(soak.fault_schedule(random.Random(seed)), 8)) != first for seed in range(43, 53))


def test_channels_that_could_not_be_counted_are_stuck_not_none() -> None:
    assert soak.stuck_count(0, 0, 0) == 0
    assert soak.stuck_count(2, 1, 3) == 6
    assert soak.stuck_count(-1, 0, 0) == 1


def test_the_verdict_fails_on_anything_stuck_leaked_unsettled_or_unread() -> None:
    assert not soak.failed(0, True, 0, 0)
    assert not soak.failed(0, True, -1, -2)  # fewer at rest than fresh: nothing held
    assert soak.failed(1, True, 0, 0)
    assert soak.failed(0, False, 0, 0)
    assert soak.failed(0, True, 1, 0)
    assert soak.failed(0, True, 0, 1)
    assert soak.failed(0, True, None, 0)
    assert soak.failed(0, True, 0, None)


def test_the_written_scenario_carries_the_talk_time_and_no_placeholder(tmp_path: Path) -> None:
    soak.write_scenario(tmp_path, "call.xml", 12.5)
    text = (tmp_path / "call.xml").read_text(encoding="iso-8859-1")
    assert "SOAK_TALK_MS" not in text
    assert 'timeout="12500" ontimeout="caller_hangs_up"' in text


def test_faults_names_some_kinds_and_the_schedule_keeps_to_them() -> None:
    kinds = soak.parse_faults(" asterisk-restart,realtime-drop ")
    assert kinds == ("realtime-drop", "asterisk-restart")
    assert set(islice(soak.fault_schedule(random.Random(1), kinds), 10)) == set(kinds)
    assert soak.parse_faults(",".join(soak.FAULTS)) == soak.FAULTS


def test_faults_naming_an_unknown_kind_or_none_is_an_error_that_lists_the_kinds() -> None:
    for text, problem in (("service-kill,reboot", "unknown fault reboot"), (" , ", "names no fault")):
        with pytest.raises(ValueError, match=problem) as raised:
            soak.parse_faults(text)
        assert "realtime-drop,router-down,asterisk-restart,service-kill" in str(raised.value)


class ProcBox:
    """Answers the commands ``service_process`` sends into the box from a table of processes (pid -> threads,
    RSS in KiB, descriptor links), as /proc, ps and systemctl in the box would."""

    def __init__(self, main: int, processes: dict[int, tuple[int, int, list[str]]]) -> None:
        self.main = main
        self.processes = processes

    def run(self, command: str, *, check: bool = True, timeout: float = 120, privileged: bool = False) -> str:
        if command.startswith("systemctl show -p MainPID"):
            return f"{self.main}\n"
        if command.startswith("ps -o pid= --ppid"):
            return "".join(f"  {pid}\n" for pid in self.processes if pid != self.main)
        pid = int(command.split("/proc/")[1].split("/")[0])
        if pid not in self.processes:
            return ""
        threads, rss, links = self.processes[pid]
        if command.startswith("cat "):
            return f"Name:\tpython3\nThreads:\t{threads}\nVmRSS:\t{rss} kB\n"
        return "".join(f"lrwx------ 1 u u 64 Dec  4 12:00 {n} -> {link}\n" for n, link in enumerate(links))


def test_the_service_is_its_main_process_and_its_workers_summed() -> None:
    std = ["/dev/null", "/dev/null", "/dev/null"]
    box = ProcBox(
        10,
        {
            10: (3, 40000, std),  # the supervisor
            11: (9, 50000, [*std, "socket:[1]", "socket:[2]"]),  # worker 1
            12: (8, 48000, [*std, "socket:[3]"]),  # worker 2
        },
    )
    process = soak.service_process(box)
    assert process is not None
    assert (process.pid, process.processes, process.threads, process.fds, process.sockets, process.rss_kib) == (
        10,
        3,
        20,
        12,
        3,
        138000,
    )
    # A worker gone between the two readings is left out, not a failure of the reading.
    del box.processes[12]
    box.processes[13] = (1, 1, [])  # listed by ps but already exited: no descriptors
    process = soak.service_process(box)
    assert process is not None
    assert (process.processes, process.threads) == (2, 12)
