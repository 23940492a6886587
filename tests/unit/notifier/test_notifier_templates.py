import pytest

from services.notifier.domain.builtin_templates import BUILTIN_TEMPLATES
from services.notifier.domain.policy import DEFAULT_POLICY
from services.notifier.domain.templates import (
    SAMPLE_VARIABLES,
    TRIGGER_VARIABLES,
    TemplateRenderError,
    parse_template_id,
    render,
    validate_template,
)


def _used_keys():
    """(template key, channel) pairs the default policy can ask for."""
    keys = {(stage, ch) for stage, plan in DEFAULT_POLICY.stages.items() for ch in plan.channels}
    keys |= {(trigger, ch) for trigger, plan in DEFAULT_POLICY.triggers.items()
             for ch in plan.channels}
    return sorted(keys)


@pytest.mark.parametrize(("key", "channel"), _used_keys())
@pytest.mark.parametrize("language", ["zh-CN", "en"])
def test_every_template_the_policy_uses_exists_in_both_languages(key, channel, language):
    assert f"{key}.{channel}.{language}" in BUILTIN_TEMPLATES
    if channel not in DEFAULT_POLICY.vulnerable_blocked_channels:
        assert f"{key}.{channel}.{language}.vulnerable" in BUILTIN_TEMPLATES


@pytest.mark.parametrize("template_id", sorted(BUILTIN_TEMPLATES))
def test_every_builtin_template_is_accepted_and_renders_with_its_triggers_variables(template_id):
    source = BUILTIN_TEMPLATES[template_id]
    assert validate_template(template_id, source) == []
    tid = parse_template_id(template_id)
    variables = {name: SAMPLE_VARIABLES[name] for name in TRIGGER_VARIABLES[tid.trigger]}
    rendered = render(template_id, source, variables)
    assert "{{" not in rendered.body and "Li Hua" in rendered.body + str(rendered.subject)
    if tid.channel == "email":
        assert rendered.subject and "https://bank.example/opt-out" in rendered.body
    if tid.channel == "sms":
        assert ("Reply STOP to opt out" if tid.language == "en" else "回复TD退订") in rendered.body


def test_early_warning_educates_about_credit_record_and_help():
    en = render("early_warning.email.en", BUILTIN_TEMPLATES["early_warning.email.en"],
                SAMPLE_VARIABLES).body
    assert "credit record" in en and "hardship" in en
    zh = render("early_warning.email.zh-CN", BUILTIN_TEMPLATES["early_warning.email.zh-CN"],
                SAMPLE_VARIABLES).body
    assert "征信" in zh and "纾困" in zh


def test_a_variable_the_trigger_does_not_provide_is_refused():
    errors = validate_template(
        "promise_thanks.sms.en", "Thanks {{ borrower_name }}, {{ arrears }}. Reply STOP to opt out")
    assert len(errors) == 1 and "arrears" in errors[0]["message"]


def test_a_template_that_does_not_compile_is_refused():
    errors = validate_template("early.sms.en", "Hello {{ borrower_name ")
    assert errors[0]["field"] == "source" and "compile" in errors[0]["message"]


@pytest.mark.parametrize("template_id", [
    "early.sms", "early.fax.en", "early.sms.fr", "nowhere.sms.en", "early.sms.en.loud",
])
def test_a_malformed_template_id_is_refused(template_id):
    assert validate_template(template_id, "x")[0]["field"] == "template_id"


def test_sms_without_opt_out_and_email_without_subject_are_refused():
    assert validate_template("early.sms.en", "Dear {{ borrower_name }}, please pay.")
    email = validate_template("early.email.en", "Dear {{ borrower_name }} {{ opt_out_url }}")
    assert any("Subject" in e["message"] for e in email)


def test_threatening_wording_is_refused():
    errors = validate_template(
        "legal.letter.en", "Pay {{ arrears }} or the police will arrest you.")
    assert {e["message"] for e in errors} >= {
        "threatening wording is not allowed: 'police'",
        "threatening wording is not allowed: 'arrest'",
    }
    assert validate_template("legal.letter.zh-CN", "不还款将通知您的通讯录联系人")


def test_the_sandbox_refuses_unsafe_access_and_mutation():
    assert validate_template("legal.letter.en", "{{ ''.__class__.__mro__ }}")
    assert validate_template("legal.letter.en", "{% set x = [] %}{{ x.append(1) }}")


def test_render_raises_on_a_missing_variable():
    with pytest.raises(TemplateRenderError):
        render("early.sms.en", BUILTIN_TEMPLATES["early.sms.en"], {"borrower_name": "A"})


def test_email_subject_is_split_from_the_body():
    rendered = render("early.email.en", BUILTIN_TEMPLATES["early.email.en"], SAMPLE_VARIABLES)
    assert rendered.subject == "Loan ****1234: a payment is overdue"
    assert rendered.body.startswith("Dear Li Hua,")
