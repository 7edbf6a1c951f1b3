"""The importer's problems in Spanish, for the console: each English message of ``centralita.dialer.importer``
(and of ``centralita.isp.phones``, whose messages it passes on) has a Spanish pattern here.

The importer words its problems in English for ``centralita campaign import`` and the logs; the console's users
read Spanish. A message with no pattern (a new one in the importer) is shown in English after a Spanish lead, so
nothing is ever hidden; ``bridge/tests/test_web_import.py`` makes the importer produce every message and checks
that none falls through.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["action_summary", "spanish_file_error", "spanish_located", "spanish_problem", "spanish_where"]

_Rule = tuple[re.Pattern[str], Callable[[re.Match[str]], str]]


def _rule(pattern: str, spanish: str | Callable[[re.Match[str]], str]) -> _Rule:
    render = spanish if callable(spanish) else lambda match: spanish.format(**match.groupdict())
    return re.compile(pattern, re.DOTALL), render


_PHONE: Final = r"phone (?P<raw>'.*?'|\".*?\")"

# One reason of a row (the importer joins a row's phone problems with "; ").
_REASONS: Final[tuple[_Rule, ...]] = (
    _rule(r"the customer id is empty", "el identificador del cliente está vacío"),
    _rule(r"the customer id is longer than 64 characters", "el identificador del cliente pasa de 64 caracteres"),
    _rule(r"the name is empty", "el nombre está vacío"),
    _rule(r"the name is longer than 120 characters", "el nombre pasa de 120 caracteres"),
    _rule(r"the phone number is empty", "el teléfono está vacío"),
    _rule(r"no phone number is given", "no hay ningún teléfono"),
    _rule(
        _PHONE + r" has characters other than digits.*",
        "el teléfono {raw} tiene caracteres que no son dígitos, espacios, guiones, puntos, paréntesis o un + "
        "inicial: escriba solo el número",
    ),
    _rule(
        _PHONE + r" has no country code.*",
        "el teléfono {raw} no tiene código de país: escríbalo como +<código de país> <número> (por ejemplo "
        "+52 55 5000 1111), o pida al administrador que configure bridge_dialer_country_code",
    ),
    _rule(
        _PHONE + r" does not start with a country calling code.*",
        "el teléfono {raw} no empieza con un código de país válido: revise los dígitos después del +",
    ),
    _rule(_PHONE + r" is too long to be a phone number", "el teléfono {raw} es demasiado largo"),
    _rule(_PHONE + r" is too short to be a phone number", "el teléfono {raw} es demasiado corto"),
    _rule(
        _PHONE + r" has an extension.*",
        "el teléfono {raw} tiene una extensión, que el marcador no puede marcar: escriba solo el número",
    ),
    _rule(
        _PHONE + r" has too few digits \((?P<n>\d+) after (?P<cc>\+\d+)\) for a number of (?P<where>.+?): .*",
        "el teléfono {raw} tiene pocos dígitos ({n} después de {cc}) para un número de {where}: revise el número "
        "y su código de país",
    ),
    _rule(
        _PHONE + r" has too many digits \((?P<n>\d+) after (?P<cc>\+\d+)\) for a number of (?P<where>.+?): .*",
        "el teléfono {raw} tiene demasiados dígitos ({n} después de {cc}) para un número de {where}: revise el "
        "número y su código de país",
    ),
    _rule(
        _PHONE + r" has the wrong number of digits \((?P<n>\d+) after (?P<cc>\+\d+)\) for a number of "
        r"(?P<where>.+?): .*",
        "el teléfono {raw} no tiene la cantidad de dígitos ({n} después de {cc}) de un número de {where}: revise el "
        "número y su código de país",
    ),
    _rule(
        _PHONE + r" is a local number of (?P<where>.+?) without its area code.*",
        "el teléfono {raw} es un número local de {where} sin su código de área: agréguelo",
    ),
    _rule(
        _PHONE + r" is not in a range of numbers in use in (?P<where>.+?): .*",
        "el teléfono {raw} no está en un rango de números en uso en {where}: revise el número y su código de país",
    ),
    _rule(r"calling (?P<number>\+\d+)", "se llamará al {number}"),
    _rule(r"the amount is empty", "el monto está vacío"),
    _rule(r"amount (?P<raw>'.*?') is not a number.*", "el monto {raw} no es un número (escríbalo como 1234.50)"),
    _rule(
        r"amount (?P<raw>'.*?') is ambiguous.*",
        "el monto {raw} es ambiguo (¿miles o decimales?): escríbalo sin separador de miles, por ejemplo 1500 o 1.50",
    ),
    _rule(
        r"amount (?P<raw>'.*?') mixes separators.*",
        "el monto {raw} mezcla separadores de un modo que no es un número (escríbalo como 1234.50)",
    ),
    _rule(r"amount (?P<raw>'.*?') is not above zero.*", "el monto {raw} no es mayor que cero: no se debe nada"),
    _rule(r"amount (?P<raw>'.*?') is too large to be a bill", "el monto {raw} es demasiado grande para una factura"),
    _rule(r"amount (?P<raw>'.*?') has more than two decimals", "el monto {raw} tiene más de dos decimales"),
    _rule(r"date (?P<raw>'.*?') does not exist", "la fecha {raw} no existe"),
    _rule(
        r"date (?P<raw>'.*?') is not YYYY-MM-DD or DD/MM/YYYY",
        "la fecha {raw} no está escrita como AAAA-MM-DD ni DD/MM/AAAA",
    ),
    _rule(
        r"due date (?P<date>\S+) is in the future.*",
        "el vencimiento {date} es una fecha futura: la factura todavía no está vencida",
    ),
    _rule(
        r"time zone (?P<raw>'.*?') is not an IANA name.*",
        "la zona horaria {raw} no es un nombre IANA como America/Mexico_City",
    ),
    _rule(
        r"not valid CSV \((?P<error>.*)\); the rest of the file was not read",
        "no es CSV válido ({error}); el resto del archivo no se leyó",
    ),
    _rule(
        r"(?P<n>\d+) fields where the header has (?P<m>\d+) \(a stray (?P<d>'.')\?\)",
        "tiene {n} campos y el encabezado {m} (¿un {d} de más o de menos?)",
    ),
    _rule(r"customer (?P<id>'.*?') already appears on (?P<first>.+)", lambda m: _repeated(m)),
    _rule(
        r"phone (?P<phone>\+\d+) of customer (?P<id>'.*?') already belongs to customer (?P<holder>'.*?') "
        r"\((?P<first>.+?)\): .*",
        lambda m: (
            f"el teléfono {m['phone']} del cliente {m['id']} ya es del cliente {m['holder']} "
            f"({spanish_where(m['first'])}): cada número se llama una vez, por el primer cliente; "
            "esta fila no se importa"
        ),
    ),
    _rule(
        r"phone (?P<phone>\+\d+) of customer (?P<id>'.*?') is already pending for customer (?P<holder>'.*?') in "
        r"campaign (?P<campaign>'.*?') \((?P<source>.+?)\): .*",
        lambda m: (
            f"el teléfono {m['phone']} del cliente {m['id']} ya está pendiente para el cliente {m['holder']} "
            f"en la campaña {m['campaign']}: se queda con él el cliente que ya estaba; esta fila no se aplicó"
        ),
    ),
)

# Problems of the whole file (ImportFileError); the file's name comes first.
_FILE: Final[tuple[_Rule, ...]] = (
    _rule(
        r".* is not UTF-8: line (?P<line>\d+), byte (?P<byte>\d+) of the line \((?P<hex>0x..)\).*",
        "el archivo no está en UTF-8: la línea {line}, byte {byte} ({hex}) no se puede leer. Expórtelo de nuevo "
        "como «CSV UTF-8» (en Excel: Guardar como, CSV UTF-8; en LibreOffice: juego de caracteres Unicode (UTF-8)) "
        "o, si sabe que está en Latin-1 o Windows-1252, elija esa codificación al importarlo",
    ),
    _rule(
        r".* is not valid (?P<encoding>\S+): line (?P<line>\d+), byte (?P<byte>\d+) of the line.*",
        "el archivo no está en {encoding}: la línea {line}, byte {byte}, no se puede leer. Elija otra codificación",
    ),
    _rule(
        r".* starts like UTF-16 but is not: line (?P<line>\d+).*",
        "el archivo empieza como UTF-16 pero no lo es (línea {line}): expórtelo de nuevo como «CSV UTF-8»",
    ),
    _rule(r".* is empty: .*", "el archivo está vacío: necesita una fila de encabezado y una fila por cliente"),
    _rule(r".* has no header row\.", "el archivo no tiene fila de encabezado"),
    _rule(
        r".*: the header row is not valid CSV \((?P<error>.*)\)\.", "la fila de encabezado no es CSV válido ({error})"
    ),
    _rule(
        r".*: the columns (?P<a>'.*?') and (?P<b>'.*?') both mean (?P<name>\w+): keep only one\.",
        "las columnas {a} y {b} significan lo mismo ({name}): deje solo una",
    ),
    _rule(
        r".* lacks the columns? (?P<missing>[\w, ]+) \(accepted names: (?P<accepted>.*)\)\. Its header row has "
        r"(?P<found>.*)\.",
        "al archivo le falta la columna {missing} (nombres aceptados: {accepted}). Su encabezado tiene: {found}",
    ),
)


# Why the dialer refused an import's campaign (``CampaignError``, or not this box's).
_CAMPAIGN: Final[tuple[_Rule, ...]] = (
    _rule(
        r"the campaign is not one of this box's.*",
        "la campaña no es de este servidor (bridge_dialer_campaigns): impórtela en el servidor que la marca",
    ),
    _rule(
        r"Campaign (?P<name>'.*?') is finished.*",
        "la campaña {name} ya terminó: importe los clientes en una campaña nueva",
    ),
    _rule(
        r"(?P<name>'.*?') is not a campaign name.*",
        "{name} no sirve como nombre de campaña: use de 1 a 64 letras, dígitos, espacios, '.', '_' o '-'",
    ),
)


def _repeated(match: re.Match[str]) -> str:
    first = match["first"]
    return f"el cliente {match['id']} ya aparece en la {spanish_where(first)}"


def _apply(rules: tuple[_Rule, ...], text: str) -> str | None:
    for pattern, render in rules:
        found = pattern.fullmatch(text)
        if found is not None:
            return render(found)
    return None


def spanish_where(where: str) -> str:
    """``line 7`` -> ``línea 7``; ``csv:clientes.csv:7`` (a row's source) -> ``línea 7``."""
    found = re.fullmatch(r"(?:line |csv:.*:)(\d+)", where)
    return f"línea {found.group(1)}" if found else where


def spanish_problem(text: str) -> str:
    """One problem or warning of a row, in Spanish (its reasons one by one); unknown wording stays in English."""
    whole = _apply(_REASONS, text)
    if whole is not None:
        return whole
    parts = []
    for reason in text.split("; "):
        spanish = _apply(_REASONS, reason)
        parts.append(spanish if spanish is not None else f"(en inglés) {reason}")
    return "; ".join(parts)


def spanish_file_error(text: str) -> str:
    """A problem of the whole file, in Spanish; unknown wording stays in English after a Spanish lead."""
    spanish = _apply(_FILE, text)
    return spanish if spanish is not None else f"el archivo no se puede importar: {text}"


def spanish_located(text: str) -> str:
    """``line 7: reason`` (``Problem``'s text) -> ``Línea 7: motivo``."""
    where, separator, reason = text.partition(": ")
    if not separator:
        return spanish_problem(text)
    place = spanish_where(where)
    return f"{place[:1].upper()}{place[1:]}: {spanish_problem(reason)}"


def action_summary(action: Mapping[str, Any]) -> str:
    """What the dialer recorded for an import (JSON in ``detail``), in one Spanish sentence."""
    try:
        detail = json.loads(action.get("detail") or "{}")
    except ValueError:
        return str(action.get("detail") or "")
    if not isinstance(detail, dict):
        return str(action.get("detail") or "")
    if "error" in detail:
        error = str(detail["error"])
        return _apply(_CAMPAIGN, error) or spanish_file_error(error)
    if "problems" in detail:
        count = int(detail.get("problem_count") or len(detail["problems"]))
        return (
            f"no se importó nada: {count} fila{'s' if count != 1 else ''} con errores ("
            + "; ".join(spanish_located(str(problem)) for problem in detail["problems"][:5])
            + (", …" if count > 5 else "")
            + ")"
        )
    counts = (
        ("added", "nuevos"),
        ("updated", "actualizados"),
        ("unchanged", "sin cambios"),
        ("reopened", "pendientes otra vez"),
        ("opted_out", "en la lista de no llamar"),
    )
    parts = [f"{int(detail.get(key) or 0)} {label}" for key, label in counts if key in detail]
    text = f"{int(detail.get('rows') or 0)} clientes: {', '.join(parts)}"
    warnings = int(detail.get("warning_count") or 0)
    if warnings:
        text += f"; {warnings} aviso{'s' if warnings != 1 else ''}"
    return text
