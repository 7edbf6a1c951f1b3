"""The media bench's own arithmetic: the callers' speech plan, barge-in latency and the harness's pacing.

Frames are built here by hand on a fake clock (numpy columns as the fake Asterisk records them), so each
figure can be checked against what it must be.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_bench_deltas import bench

FRAME_NS = 20_000_000
MS = 1_000_000


def columns(**values: list[int]) -> dict[str, np.ndarray]:
    return {name: np.array(column, dtype=np.int64) for name, column in values.items()}


def test_the_speech_plan_is_the_same_frame_by_frame_and_vectorised() -> None:
    plan = bench.SpeechPlan(period=150, length=10)
    legs = np.repeat(np.arange(40, dtype=np.int64), 600)
    frames = np.tile(np.arange(600, dtype=np.int64), 40)
    phases = plan.phases(legs, frames)
    speaking = np.array([plan.speaking(int(leg), int(frame)) for leg, frame in zip(legs, frames, strict=True)])
    assert np.array_equal(speaking, (phases < 10) & (frames >= 150))
    # Each leg speaks 10 frames in every period after the first, starting at its own offset.
    per_leg = speaking.reshape(40, 600)
    assert set(per_leg[:, :150].sum(axis=1)) == {0}
    assert set(per_leg[:, 150:].sum(axis=1)) <= {30, 40}
    assert len({plan.offset(leg) for leg in range(40)}) > 30  # spread over the period, not bunched


def test_speech_and_the_replys_unplayed_end_are_not_expected_back() -> None:
    plan = bench.SpeechPlan(period=150, length=10)
    offset = plan.offset(3)
    start = 150 + (offset - 150) % 150  # the leg's first speech
    frames = np.arange(start - 40, start + 20, dtype=np.int64)
    expected = plan.expected(np.full(len(frames), 3, dtype=np.int64), frames)
    not_expected = frames[~expected]
    assert not_expected.min() == start - bench.NOT_PLAYED_FRAMES
    assert not_expected.max() == start + 9
    assert expected[frames == start + 10].all()


def test_barge_in_latency_is_the_last_frame_of_the_interrupted_reply_after_the_speech_start() -> None:
    plan = bench.SpeechPlan(period=150, length=10)
    start = 150 + (plan.offset(0) - 150) % 150
    spoke = 10_000 * MS
    sent = columns(leg=[0, 0], frame=[start - 1, start], t_in=[spoke - FRAME_NS, spoke])
    # Leg 0's reply echoes frames up to start - 1; its last frame reached the caller 13 ms after the speech
    # started. Frames of the next reply (after the speech) and another leg's do not count.
    received = columns(
        leg=[0, 0, 0, 1],
        frame=[start - 3, start - 2, start + 12, start - 2],
        t_out=[spoke - 7 * MS, spoke + 13 * MS, spoke + 300 * MS, spoke + 90 * MS],
    )
    at_bridge = {(0 << 32) | frame: spoke - 100 * MS for frame in range(start - 3, start)}
    latencies, cut = bench.barge_in_latencies(plan, sent, received, spoke + 1, at_bridge, spoke - 1000 * MS)
    assert latencies.tolist() == [13 * MS]
    assert cut.tolist() == [True]  # start - 1 reached the bridge, never the caller


def test_a_reply_finished_before_the_speech_is_not_cut_and_counts_zero() -> None:
    plan = bench.SpeechPlan(period=150, length=10)
    start = 150 + (plan.offset(0) - 150) % 150
    spoke = 10_000 * MS
    sent = columns(leg=[0], frame=[start], t_in=[spoke])
    received = columns(leg=[0, 0], frame=[start - 2, start - 1], t_out=[spoke - 25 * MS, spoke - 5 * MS])
    at_bridge = {(0 << 32) | frame: spoke - 40 * MS for frame in (start - 2, start - 1)}
    latencies, cut = bench.barge_in_latencies(plan, sent, received, spoke + 1, at_bridge, spoke - 1000 * MS)
    assert latencies.tolist() == [0]
    assert cut.tolist() == [False]
    # A speech start too close to the window's end (its reply may still be playing unseen) has no figure.
    assert len(bench.barge_in_latencies(plan, sent, received, spoke, at_bridge)[0]) == 0


def test_a_frame_played_before_the_caller_side_recorded_is_not_taken_for_cut() -> None:
    plan = bench.SpeechPlan(period=150, length=10)
    start = 150 + (plan.offset(0) - 150) % 150
    spoke = 10_000 * MS
    sent = columns(leg=[0], frame=[start], t_in=[spoke])
    received = columns(leg=[0], frame=[start - 1], t_out=[spoke - 5 * MS])
    at_bridge = {(0 << 32) | (start - 30): spoke - 700 * MS, (0 << 32) | (start - 1): spoke - 30 * MS}
    _latencies, cut = bench.barge_in_latencies(plan, sent, received, spoke + 1, at_bridge, spoke - 600 * MS)
    assert cut.tolist() == [False]
    _latencies, cut = bench.barge_in_latencies(plan, sent, received, spoke + 1, at_bridge, spoke - 800 * MS)
    assert cut.tolist() == [True]


def test_the_harness_send_lateness_is_measured_on_each_legs_own_grid() -> None:
    base = 5_000 * MS
    # Leg 0 on time but for frame 3 (7 ms late); leg 1 at another phase, always 0.2 ms behind its first send.
    sent = columns(
        leg=[0, 0, 0, 0, 1, 1, 1],
        frame=[10, 11, 12, 13, 40, 41, 42],
        t_in=[
            base,
            base + FRAME_NS,
            base + 2 * FRAME_NS,
            base + 3 * FRAME_NS + 7 * MS,
            base + 3 * MS,
            base + 3 * MS + FRAME_NS + MS // 5,
            base + 3 * MS + 2 * FRAME_NS + MS // 5,
        ],
    )
    lateness = bench.send_lateness(sent)
    assert sorted(lateness.tolist()) == [0, 0, 0, 0, MS // 5, MS // 5, 7 * MS]
    assert len(bench.send_lateness(columns(leg=[], frame=[], t_in=[]))) == 0


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--barge-in-every", "0.5"], "too short"),
        (["--harness", "threads", "--barge-in-every", "3"], "needs --harness loop"),
    ],
)
def test_bad_barge_in_options_are_refused_with_the_fix(
    argv: list[str], words: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
    assert words in capsys.readouterr().err


def test_barge_ins_are_on_by_default_and_off_for_the_old_harness() -> None:
    assert bench.parse_args([]).speech == bench.SpeechPlan(150)
    assert bench.parse_args(["--barge-in-every", "0"]).speech is None
    assert bench.parse_args(["--harness", "threads"]).speech is None


def test_other_programs_cpu_is_unknown_when_the_machine_counts_less_than_the_bench_itself() -> None:
    assert bench.other_cpu(150.0, 100.0) == 50.0
    assert bench.other_cpu(99.0, 100.0) == 0.0  # tick sampling: a little under is still a quiet machine
    assert np.isnan(bench.other_cpu(31.5, 94.7))  # this VM's /proc/stat on 4 December 2026
