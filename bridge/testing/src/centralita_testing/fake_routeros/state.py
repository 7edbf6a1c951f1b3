"""The fake router's tables and what the API commands do to them (no networking here).

``RouterState`` holds one table per menu path (``/ppp/secret``, ``/ip/firewall/address-list``...) and
answers one parsed command with the reply sentences a RouterOS 7 router would send: ``!re`` rows,
``!empty``, ``!trap`` and a final ``!done``. ``fake_server`` puts it behind a socket.

The behaviour follows RouterOS where it is known (see the ``TableSchema`` of each path): ids are
``*<hex>`` and increase per table; booleans are printed ``true``/``false`` and accepted as
``yes``/``no``/``true``/``false``; an address-list entry added with a ``timeout`` is ``dynamic`` and
disappears when it runs out; ``.proplist`` limits the printed properties; queries run on a boolean
stack (``query_matches``).
"""

from __future__ import annotations

import copy
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

Sentence = list[str]
Row = dict[str, str]

DEMO_FIXTURE = "isp-demo.json"
TRUE_WORDS = frozenset({"yes", "true"})
FALSE_WORDS = frozenset({"no", "false"})

# Error texts as RouterOS sends them in `!trap =message=`.
NO_SUCH_ITEM = "no such item (4)"
NO_SUCH_PREFIX = "no such command prefix"
ALREADY_HAVE = "failure: already have such entry"
UNKNOWN_PARAMETER = "unknown parameter"


