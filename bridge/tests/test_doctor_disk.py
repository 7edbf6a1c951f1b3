"""system.disk: the room left on the filesystems the box writes (doctor/disk.py)."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from centralita.doctor.context import Context, Options
from centralita.doctor.disk import check_disk
from centralita.doctor.model import Result, Status
from centralita.doctor.probes import Filesystem, filesystem_of, superblock_read_only

GIB = 2**30
MIB = 2**20


class Disks:
    """A fake probe: each path is on the filesystem of the longest prefix given, else on the root one."""

    def __init__(self, root: Filesystem, **mounted: Filesystem) -> None:
        self.root = root
        self.mounted = {Path(path.replace("__", "/")): fs for path, fs in mounted.items()}
        self.asked: list[Path] = []

    def __call__(self, path: Path) -> Filesystem:
        self.asked.append(path)
        for mount in sorted(self.mounted, key=lambda m: len(m.parts), reverse=True):
            if path == mount or mount in path.parents:
                return self.mounted[mount]
        return self.root


def disk(device: int, size: int, available: int, *, inodes: int = 1000, free_inodes: int = 900) -> Filesystem:
    return Filesystem(device, size, available, inodes, free_inodes, read_only=False)


def run(tmp_path: Path, disks: Disks | None = None, disk_paths: tuple[Path, ...] = ()) -> Result:
    env = tmp_path / "app" / ".env"
    env.parent.mkdir(exist_ok=True)
    env.write_text(
        f"DB_PATH={tmp_path}/lib/centralita.db\nDIALER_DB_PATH={tmp_path}/lib/dialer.db\n"
        f"DIALER_LOG_FILE={tmp_path}/log/outbound_openai.log\n",
        encoding="utf-8",
    )
    (tmp_path / "lib").mkdir(exist_ok=True)
    (tmp_path / "log").mkdir(exist_ok=True)
    options = Options(env_file=env, log_file=tmp_path / "log" / "inbound_openai.log", disk_paths=disk_paths)
    if disks is not None:
        options = replace(options, filesystem=disks)
    [result] = check_disk(Context(options))
    assert result.name == "system.disk"
    return result


def test_the_real_filesystems_of_the_test_directories_are_measured(tmp_path: Path) -> None:
    result = run(tmp_path)
    # This machine's disk decides OK or WARN; what is checked is that it was measured and named.
    assert f"holding {tmp_path / 'log'}, {tmp_path / 'lib'}" in result.seen
    assert " free of " in result.seen


def test_a_link_in_a_directory_the_services_write_is_measured_where_it_is_not_where_it_points(
    tmp_path: Path,
) -> None:
    link = tmp_path / "log"
    link.symlink_to("/proc")
    assert os.stat("/proc").st_dev != os.stat(tmp_path).st_dev
    assert filesystem_of(link).device == os.stat(tmp_path).st_dev


def test_plenty_of_room_everywhere_is_ok_and_each_filesystem_is_named_once(tmp_path: Path) -> None:
    disks = Disks(
        disk(1, 100 * GIB, 60 * GIB), **{str(tmp_path / "lib").replace("/", "__"): disk(2, 20 * GIB, 15 * GIB)}
    )
    result = run(tmp_path, disks)
    assert result.status is Status.OK, result
    assert result.seen.split("; ") == [
        f"/ (holding {tmp_path / 'log'}): 60.0 GiB free of 100.0 GiB (60%), 90% of inodes free",
        f"{tmp_path / 'lib'} (holding {tmp_path / 'lib'}): 15.0 GiB free of 20.0 GiB (75%), 90% of inodes free",
    ]


def test_a_filesystem_under_ten_percent_free_warns_and_names_what_it_holds(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    spool.mkdir()
    disks = Disks(disk(1, 100 * GIB, 60 * GIB), **{str(spool).replace("/", "__"): disk(2, 8 * GIB, 700 * MIB)})
    result = run(tmp_path, disks, disk_paths=(spool,))
    assert result.status is Status.WARN, result
    assert (
        f"{spool} (holding {spool}): 700 MiB free of 8.0 GiB (9%), 90% of inodes free: under 819 MiB free"
        in result.seen
    )
    assert f"du -xh --max-depth=2 {spool} " in result.fix
    assert "journalctl --vacuum-size" in result.fix


def test_a_large_disk_warns_at_5_gib_and_fails_at_1_gib_not_at_its_percentages(tmp_path: Path) -> None:
    assert run(tmp_path, Disks(disk(1, 2000 * GIB, 6 * GIB))).status is Status.OK
    assert run(tmp_path, Disks(disk(1, 2000 * GIB, 4 * GIB))).status is Status.WARN
    failing = run(tmp_path, Disks(disk(1, 2000 * GIB, 900 * MIB)))
    assert failing.status is Status.FAIL
    assert "under 1.0 GiB free: writes will fail soon" in failing.seen


def test_a_small_disk_fails_under_100_mib(tmp_path: Path) -> None:
    assert run(tmp_path, Disks(disk(1, 2 * GIB, 150 * MIB))).status is Status.WARN
    assert run(tmp_path, Disks(disk(1, 2 * GIB, 90 * MIB))).status is Status.FAIL


def test_few_inodes_left_warn_then_fail(tmp_path: Path) -> None:
    warn = run(tmp_path, Disks(disk(1, 100 * GIB, 60 * GIB, inodes=10_000, free_inodes=500)))
    assert warn.status is Status.WARN
    assert "5% of inodes free: under 10% of its inodes free" in warn.seen
    fail = run(tmp_path, Disks(disk(1, 100 * GIB, 60 * GIB, inodes=10_000, free_inodes=100)))
    assert fail.status is Status.FAIL
    # A filesystem without a fixed number of inodes (inodes 0) is judged on its space alone.
    assert run(tmp_path, Disks(disk(1, 100 * GIB, 60 * GIB, inodes=0, free_inodes=0))).status is Status.OK


def test_a_filesystem_remounted_read_only_fails_with_the_disk_to_check(tmp_path: Path) -> None:
    result = run(tmp_path, Disks(Filesystem(1, 100 * GIB, 60 * GIB, 1000, 900, read_only=True)))
    assert result.status is Status.FAIL
    assert "mounted read-only: nothing can be written there" in result.seen
    assert "dmesg" in result.fix


def test_a_directory_not_created_yet_is_measured_where_it_would_be(tmp_path: Path) -> None:
    later = tmp_path / "spool" / "centralita" / "recordings"
    disks = Disks(disk(1, 100 * GIB, 60 * GIB))
    run(tmp_path, disks, disk_paths=(later,))
    assert tmp_path in disks.asked  # its nearest existing parent
    assert later not in disks.asked


@pytest.mark.parametrize("size", [1 * GIB, 8 * GIB, 100 * GIB, 2000 * GIB])
def test_a_warning_always_comes_before_a_failure(tmp_path: Path, size: int) -> None:
    statuses = [run(tmp_path, Disks(disk(1, size, free))).status for free in (size // 2, size // 12, size // 60)]
    assert statuses[0] is Status.OK
    assert statuses == sorted(statuses, key=[Status.OK, Status.WARN, Status.FAIL].index)


def mountinfo_line(device: int, mount_options: str, super_options: str, optional: str = "shared:1") -> str:
    return (
        f"27 1 {os.major(device)}:{os.minor(device)} / /var {mount_options},relatime {optional} - ext4 /dev/vda1 "
        f"{super_options},errors=remount-ro\n"
    )


def test_a_mount_made_read_only_by_a_sandbox_is_not_a_read_only_filesystem(tmp_path: Path) -> None:
    """The doctor's timer runs it with ProtectSystem=strict: every mount it sees is read-only, while the
    filesystem underneath (its superblock) is read-write and the services write there."""
    device = os.stat(tmp_path).st_dev
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(mountinfo_line(device, "ro", "rw"), encoding="utf-8")
    assert superblock_read_only(device, mountinfo) is False
    assert filesystem_of(tmp_path, mountinfo).read_only is False


def test_a_filesystem_the_kernel_remounted_read_only_is_read_only(tmp_path: Path) -> None:
    device = os.stat(tmp_path).st_dev
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        mountinfo_line(0, "rw", "rw") + mountinfo_line(device, "rw", "ro", optional=""), encoding="utf-8"
    )
    assert superblock_read_only(device, mountinfo) is True
    assert filesystem_of(tmp_path, mountinfo).read_only is True


def test_a_device_mountinfo_does_not_name_falls_back_to_the_mounts_flag(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(mountinfo_line(0, "ro", "ro"), encoding="utf-8")
    assert superblock_read_only(os.stat(tmp_path).st_dev, mountinfo) is None
    assert filesystem_of(tmp_path, mountinfo).read_only is False  # tmp_path's mount is writable
    assert superblock_read_only(os.stat(tmp_path).st_dev, tmp_path / "missing") is None
