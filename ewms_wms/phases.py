"""Taskforce phases and which confirmations move a taskforce from one to the next.

A taskforce only moves when someone confirms a fact (the queues exist, the TMS submitted,
the TMS removed, every job ended), so a TMS or the WMS can crash and restart at any point:
the phase in the database always says what is true, and repeating a confirmation is harmless.

    pre-mq-activation -> pending-starter -> condor-submit -> pending-stopper -> condor-rm -> condor-complete
                                     \\-> failed (submission kept failing)

Deactivating a workflow (abort/finished) sends taskforces that never had jobs straight to
condor-complete and those with jobs to pending-stopper.
"""

import dataclasses
import enum


class Phase(enum.StrEnum):
    """Where a taskforce is in its life."""

    PRE_MQ_ACTIVATION = "pre-mq-activation"
    PENDING_STARTER = "pending-starter"
    CONDOR_SUBMIT = "condor-submit"
    PENDING_STOPPER = "pending-stopper"
    CONDOR_RM = "condor-rm"
    CONDOR_COMPLETE = "condor-complete"
    FAILED = "failed"


TERMINAL = frozenset({Phase.CONDOR_COMPLETE, Phase.FAILED})
"""Nothing runs and nothing will: the workflow's queues may go once all its taskforces are here."""

NEVER_SUBMITTED = frozenset({Phase.PRE_MQ_ACTIVATION, Phase.PENDING_STARTER})
"""No job exists (as far as any TMS confirmed): deactivation completes these at once."""


@dataclasses.dataclass(frozen=True)
class Transition:
    """A TMS confirmation: from which phases it moves a taskforce, to which, and where a repeat is a no-op."""

    name: str
    sources: frozenset[Phase]
    target: Phase
    already_done: frozenset[Phase]


RM = Transition(
    "condor-rm",
    frozenset({Phase.PENDING_STOPPER}),
    Phase.CONDOR_RM,
    # a repeat, or the jobs ended on their own before the removal was confirmed
    frozenset({Phase.CONDOR_RM, Phase.CONDOR_COMPLETE}),
)
COMPLETE = Transition(
    "condor-complete",
    frozenset({Phase.CONDOR_SUBMIT, Phase.PENDING_STOPPER, Phase.CONDOR_RM}),
    Phase.CONDOR_COMPLETE,
    frozenset({Phase.CONDOR_COMPLETE}),
)


class Deactivation(enum.StrEnum):
    """Why a workflow stopped (upstream EWMS's values)."""

    ABORTED = "ABORTED"
    FINISHED = "FINISHED"