class CommandError(Exception):
    """A command the router refuses: becomes ``!trap =message=<message> [=category=<n>]`` + ``!done``."""

    def __init__(self, message: str, category: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.category = category


class QueryError(CommandError):
    """A query word the stack machine does not understand."""


@dataclass(frozen=True)
class TableSchema:
    """What RouterOS does with one menu: fields, defaults, booleans, commands and uniqueness."""

    path: str
    defaults: Mapping[str, str] = field(default_factory=dict)  # every new row gets these, in this order
    optional: frozenset[str] = frozenset()  # writable fields without a default
    read_only: frozenset[str] = frozenset()  # printed, never written by add/set
    booleans: frozenset[str] = frozenset({"disabled"})
    commands: frozenset[str] = frozenset({"print", "getall", "add", "set", "remove", "enable", "disable"})
    unique_name: str | None = None  # message when an add/set would duplicate `name`
    required: tuple[str, ...] = ()
    name_is_id: bool = False  # `.id`/`numbers` may hold the item's name
    open_fields: bool = False  # accept any field (tables loaded from a fixture without a schema)

    @property
    def writable(self) -> frozenset[str]:
        return (frozenset(self.defaults) | self.optional) - self.read_only


def _schemas() -> Mapping[str, TableSchema]:
    # Fields after community.routeros' _api_data.py and the RouterOS manual; defaults as RouterOS 7 prints.
    items = [
        TableSchema(
            path="/ppp/secret",
            defaults={
                "name": "",
                "service": "any",
                "caller-id": "",
                "password": "",
                "profile": "default",
                "routes": "",
                "limit-bytes-in": "0",
                "limit-bytes-out": "0",
                "disabled": "false",
            },
            optional=frozenset({"remote-address", "local-address", "comment", "ipv6-routes", "remote-ipv6-prefix"}),
            read_only=frozenset({"last-logged-out", "last-caller-id", "last-disconnect-reason"}),
            unique_name="failure: secret with the same name already exists",
            required=("name",),
            name_is_id=True,
        ),
        TableSchema(
            path="/ppp/active",
            defaults={
                "name": "",
                "service": "pppoe",
                "caller-id": "",
                "encoding": "",
                "address": "",
                "uptime": "0s",
                "session-id": "",
                "limit-bytes-in": "0",
                "limit-bytes-out": "0",
                "radius": "false",
            },
            booleans=frozenset({"radius"}),
            commands=frozenset({"print", "getall", "remove"}),
        ),
        TableSchema(
            path="/ppp/profile",
            defaults={"name": "", "local-address": "", "remote-address": "", "only-one": "default"},
            optional=frozenset({"rate-limit", "address-list", "dns-server", "comment", "session-timeout"}),
            read_only=frozenset({"default"}),
            booleans=frozenset({"default"}),
            unique_name="failure: profile with the same name already exists",
            required=("name",),
            name_is_id=True,
        ),
        TableSchema(
            path="/ip/firewall/address-list",
            defaults={"list": "", "address": "", "creation-time": "", "dynamic": "false", "disabled": "false"},
            optional=frozenset({"comment", "timeout"}),
            read_only=frozenset({"creation-time"}),
            booleans=frozenset({"disabled", "dynamic"}),
            required=("list", "address"),
        ),
        TableSchema(
            path="/queue/simple",
            defaults={
                "name": "",
                "target": "",
                "parent": "none",
                "packet-marks": "",
                "priority": "8/8",
                "queue": "default-small/default-small",
                "limit-at": "0/0",
                "max-limit": "0/0",
                "burst-limit": "0/0",
                "burst-threshold": "0/0",
                "burst-time": "0s/0s",
                "bucket-size": "0.1/0.1",
                "invalid": "false",
                "dynamic": "false",
                "disabled": "false",
            },
            optional=frozenset({"comment"}),
            read_only=frozenset({"invalid", "dynamic"}),
            booleans=frozenset({"disabled", "dynamic", "invalid"}),
            unique_name="failure: queue with such name already exists",
            required=("target",),
            name_is_id=True,
        ),
    ]
    return MappingProxyType({schema.path: schema for schema in items})


SCHEMAS: Mapping[str, TableSchema] = _schemas()

_DURATION_PART = re.compile(r"(\d+)(ms|w|d|h|m|s)")
_DURATION_UNITS = {"w": 604800.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in a RouterOS duration: ``1d``, ``2h30m``, ``1w2d``, ``500ms``, ``00:05:00``, ``1d00:05:00``, ``90``."""
    text = text.strip()
    clock = re.fullmatch(r"(?:(\d+)d)?(\d+):(\d{1,2}):(\d{1,2})", text)
    if clock:
        days, hours, minutes, seconds = (int(part or 0) for part in clock.groups())
        return days * 86400.0 + hours * 3600.0 + minutes * 60.0 + seconds
    if text.isdigit():
        return float(text)
    if not text or _DURATION_PART.sub("", text):
        raise ValueError(f"not a RouterOS time interval: {text!r}")
    return sum(int(number) * _DURATION_UNITS[unit] for number, unit in _DURATION_PART.findall(text))


def format_duration(seconds: float) -> str:
    """``1w2d3h4m5s`` style, as RouterOS 7 prints intervals (whole seconds; ``0s`` for nothing)."""
    remaining = max(0, int(seconds + 0.999))  # round up: an entry with 0.2 s left still shows 1s
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = int(_DURATION_UNITS[unit])
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _is_id(value: str) -> bool:
    return bool(re.fullmatch(r"\*[0-9A-Fa-f]+", value))


def _bool_word(value: str) -> bool | None:
    lowered = value.lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    return None


def _equal(actual: str | None, wanted: str, is_boolean: bool) -> bool:
    if actual is None:
        return wanted == ""
    if is_boolean:
        left, right = _bool_word(actual), _bool_word(wanted)
        if left is not None and right is not None:
            return left == right
    if _is_id(actual) and _is_id(wanted):
        return int(actual[1:], 16) == int(wanted[1:], 16)
    return actual == wanted


def _order(actual: str, wanted: str) -> int:
    """-1, 0 or 1: numbers compare as numbers, ``*hex`` ids by value, anything else as text."""
    left: Any
    right: Any
    if re.fullmatch(r"-?\d+", actual) and re.fullmatch(r"-?\d+", wanted):
        left, right = int(actual), int(wanted)
    elif _is_id(actual) and _is_id(wanted):
        left, right = int(actual[1:], 16), int(wanted[1:], 16)
    else:
        left, right = actual, wanted
    return (left > right) - (left < right)


def query_matches(queries: Sequence[str], row: Mapping[str, str], booleans: Iterable[str] = ()) -> bool:
    """Whether ``row`` passes a RouterOS query: the ``?`` words in order, on a stack of booleans.

    The stack starts as an endless run of ``true``; a row matches when no ``false`` is left on it.

    * ``?name`` pushes "has the property"; ``?-name`` "lacks it".
    * ``?name=x`` and ``?=name=x`` push "equals x"; ``?<name=x`` and ``?>name=x`` "less/greater than x".
    * ``?#`` applies operations left to right: ``!`` negates the top, ``&`` and ``|`` pop two and push
      their AND/OR, ``.`` pushes a copy of the top; digits are an index from the top (0 = top): followed
      by more operations they push a copy of that entry (a ``.`` right after an index does nothing),
      at the end of the word they replace the whole stack with that entry.
    """
    boolean_fields = frozenset(booleans)
    stack: list[bool] = []

    def pop() -> bool:
        return stack.pop() if stack else True

    def peek(index: int) -> bool:
        return stack[-1 - index] if index < len(stack) else True

    for word in queries:
        if not word.startswith("?"):
            raise QueryError(f"invalid query word {word!r}")
        body = word[1:]
        if body.startswith("#"):
            _apply_operations(body[1:], stack, pop, peek, word)
            continue
        if body[:1] in ("<", ">"):
            key, sep, value = body[1:].partition("=")
            if not key or not sep:
                raise QueryError(f"invalid query word {word!r}")
            actual = row.get(key)
            wanted_sign = -1 if body[0] == "<" else 1
            stack.append(actual is not None and _order(actual, value) == wanted_sign)
            continue
        if body.startswith("-"):
            stack.append(body[1:] not in row)
            continue
        if body.startswith("="):
            body = body[1:]
        key, sep, value = body.partition("=")
        if not key:
            raise QueryError(f"invalid query word {word!r}")
        stack.append(_equal(row.get(key), value, key in boolean_fields) if sep else key in row)
    return all(stack)


def _apply_operations(
    ops: str, stack: list[bool], pop: Callable[[], bool], peek: Callable[[int], bool], word: str
) -> None:
    position = 0
    while position < len(ops):
        char = ops[position]
        if char.isdigit():
            end = position
            while end < len(ops) and ops[end].isdigit():
                end += 1
            value = peek(int(ops[position:end]))
            if end == len(ops):
                stack[:] = [value]
            else:
                stack.append(value)
                if ops[end] == ".":
                    end += 1
            position = end
            continue
        if char == "!":
            stack.append(not pop())
        elif char == "&":
            right, left = pop(), pop()
            stack.append(left and right)
        elif char == "|":
            right, left = pop(), pop()
            stack.append(left or right)
        elif char == ".":
            stack.append(peek(0))
        else:
            raise QueryError(f"invalid query operation {char!r} in {word!r}")
        position += 1


@dataclass
class Table:
    """One menu's rows (``.id`` first in each), its next id, and expiry times of timed entries."""

    schema: TableSchema
    rows: list[Row] = field(default_factory=list)
    next_id: int = 1
    expires: dict[str, float] = field(default_factory=dict)  # .id -> clock time

    def new_id(self) -> str:
        item_id = f"*{self.next_id:X}"
        self.next_id += 1
        return item_id


def load_fixture(source: str | Path | Mapping[str, Any] | None) -> dict[str, Any]:
    """A fixture as a dict: from a mapping, a JSON file, or (``None``) the demo ISP shipped in the package."""
    if source is None:
        text = (
            resources.files("centralita_testing.fake_routeros")
            .joinpath("data", DEMO_FIXTURE)
            .read_text(encoding="utf-8")
        )
        loaded: dict[str, Any] = json.loads(text)
        return loaded
    if isinstance(source, Mapping):
        return copy.deepcopy(dict(source))
    loaded = json.loads(Path(source).read_text(encoding="utf-8"))
    if not isinstance(loaded, dict) or not isinstance(loaded.get("tables", {}), dict):
        raise ValueError(f"{source}: a fixture is a JSON object with a `tables` object")
    return loaded


class RouterState:
    """Every table of the fake router, behind one lock; ``execute`` runs one command."""

    def __init__(
        self,
        fixture: str | Path | Mapping[str, Any] | None = None,
        *,
        empty_replies: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        data = load_fixture(fixture)
        self.empty_replies = empty_replies  # RouterOS >= 7.18 sends `!empty` before `!done` for no rows
        self._clock = clock
        self._lock = threading.RLock()
        self._tables: dict[str, Table] = {}
        for path in SCHEMAS:
            self._tables[path] = Table(SCHEMAS[path])
        for path, rows in data.get("tables", {}).items():
            normalized = "/" + path.strip("/ ").replace(" ", "/")
            schema = SCHEMAS.get(normalized) or TableSchema(path=normalized, open_fields=True)
            table = self._tables.setdefault(normalized, Table(schema))
            for row in rows:
                self._load_row(table, row)
        self._prefixes = frozenset(
            "/" + "/".join(path.strip("/").split("/")[:depth])
            for path in self._tables
            for depth in range(1, path.count("/") + 1)
        )

    def _load_row(self, table: Table, given: Mapping[str, Any]) -> None:
        fields = {key: _text(value) for key, value in given.items()}
        item_id = fields.pop(".id", None) or table.new_id()
        if not _is_id(item_id):
            raise ValueError(f"{table.schema.path}: `.id` must look like *1A, not {item_id!r}")
        table.next_id = max(table.next_id, int(item_id[1:], 16) + 1)
        row = self._complete(table, fields, item_id)
        if "timeout" in row and table.schema.path == "/ip/firewall/address-list":
            table.expires[item_id] = self._clock() + parse_duration(row["timeout"])
            row["dynamic"] = "true"
        table.rows.append(row)

    def _complete(self, table: Table, fields: Mapping[str, str], item_id: str) -> Row:
        row: Row = {".id": item_id}
        for key, default in table.schema.defaults.items():
            row[key] = fields.get(key, default)
        for key, value in fields.items():
            row.setdefault(key, value)
        if table.schema.path == "/ip/firewall/address-list" and not row.get("creation-time"):
            row["creation-time"] = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        for key in table.schema.booleans & row.keys():
            parsed = _bool_word(row[key])
            if parsed is not None:
                row[key] = "true" if parsed else "false"
        return row

    # ---- inspection, for tests and the runtime API ---------------------------------------------------

    def snapshot(self) -> dict[str, list[Row]]:
        """A deep copy of every table, as ``print`` would show it now (expired entries gone)."""
        with self._lock:
            return {
                path: [self._shown(table, row) for row in self._live_rows(table)]
                for path, table in self._tables.items()
            }

    def table(self, path: str) -> list[Row]:
        """A copy of one table's rows; ``KeyError`` for a path the router does not have."""
        with self._lock:
            table = self._tables[_normalize_path(path)]
            return [self._shown(table, row) for row in self._live_rows(table)]

    def _live_rows(self, table: Table) -> list[Row]:
        now = self._clock()
        expired = {item_id for item_id, deadline in table.expires.items() if deadline <= now}
        if expired:
            table.rows = [row for row in table.rows if row[".id"] not in expired]
            for item_id in expired:
                del table.expires[item_id]
        return table.rows

    def _shown(self, table: Table, row: Row) -> Row:
        shown = dict(row)
        deadline = table.expires.get(row[".id"])
        if deadline is not None:
            shown["timeout"] = format_duration(deadline - self._clock())
        return shown

    # ---- commands --------------------------------------------------------------------------------------

    def execute(self, command: str, attributes: Mapping[str, str], queries: Sequence[str]) -> list[Sentence]:
        """The reply sentences (without ``.tag``) to one command other than ``/login``."""
        try:
            with self._lock:
                return self._execute(command, attributes, queries)
        except CommandError as error:
            trap = ["!trap", f"=message={error.message}"]
            if error.category is not None:
                trap.insert(1, f"=category={error.category}")
            return [trap, ["!done"]]
        except _UnknownCommand as unknown:
            return [
                ["!trap", "=category=0", f"=message=no such command or directory ({unknown.name})"],
                ["!trap", f"=message={NO_SUCH_PREFIX}"],
                ["!done"],
            ]

    def _execute(self, command: str, attributes: Mapping[str, str], queries: Sequence[str]) -> list[Sentence]:
        path, _, verb = command.rstrip("/").rpartition("/")
        table = self._tables.get(path)
        if table is None or verb not in table.schema.commands:
            raise _UnknownCommand(self._first_unknown(command))
        if queries and verb not in ("print", "getall"):
            raise CommandError("queries are only allowed with print", category=5)
        if verb in ("print", "getall"):
            return self._print(table, attributes, queries)
        if verb == "add":
            return [["!done", f"=ret={self._add(table, attributes)}"]]
        if verb == "set":
            self._set(table, attributes)
        elif verb == "remove":
            self._remove(table, attributes)
        else:  # enable / disable
            self._set(table, {**attributes, "disabled": "yes" if verb == "disable" else "no"})
        return [["!done"]]

    def _first_unknown(self, command: str) -> str:
        parts = [part for part in command.split("/") if part]
        for depth in range(1, len(parts) + 1):
            if "/" + "/".join(parts[:depth]) not in self._prefixes:
                return parts[depth - 1]
        return parts[-1] if parts else command

    def _print(self, table: Table, attributes: Mapping[str, str], queries: Sequence[str]) -> list[Sentence]:
        rows = [
            self._shown(table, row)
            for row in self._live_rows(table)
            if query_matches(queries, self._shown(table, row), table.schema.booleans)
        ]
        if _bool_word(attributes.get("count-only", "no")) is not False:
            return [["!done", f"=ret={len(rows)}"]]
        proplist = attributes.get(".proplist")
        keys = [key for key in proplist.split(",") if key] if proplist is not None else None
        replies: list[Sentence] = []
        for row in rows:
            items = [(key, row[key]) for key in keys if key in row] if keys is not None else list(row.items())
            replies.append(["!re", *(f"={key}={value}" for key, value in items)])
        if not replies and self.empty_replies:
            replies.append(["!empty"])
        replies.append(["!done"])
        return replies

    def _writable_fields(self, table: Table, attributes: Mapping[str, str]) -> dict[str, str]:
        fields = {key: value for key, value in attributes.items() if not key.startswith(".") and key != "numbers"}
        schema = table.schema
        for key, value in fields.items():
            if not schema.open_fields and key not in schema.writable:
                raise CommandError(f"{UNKNOWN_PARAMETER} {key}" if key in schema.read_only else UNKNOWN_PARAMETER)
            if key in schema.booleans:
                parsed = _bool_word(value)
                if parsed is None:
                    raise CommandError(f"value of {key} must be one of yes, no", category=1)
                fields[key] = "true" if parsed else "false"
            if key == "timeout" and value:
                try:
                    parse_duration(value)
                except ValueError:
                    raise CommandError(f"value of {key} must be a time interval", category=1) from None
        path = schema.path
        if path == "/ip/firewall/address-list" and fields.get("address", "").endswith("/32"):
            fields["address"] = fields["address"][: -len("/32")]
        if path == "/queue/simple" and fields.get("target") and "/" not in fields["target"]:
            fields["target"] += "/32"
        return fields

    def _check_unique(self, table: Table, candidate: Row) -> None:
        others = [row for row in self._live_rows(table) if row[".id"] != candidate[".id"]]
        if table.schema.path == "/ip/firewall/address-list":
            if any(row["list"] == candidate["list"] and row["address"] == candidate["address"] for row in others):
                raise CommandError(ALREADY_HAVE)
        elif table.schema.unique_name and any(row.get("name") == candidate.get("name") for row in others):
            raise CommandError(table.schema.unique_name)

    def _add(self, table: Table, attributes: Mapping[str, str]) -> str:
        fields = self._writable_fields(table, attributes)
        for key in table.schema.required:
            if not fields.get(key):
                raise CommandError(f"failure: {key} not specified", category=1)
        if table.schema.path == "/queue/simple" and not fields.get("name"):
            taken = {row["name"] for row in table.rows}
            fields["name"] = next(f"queue{n}" for n in range(1, len(taken) + 2) if f"queue{n}" not in taken)
        item_id = f"*{table.next_id:X}"
        row = self._complete(table, fields, item_id)
        row.pop("timeout", None)
        self._check_unique(table, row)
        table.new_id()
        self._apply_timeout(table, row, fields.get("timeout"))
        table.rows.append(row)
        return item_id

    def _apply_timeout(self, table: Table, row: Row, timeout: str | None) -> None:
        if table.schema.path != "/ip/firewall/address-list" or timeout is None:
            return
        if timeout:
            table.expires[row[".id"]] = self._clock() + parse_duration(timeout)
            row["dynamic"] = "true"
        else:
            table.expires.pop(row[".id"], None)

    def _targets(self, table: Table, attributes: Mapping[str, str]) -> list[Row]:
        """The rows named by ``.id`` (or ``numbers``): ids, or names where RouterOS allows them."""
        given = attributes.get(".id", attributes.get("numbers", ""))
        wanted = [part for part in given.split(",") if part]
        if not wanted:
            raise CommandError(NO_SUCH_ITEM)
        rows = self._live_rows(table)
        found: list[Row] = []
        for item in wanted:
            match = next((row for row in rows if _is_id(item) and _equal(row[".id"], item, False)), None)
            if match is None and table.schema.name_is_id:
                match = next((row for row in rows if row.get("name") == item), None)
            if match is None:
                raise CommandError(NO_SUCH_ITEM)
            if match not in found:
                found.append(match)
        return found

    def _set(self, table: Table, attributes: Mapping[str, str]) -> None:
        targets = self._targets(table, attributes)
        fields = self._writable_fields(table, attributes)
        timeout = fields.pop("timeout", None)
        updated = [{**row, **fields} for row in targets]
        for row in updated:
            self._check_unique(table, row)
        for row, new in zip(targets, updated, strict=True):
            row.update(new)
            self._apply_timeout(table, row, timeout)

    def _remove(self, table: Table, attributes: Mapping[str, str]) -> None:
        doomed = {row[".id"] for row in self._targets(table, attributes)}
        table.rows = [row for row in table.rows if row[".id"] not in doomed]
        for item_id in doomed:
            table.expires.pop(item_id, None)


class _UnknownCommand(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _normalize_path(path: str) -> str:
    return "/" + "/".join(part for part in re.split(r"[/ ]+", path) if part)


def _text(value: object) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)
