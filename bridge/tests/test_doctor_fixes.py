"""``doctor --fix`` runs as root in directories other users own: the attacks those users could try.

The stand-in for the other user is nobody; the stand-in for what they are after (/etc/shadow) is a root-owned
file outside the tree. Every test checks that file keeps its owner and mode.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from unprivileged import NOBODY

from centralita.doctor import fixes
from centralita.doctor.fixes import Target, chown_tree, open_directory, repair_tree, set_owner_and_mode
from centralita.doctor.model import RepairError

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the doctor repairs as root")


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A file of root's outside every tree the doctor repairs."""
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "shadow"
    secret.write_text("root:secret\n")
    secret.chmod(0o600)
    return secret


def untouched(path: Path) -> bool:
    info = path.stat()
    return (info.st_uid, info.st_gid, info.st_mode & 0o7777) == (0, 0, 0o600)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The other user's directory (like prompts/ or /etc/asterisk), with a root-owned file in it to give back."""
    root = tmp_path / "tree"
    root.mkdir()
    (root / "by-root.txt").write_text("an editor run as root made this\n")
    (root / "sub").mkdir()
    (root / "sub" / "deep.txt").write_text("and this\n")
    os.chown(root, NOBODY, NOBODY)
    os.chown(root / "sub", NOBODY, NOBODY)
    return root


def test_root_created_files_are_given_back(tree: Path) -> None:
    lines = chown_tree(tree, NOBODY)
    assert lines == [f"chown -h nobody on 2 path(s) under {tree}: by-root.txt, sub/deep.txt"]
    assert (tree / "by-root.txt").stat().st_uid == NOBODY
    assert (tree / "sub" / "deep.txt").stat().st_uid == NOBODY


def test_a_symlink_in_the_tree_is_neither_followed_nor_changed(tree: Path, victim: Path) -> None:
    link = tree / "prompt.txt"
    link.symlink_to(victim)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)
    (tree / "dir-link").symlink_to(victim.parent)
    chown_tree(tree, NOBODY)
    set_owner_and_mode([link], NOBODY, NOBODY, 0o644)
    assert untouched(victim)
    assert os.lstat(tree / "dir-link").st_uid == 0  # the link itself is not changed either


def test_a_hard_link_to_a_file_elsewhere_is_left_alone(tree: Path, victim: Path) -> None:
    os.link(victim, tree / "hard")
    lines = chown_tree(tree, NOBODY)
    assert f"left {tree / 'hard'} alone: it has 2 hard links (another name for a file elsewhere?)" in lines
    assert untouched(victim)
    lines = set_owner_and_mode([tree / "hard"], NOBODY, NOBODY, 0o640)
    assert lines == [f"left {tree / 'hard'} alone: it has 2 hard links (another name for a file elsewhere?)"]
    assert untouched(victim)


def test_a_directory_on_the_path_swapped_for_a_link_stops_the_repair(tree: Path, victim: Path) -> None:
    """set_owner_and_mode goes by path (the check named the files): /etc/asterisk/sub/x with sub replaced by a
    link to /etc must not reach /etc/x."""
    (tree / "sub").rename(tree / "sub.real")
    (tree / "sub").symlink_to(victim.parent)
    with pytest.raises(RepairError, match="is a symbolic link in a directory another user can change"):
        set_owner_and_mode([tree / "sub" / victim.name], NOBODY, NOBODY, 0o640)
    assert untouched(victim)


def test_links_root_made_in_roots_directories_are_followed(tmp_path: Path, tree: Path) -> None:
    """/var/run -> /run and the like: a link only root could have made is safe to follow."""
    alias = tmp_path / "alias"
    alias.symlink_to(tree)
    fd = open_directory(alias)
    try:
        assert os.fstat(fd).st_ino == tree.stat().st_ino
    finally:
        os.close(fd)


def _swap_on(name: str, swap: Callable[[], None]) -> Callable[..., Any]:
    """os.stat that runs ``swap`` right after it looked at ``name``: the other user wins the race, every time."""
    real_stat = os.stat

    def racing_stat(path: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        result = real_stat(path, *args, **kwargs)
        if path == name:
            swap()
        return result

    return racing_stat


def test_a_file_swapped_for_a_link_after_it_was_looked_at_is_left_alone(
    tree: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tree / "by-root.txt"

    def swap() -> None:
        target.unlink()
        target.symlink_to(victim)

    monkeypatch.setattr(fixes.os, "stat", _swap_on("by-root.txt", swap))
    lines = chown_tree(tree, NOBODY)
    assert f"left {target} alone: it changed while the doctor looked at it" in lines
    assert untouched(victim)


def test_a_directory_swapped_for_a_link_after_it_was_opened_is_walked_as_it_was(
    tree: Path, victim: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub = tree / "sub"

    def swap() -> None:
        sub.rename(tree / "sub.moved")
        sub.symlink_to(victim.parent)

    seen: list[Path] = []

    def decide(path: Path, info: os.stat_result) -> Target | None:
        seen.append(path)
        if path == sub:
            swap()  # the doctor already holds the directory open
        return Target(uid=NOBODY) if info.st_uid != NOBODY else None

    repair_tree(tree, decide)
    assert untouched(victim)
    assert (tree / "sub.moved" / "deep.txt").stat().st_uid == NOBODY  # the directory it opened, wherever it is now
    assert victim.parent / victim.name not in seen


def test_modes_are_set_through_the_descriptor(tree: Path) -> None:
    path = tree / "by-root.txt"
    path.chmod(0o666)
    assert set_owner_and_mode([path], NOBODY, NOBODY, 0o640) == [
        f"chown -h nobody:nogroup {path} (was root:root)",
        f"chmod 0640 {path} (was 0666)",
    ]
    assert (path.stat().st_mode & 0o7777, path.stat().st_uid) == (0o640, NOBODY)


def test_devices_pipes_and_sockets_are_left_alone(tree: Path) -> None:
    fifo = tree / "pipe"
    os.mkfifo(fifo)
    assert chown_tree(tree, NOBODY)  # the files were given back, and opening the pipe did not hang
    assert os.lstat(fifo).st_uid == 0
