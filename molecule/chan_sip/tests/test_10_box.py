"""The provisioned Debian 12 box: Asterisk 20 built from source with chan_sip, its own systemd unit, the files,
the trunk's peers, the prompts where this Asterisk reads them, the dialer's SIP/ dial string and the resampler."""

from __future__ import annotations

import os

import pytest
from conftest import BOX

testinfra_hosts = [f"podman://{BOX}"]

RENDERED = ["extensions.conf", "http.conf", "ari.conf", "modules.conf", "logger.conf", "rtp.conf", "sip.conf"]
CACHE = "/var/cache/centralita-asterisk-build"
RANGE = [f"127.0.0.{i}" for i in range(64, 80)]  # provider_networks 127.0.0.64/28 in the scenario's inventory


def test_the_box_is_debian_12(host):
    assert host.system_info.distribution == "debian"
    assert host.system_info.release.startswith("12")


def test_asterisk_20_was_built_from_source_with_chan_sip_and_no_pjsip(host):
    assert host.check_output("asterisk -V") == "Asterisk 20.20.1"
    assert not host.package("asterisk").is_installed  # not a distribution package: Debian 12 has none
    modules = host.check_output("ls /usr/lib/asterisk/modules").split()
    assert "chan_sip.so" in modules
    assert "chan_pjsip.so" not in modules
    assert "res_pjsip.so" not in modules
    assert "res_ari.so" in modules
    assert "chan_rtp.so" in modules
    assert "app_amd.so" in modules
    # Only the documented module set, no sound archives downloaded by the build.
    assert len(modules) < 60
    assert not host.file("/var/lib/asterisk/sounds/en").exists


def test_the_build_is_skipped_when_installed(host):
    stamp = host.file("/usr/local/src/asterisk/installed-build")
    assert stamp.is_file
    assert len(stamp.content_string.strip()) == 64


def test_the_compiled_tree_is_kept_in_the_build_cache_by_the_tarballs_sha256(host):
    # asterisk_source_build_cache (the host's cache, mounted by create.yml): the next box of this build unpacks it.
    sha = os.environ["CENTRALITA_ASTERISK_SHA256"].lower()
    # A host's cache may also hold trees of earlier builds of this tarball with other settings (another module
    # list): the newest is this build's.
    cached = host.check_output(f"ls -t {CACHE}/asterisk-20.20.1-{sha[:16]}-*.tar").split()
    assert cached
    tarball = host.file(cached[0])
    assert (tarball.user, tarball.mode) == ("root", 0o644)
    members = host.check_output(f"tar -tf {cached[0]}").split()
    assert "asterisk-20.20.1/main/asterisk" in members  # compiled, not just the sources
    assert "asterisk-20.20.1/channels/chan_sip.so" in members
    assert "asterisk-20.20.1/funcs/func_groupcount.so" in members  # this build's module list
    assert host.run(f"ls {CACHE}/*.tar.*").rc != 0  # no half-written tarball left


def test_chan_sip_is_loaded_and_pjsip_is_not(host):
    out = host.check_output("asterisk -rx 'module show like chan_sip'")
    assert "chan_sip.so" in out
    assert "Running" in out
    types = [
        line.split()[0] for line in host.check_output("asterisk -rx 'core show channeltypes'").splitlines() if line
    ]
    assert "SIP" in types
    assert "PJSIP" not in types


def test_asterisk_runs_under_its_own_systemd_unit(host):
    svc = host.service("asterisk")
    assert svc.is_running
    assert svc.is_enabled
    props = svc.systemd_properties
    assert props["FragmentPath"] == "/usr/local/lib/systemd/system/asterisk.service"
    assert props["Type"] == "notify"  # ready only once fully booted: After=asterisk.service means ARI is up
    assert props["Restart"] == "always"
    assert props["User"] == "asterisk"
    assert "/etc/systemd/system/asterisk.service.d/centralita.conf" in props["DropInPaths"]
    assert props["RuntimeDirectory"] == "asterisk"
    assert not host.file("/etc/init.d/asterisk").exists  # no SysV script (make config was never run)
    assert host.process.filter(comm="asterisk", user="asterisk")


@pytest.mark.parametrize("name", RENDERED)
def test_rendered_file_is_asterisk_owned_0640(host, name):
    f = host.file(f"/etc/asterisk/{name}")
    assert f.is_file
    assert (f.user, f.group, f.mode) == ("asterisk", "asterisk", 0o640)
    assert f.contains("Ansible managed")


def test_nothing_under_etc_asterisk_belongs_to_another_user(host):
    assert host.check_output("find /etc/asterisk ! -user asterisk -o ! -group asterisk") == ""
    assert not host.file("/etc/asterisk/pjsip_trunk.conf").exists


def test_modules_conf_requires_chan_sip(host):
    modules = host.file("/etc/asterisk/modules.conf").content_string
    assert "require => chan_sip.so" in modules
    assert "noload => chan_pjsip.so" in modules


def test_every_address_of_the_provider_range_is_a_peer(host):
    # chan_sip matches an INVITE by its source address only: the /28 became 16 peers besides the server.
    peers = host.check_output("asterisk -rx 'sip show peers'")
    listed = {line.split()[1] for line in peers.splitlines() if line.startswith("provider") and len(line.split()) > 1}
    assert set(RANGE) <= listed
    assert "127.0.0.1" in listed
    assert "17 sip peers" in peers or "17 sip peer" in peers


def test_the_trunk_peer_is_not_qualified_with_qualify_seconds_0(host):
    # qualify_seconds: 0 in the scenario's inventory (test_70 sets it and checks the running peer follows).
    out = host.check_output("asterisk -rx 'sip show peer provider'")
    assert "Status       : Unmonitored" in out


def test_prompts_are_where_a_source_build_reads_them(host):
    # A source build reads /var/lib/asterisk/sounds (Debian's package: /usr/share/asterisk/sounds).
    assert "astdatadir => /var/lib/asterisk" in host.file("/etc/asterisk/asterisk.conf").content_string
    notice = host.file("/var/lib/asterisk/sounds/centralita/asistente-no-disponible.ulaw")
    assert notice.is_file
    assert notice.size > 8000
    spanish = host.file("/var/lib/asterisk/sounds/es")
    assert spanish.is_symlink
    assert spanish.linked_to == "/usr/share/asterisk/sounds/es_MX_f_Allison"
    assert host.file("/var/lib/asterisk/sounds/es/tt-allbusy.gsm").is_file


def test_the_dialer_dials_through_chan_sip(host):
    env = host.file("/usr/local/asterisk/.env")
    assert env.contains('^DIALER_ENDPOINT="SIP/{trunk}/{number}"$')
    assert env.contains('^DIALER_TRUNK="provider"$')


def test_the_24_khz_fallback_resampler_works_in_the_bridge_venv(host):
    # Debian 12 has no python3-soxr: the role installed the pinned soxr and numpy wheels for Python 3.11.
    script = (
        "import numpy, soxr; from centralita.media.resample import Pcm24kToUlaw; "
        "out = Pcm24kToUlaw().convert(bytes(960)); print(numpy.__version__, soxr.__version__, len(out))"
    )
    out = host.check_output(f'/usr/local/asterisk/venv/bin/python -c "{script}"')
    numpy_version, soxr_version, _length = out.split()
    assert numpy_version == "2.4.6"
    assert soxr_version == "1.1.0"
    assert not host.package("python3-soxr").is_installed
