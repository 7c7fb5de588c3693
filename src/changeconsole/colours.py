"""The colours of every state the CLI and the console show (rich styles; no Textual, no services).

Keyed by state values; a ``StrEnum`` member looks up as its value (``DeliveryState.SENT`` → ``"sent"``).
"""

from __future__ import annotations

from .models import ChangeStatus, DeliveryState, RecipientState

# A change's lifecycle status.
CHANGE_STATUS: dict[str, str] = {
    ChangeStatus.DRAFT: "grey62",
    ChangeStatus.SUBMITTED: "bold dark_orange",
    ChangeStatus.APPROVED: "bold green3",
    ChangeStatus.COMPLETED: "dodger_blue1",
    ChangeStatus.CANCELLED: "grey50 strike",
}

# One customer's delivery of one change event.
DELIVERY_STATE: dict[str, str] = {
    DeliveryState.QUEUED: "grey62",
    DeliveryState.PROCESSING: "bold dodger_blue1",
    DeliveryState.SENT: "green3",
    DeliveryState.PARTIAL: "bold dark_orange",
    DeliveryState.FAILED: "bold red1",
    DeliveryState.DEAD_LETTERED: "bold magenta",
    DeliveryState.SUPERSEDED: "grey50",
    DeliveryState.SKIPPED: "grey50",
}

# One destination of a fan-out (``services.fanout.DestinationState``: the archive or a customer's trigger).
DESTINATION_STATE: dict[str, str] = {
    "pending": "grey62",
    "uploading": "bold dodger_blue1",
    "done": "green3",
    "failed": "bold red1",
}

# One recipient's send, as the worker's ledger records it.
RECIPIENT_STATE: dict[str, str] = {
    RecipientState.SENT: "green3",
    RecipientState.SENDING: "bold dodger_blue1",
    RecipientState.RETRY: "dark_orange",
    RecipientState.FAILED: "bold red1",
    RecipientState.UNKNOWN: "bold magenta",
}

# What a recipient's SES events said (``services.events.Outcome``), by how bad it is for the customer's
# reputation.
SES_OUTCOME: dict[str, str] = {
    "sent": "grey70",
    "delivered": "green3",
    "delayed": "yellow",
    "soft_bounced": "yellow",
    "rejected": "bold red1",
    "rendering_failed": "bold red1",
    "bounced": "bold red1",
    "complained": "bold magenta",
}

# The outcome of an operator action in the audit trail (``services.audit``).
AUDIT_RESULT: dict[str, str] = {
    "ok": "green3",
    "partial": "bold dark_orange",
    "failed": "bold red1",
    "rejected": "dark_orange",
    "refused": "bold magenta",
}


def styled(table: dict[str, str], state: str) -> str:
    """``state`` as rich markup in its colour (plain when the table does not know it)."""
    style = table.get(state)
    return f"[{style}]{state}[/]" if style else state
