"""What the box's Asterisk files say: which SIP driver it uses, the trunk's host, registration, context.

Asterisk's configuration format allows the same section name twice (PJSIP's ``[provider]`` endpoint and
``[provider]`` AOR), templates (``[name](!)``) and inheritance (``[peer](template)``), so ``configparser``
cannot read it; ``read_conf`` reads it the way Asterisk does, as far as the doctor needs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

_SECTION = re.compile(r"^\[(?P<name>[^\]]+)\]\s*(?:\((?P<extra>[^)]*)\))?")
_VERSION = re.compile(r"Asterisk\s+(?:certified[/-])?(?P<major>\d+)(?:\.\d+)*", re.IGNORECASE)
# Asterisk 21 removed chan_sip; the role uses PJSIP from there on.
FIRST_PJSIP_ONLY_MAJOR = 21


class Driver(StrEnum):
    PJSIP = "pjsip"
    CHAN_SIP = "chan_sip"

    @property
    def module(self) -> str:
        """The channel driver module, without ``.so``."""
        return "chan_pjsip" if self is Driver.PJSIP else "chan_sip"

    @property
    def files(self) -> tuple[str, ...]:
        """The SIP files the role renders for this driver."""
        return ("pjsip.conf", "pjsip_trunk.conf") if self is Driver.PJSIP else ("sip.conf",)

    @property
    def trunk_file(self) -> str:
        return "pjsip_trunk.conf" if self is Driver.PJSIP else "sip.conf"

    @property
    def registrations_command(self) -> str:
        return "pjsip show registrations" if self is Driver.PJSIP else "sip show registry"


@dataclass(frozen=True, slots=True)
class Section:
    """One ``[name]`` block: its options in file order (a key may repeat), template flag and parents."""

    name: str
    options: tuple[tuple[str, str], ...]
    template: bool = False
    parents: tuple[str, ...] = ()

    def get(self, key: str) -> str | None:
        for name, value in self.options:
            if name == key:
                return value
        return None

    def get_all(self, key: str) -> list[str]:
        return [value for name, value in self.options if name == key]


def _strip_comment(line: str) -> str:
    """The line without its ``;`` comment (``\\;`` is a literal semicolon)."""
    out: list[str] = []
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\" and index + 1 < len(line) and line[index + 1] == ";":
            out.append(";")
            index += 2
            continue
        if char == ";":
            break
        out.append(char)
        index += 1
    return "".join(out).strip()


def parse_conf(text: str) -> list[Section]:
    """The sections of an Asterisk ``.conf`` text; keys in lower case, ``=>`` read as ``=``."""
    sections: list[Section] = []
    name: str | None = None
    template = False
    parents: tuple[str, ...] = ()
    options: list[tuple[str, str]] = []

    def close() -> None:
        if name is not None:
            sections.append(Section(name, tuple(options), template, parents))

    for raw in text.splitlines():
        line = _strip_comment(raw)
        if not line or line.startswith("#"):
            continue
        match = _SECTION.match(line)
        if match:
            close()
            name = match.group("name").strip()
            extra = [part.strip() for part in (match.group("extra") or "").split(",") if part.strip()]
            template = "!" in extra
            parents = tuple(part for part in extra if part != "!")
            options = []
            continue
        key, sep, value = line.partition("=")
        if not sep or name is None:
            continue
        options.append((key.strip().rstrip(">").strip().lower(), value.lstrip(">").strip()))
    close()
    return sections


def read_conf(path: Path) -> list[Section]:
    """``parse_conf`` of a file; raises OSError (missing, unreadable) and UnicodeDecodeError."""
    return parse_conf(path.read_text(encoding="utf-8"))


def _merged(section: Section, by_name: dict[str, Section], depth: int = 0) -> Section:
    """``section`` with its templates' options first (as Asterisk applies them), so its own win."""
    if depth > 8 or not section.parents:
        return section
    inherited: list[tuple[str, str]] = []
    for parent in section.parents:
        base = by_name.get(parent)
        if base is not None:
            inherited.extend(_merged(base, by_name, depth + 1).options)
    return Section(section.name, (*inherited, *section.options), section.template, section.parents)


def uri_host(uri: str) -> str | None:
    """The host of a SIP URI (``sip:user@host:port;params``, ``sip:[2001:db8::1]:5060``), or None."""
    text = uri.strip().strip("<>")
    scheme, sep, rest = text.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips"):
        rest = text
    rest = rest.split(";", 1)[0]
    if "@" in rest:
        rest = rest.rsplit("@", 1)[1]
    if rest.startswith("["):
        end = rest.find("]")
        return rest[1:end] if end > 1 else None
    host = rest.split(":", 1)[0].strip()
    return host or None


