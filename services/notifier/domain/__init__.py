"""The notifier's pure domain: contact policy, the decision, triggers and templates.

No I/O and no clock: every time is passed in as an aware datetime.
"""

from .decision import decide
from .model import (
    BorrowerProfile,
    ContactRecord,
    ContactRequest,
    Decision,
    Defer,
    Send,
    Suppress,
)
from .policy import (
    DEFAULT_CONTACT_POLICY,
    DEFAULT_POLICY,
    ContactPolicy,
    ContactPolicyError,
    parse_contact_policy,
    validate_contact_policy,
)
from .templates import RenderedContact, render, validate_template

__all__ = [
    "DEFAULT_CONTACT_POLICY",
    "DEFAULT_POLICY",
    "BorrowerProfile",
    "ContactPolicy",
    "ContactPolicyError",
    "ContactRecord",
    "ContactRequest",
    "Decision",
    "Defer",
    "RenderedContact",
    "Send",
    "Suppress",
    "decide",
    "parse_contact_policy",
    "render",
    "validate_contact_policy",
    "validate_template",
]
