"""How an attempt ended, as recorded in the campaign store and the report.

The values are the texts stored in SQLite and written to reports; they never change meaning.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

__all__ = ["CONVERSATIONS", "FINAL_OUTCOMES", "Outcome"]


class Outcome(StrEnum):
    """The end of one attempt: what the network said, or what the customer told the assistant."""

    ANSWERED_HUMAN = "answered-human"  # a person answered; no agreement recorded
    ANSWERED_MACHINE = "answered-machine"  # voicemail or answering machine
    BUSY = "busy"
    NO_ANSWER = "no-answer"
    FAILED = "failed"  # the call could not be placed or the network failed
    PROMISE_TO_PAY = "promise-to-pay"  # with the promised date
    DISPUTE = "dispute"  # the customer disputes the debt (or says it is paid): a person must look at it
    WRONG_NUMBER = "wrong-number"  # the number is not the customer's, or does not exist
    OPT_OUT = "opt-out"  # the person asked not to be called again
    UNKNOWN = "unknown"  # the dialer lost track of the attempt (crash); treated as a dial that happened


# Outcomes after which the customer is not called again in this campaign.
FINAL_OUTCOMES: Final = frozenset({Outcome.DISPUTE, Outcome.WRONG_NUMBER, Outcome.OPT_OUT})

# Outcomes that mean the dialer talked with the customer: the cooldown applies after them.
CONVERSATIONS: Final = frozenset({Outcome.ANSWERED_HUMAN, Outcome.PROMISE_TO_PAY, Outcome.DISPUTE})