@dataclass(frozen=True, slots=True)
class Trunk:
    """What the trunk file says about the provider."""

    source: Path
    name: str | None
    host: str | None
    registration: bool
    context: str | None


def pjsip_trunk(path: Path) -> Trunk:
    """The trunk in a PJSIP file: the endpoint, the AOR's contact host, and whether it registers."""
    sections = read_conf(path)
    endpoints = [s for s in sections if s.get("type") == "endpoint" and s.name != "anonymous"]
    registrations = [s for s in sections if s.get("type") == "registration"]
    host: str | None = None
    for section in registrations:
        server = section.get("server_uri")
        if server and (host := uri_host(server)):
            break
    if host is None:
        for section in sections:
            if section.get("type") == "aor":
                for contact in section.get_all("contact"):
                    if host := uri_host(contact):
                        break
            if host:
                break
    endpoint = endpoints[0] if endpoints else None
    return Trunk(
        path,
        endpoint.name if endpoint else None,
        host,
        bool(registrations),
        endpoint.get("context") if endpoint else None,
    )


def chan_sip_trunk(path: Path) -> Trunk:
    """The trunk in ``sip.conf``: the first peer with a host, and whether ``register =>`` is set."""
    sections = read_conf(path)
    by_name = {section.name: section for section in sections}
    general = by_name.get("general")
    registration = bool(general and general.get_all("register"))
    for section in sections:
        if section.template or section.name == "general":
            continue
        merged = _merged(section, by_name)
        host = merged.get("host")
        if merged.get("type") in ("peer", "friend") and host and host != "dynamic":
            return Trunk(path, section.name, host, registration, merged.get("context"))
    return Trunk(path, None, None, registration, None)


def read_trunk(asterisk_dir: Path, driver: Driver) -> Trunk:
    """The trunk of ``driver``'s file under ``asterisk_dir``; raises OSError when it cannot be read."""
    path = asterisk_dir / driver.trunk_file
    return pjsip_trunk(path) if driver is Driver.PJSIP else chan_sip_trunk(path)


@dataclass(frozen=True, slots=True)
class SipSetup:
    """The SIP driver the box uses, and how the doctor knows."""

    driver: Driver
    detected_from: str


def _modules_conf_driver(path: Path) -> Driver | None:
    try:
        sections = read_conf(path)
    except (OSError, UnicodeDecodeError):
        return None
    votes: set[Driver] = set()
    for section in sections:
        if section.name != "modules":
            continue
        for key, value in section.options:
            module = value.strip().removesuffix(".so")
            if key in ("require", "load", "preload", "preload-require"):
                if module == "chan_pjsip":
                    votes.add(Driver.PJSIP)
                elif module == "chan_sip":
                    votes.add(Driver.CHAN_SIP)
            elif key == "noload":
                if module == "chan_sip":
                    votes.add(Driver.PJSIP)
                elif module in ("chan_pjsip", "res_pjsip"):
                    votes.add(Driver.CHAN_SIP)
    return votes.pop() if len(votes) == 1 else None


def asterisk_major(version_text: str) -> int | None:
    """The major version in ``asterisk -V`` output (``Asterisk 22.5.2`` -> 22)."""
    match = _VERSION.search(version_text)
    return int(match.group("major")) if match else None


def detect_driver(asterisk_dir: Path, version: Callable[[], str | None]) -> SipSetup:
    """The SIP driver: from ``modules.conf`` (what the role writes), else the version, else the files present.

    ``version`` returns ``asterisk -V`` output (None when there is no binary); it is only called when
    ``modules.conf`` does not decide.
    """
    from_modules = _modules_conf_driver(asterisk_dir / "modules.conf")
    if from_modules is not None:
        return SipSetup(from_modules, "modules.conf")
    text = version()
    major = asterisk_major(text or "")
    if major is not None and major >= FIRST_PJSIP_ONLY_MAJOR:
        return SipSetup(Driver.PJSIP, f"Asterisk {major} has no chan_sip")
    if (asterisk_dir / "pjsip_trunk.conf").exists():
        return SipSetup(Driver.PJSIP, "pjsip_trunk.conf is present")
    if (asterisk_dir / "sip.conf").exists():
        return SipSetup(Driver.CHAN_SIP, "sip.conf is present")
    return SipSetup(Driver.PJSIP, "default (nothing else decided)")
