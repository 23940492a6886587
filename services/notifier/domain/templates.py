"""Contact templates: a sandboxed Jinja2 environment, validation on save, rendering.

Template ids are `<key>.<channel>.<language>[.vulnerable]` where `key` is a stage
(`early.sms.en`) or an event trigger (`early_warning.email.zh-CN.vulnerable`). Every channel
renders plain text, so autoescaping is off; an e-mail's first line is `Subject: ...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import StrictUndefined, Template, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .model import CHANNELS, EVENT_TRIGGERS, LANGUAGES, STAGES

_COMMON = frozenset({
    "borrower_name", "bank_name", "help_phone", "help_url", "loan_ref", "currency", "opt_out_url",
})
_STAGE = _COMMON | {"arrears", "dpd", "stage", "collector_name"}

# What each trigger provides to its templates; a template may use these and nothing else.
TRIGGER_VARIABLES: Mapping[str, frozenset[str]] = {
    "stage_entry": _STAGE,
    "cadence": _STAGE,
    "early_warning": _COMMON | {"amount_due", "due_date", "instalment_no"},
    "promise_reminder": _COMMON | {"promise_amount", "promise_due_on", "collector_name"},
    "promise_thanks": _COMMON | {"promise_amount", "collector_name"},
    "owner_intro": _COMMON | {"collector_name", "collector_phone", "stage", "arrears"},
}

# Sample values: a template must render with them before it is accepted.
SAMPLE_VARIABLES: Mapping[str, object] = {
    "borrower_name": "Li Hua", "bank_name": "Qingshou Bank", "help_phone": "+86 400 000 0000",
    "help_url": "https://bank.example/help", "loan_ref": "****1234", "currency": "CNY",
    "opt_out_url": "https://bank.example/opt-out", "arrears": "1200.00", "dpd": 12,
    "stage": "early", "collector_name": "Wang Fang", "amount_due": "800.00",
    "due_date": "2026-03-10", "instalment_no": 3, "promise_amount": "500.00",
    "promise_due_on": "2026-03-12", "collector_phone": "+86 400 000 0001",
}

SMS_OPT_OUT = {"en": "Reply STOP to opt out", "zh-CN": "回复TD退订"}

# Words a collection message must never use: threats of arrest or exposure, contacting
# the borrower's circle. A factual mention of court proceedings in a demand letter is allowed.
_THREATS = (
    "arrest", "jail", "prison", "police", "criminal", "your employer",
    "逮捕", "坐牢", "拘留", "警察", "公安", "刑事", "通讯录", "曝光",
)

_ENV = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, trim_blocks=True, lstrip_blocks=True,
)


@dataclass(frozen=True, slots=True)
class TemplateId:
    key: str
    channel: str
    language: str
    vulnerable: bool

    @property
    def trigger(self) -> str:
        # Stage templates serve both stage entry and cadence, which provide the same variables.
        return self.key if self.key in EVENT_TRIGGERS else "stage_entry"


@dataclass(frozen=True, slots=True)
class RenderedContact:
    subject: str | None
    body: str


class TemplateRenderError(ValueError):
    pass


def parse_template_id(template_id: str) -> TemplateId | None:
    parts = template_id.split(".")
    vulnerable = len(parts) == 4 and parts[3] == "vulnerable"
    if len(parts) != 3 and not vulnerable:
        return None
    key, channel, language = parts[:3]
    if key not in STAGES and key not in EVENT_TRIGGERS:
        return None
    if channel not in CHANNELS or language not in LANGUAGES:
        return None
    return TemplateId(key, channel, language, vulnerable)


@lru_cache(maxsize=1024)
def _compile(source: str) -> Template:
    return _ENV.from_string(source)


def _error(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _check_rendered(tid: TemplateId, rendered: RenderedContact) -> list[dict[str, str]]:
    errors: list[dict[str, str]] = []
    text = f"{rendered.subject or ''}\n{rendered.body}"
    if tid.channel == "email" and not rendered.subject:
        errors.append(_error("source", "an e-mail starts with a line 'Subject: ...'"))
    if tid.channel == "sms" and SMS_OPT_OUT[tid.language] not in text:
        phrase = SMS_OPT_OUT[tid.language]
        errors.append(_error("source", f"an SMS carries the opt-out text '{phrase}'"))
    if tid.channel == "email" and str(SAMPLE_VARIABLES["opt_out_url"]) not in text:
        errors.append(_error("source", "an e-mail carries the opt-out link {{ opt_out_url }}"))
    lowered = text.lower()
    for word in _THREATS:
        if word in lowered:
            errors.append(_error("source", f"threatening wording is not allowed: '{word}'"))
    return errors


def validate_template(template_id: str, source: str) -> list[dict[str, str]]:
    """Every reason to refuse a template, as [{"field", "message"}]; empty when acceptable."""
    tid = parse_template_id(template_id)
    if tid is None:
        return [_error(
            "template_id",
            "must be <stage or trigger>.<channel>.<language>[.vulnerable] with a known "
            "stage or trigger, channel and language",
        )]
    try:
        ast = _ENV.parse(source)
    except TemplateError as exc:
        return [_error("source", f"does not compile: {exc}")]
    provided = TRIGGER_VARIABLES[tid.trigger]
    unknown = sorted(meta.find_undeclared_variables(ast) - provided)
    if unknown:
        return [_error(
            "source",
            f"uses variables the {tid.trigger} trigger does not provide: {', '.join(unknown)}",
        )]
    try:
        rendered = render(template_id, source, SAMPLE_VARIABLES)
    except TemplateRenderError as exc:
        return [_error("source", f"does not render: {exc}")]
    return _check_rendered(tid, rendered)


def render(
    template_id: str, source: str, variables: Mapping[str, object]
) -> RenderedContact:
    """Render in the sandbox; a missing variable raises `TemplateRenderError`."""
    try:
        text = _compile(source).render(dict(variables)).strip()
    except Exception as exc:  # an operator's template may fail in any way; report, not crash
        raise TemplateRenderError(f"{template_id}: {exc}") from exc
    channel = template_id.split(".")[1] if template_id.count(".") >= 2 else ""
    if channel == "email":
        first, _, rest = text.partition("\n")
        if first.startswith("Subject:"):
            return RenderedContact(subject=first[len("Subject:"):].strip(), body=rest.strip())
    return RenderedContact(subject=None, body=text)
