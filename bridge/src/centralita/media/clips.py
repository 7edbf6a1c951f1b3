"""Short recorded Spanish phrases the bridge itself plays into a call, as the assistant never could.

They are for the moments the model cannot be counted on: it has gone silent (``filler``: "Un momento, por
favor."), or the call is about to reach its maximum length (``warning_transfer`` / ``warning_hangup``, a minute
before, and ``goodbye`` at the end when the call is hung up rather than transferred). Recorded, not asked of the
model, so they are the same every time, cost nothing and play even when the model does not answer.

Raw G.711 μ-law, 8000 Hz, mono, no header, in the package's ``data/sounds`` (made with espeak-ng and sox: see
``data/sounds/README.md``). ``Clips.load()`` reads them once, at the service's start; every call shares the
same immutable bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

__all__ = ["Clips"]


def _read(name: str) -> bytes:
    return resources.files("centralita").joinpath(f"data/sounds/{name}.ulaw").read_bytes()


@dataclass(frozen=True, slots=True)
class Clips:
    filler: bytes
    warning_transfer: bytes
    warning_hangup: bytes
    goodbye: bytes

    @classmethod
    def load(cls) -> Clips:
        """The recordings shipped with the package (OSError if the package is incomplete)."""
        return cls(
            filler=_read("un-momento"),
            warning_transfer=_read("aviso-fin-operador"),
            warning_hangup=_read("aviso-fin-despedida"),
            goodbye=_read("despedida"),
        )
