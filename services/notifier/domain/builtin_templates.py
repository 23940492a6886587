"""Built-in templates, zh-CN and en, for every stage and trigger the default policy uses.

Each message is written once per language and variant and framed per channel: an SMS opens
with the bank's name and ends with the opt-out text, an e-mail has a subject, greeting and
opt-out link, a letter is formal, a voice template is the call task read by a collector or
dialer. Vulnerable-customer variants are shorter, slower and lead with support; voice has no
vulnerable variant because vulnerable borrowers are never called by the engine.
"""

from __future__ import annotations

from collections.abc import Mapping

from .templates import SMS_OPT_OUT


def _sms(lang: str, text: str) -> str:
    if lang == "en":
        return "{{ bank_name }}: " + text + " " + SMS_OPT_OUT["en"] + "."
    return "【{{ bank_name }}】" + text + SMS_OPT_OUT["zh-CN"]


def _email(lang: str, subject: str, body: str) -> str:
    if lang == "en":
        return (
            "Subject: "
            + subject
            + "\n\nDear {{ borrower_name }},\n\n"
            + body
            + "\n\nKind regards,\n{{ bank_name }}\n\n"
            "You receive this e-mail about loan {{ loan_ref }}. "
            "To stop e-mails from us: {{ opt_out_url }}"
        )
    return (
        "Subject: "
        + subject
        + "\n\n尊敬的{{ borrower_name }}：\n\n"
        + body
        + "\n\n{{ bank_name }}\n\n"
        "本邮件涉及您的贷款{{ loan_ref }}。如不希望再收到我们的邮件，请点击退订：{{ opt_out_url }}"
    )


def _letter(lang: str, title: str, body: str) -> str:
    if lang == "en":
        return (
            "{{ bank_name }}\n\nDear {{ borrower_name }},\n\nRe: "
            + title
            + "\n\n"
            + body
            + "\n\nYours sincerely,\n{{ bank_name }}"
        )
    return (
        "{{ bank_name }}\n\n尊敬的{{ borrower_name }}：\n\n事由："
        + title
        + "\n\n"
        + body
        + "\n\n此致\n{{ bank_name }}"
    )


_HELP_EN = (
    "If you are finding it hard to pay, please tell us. We can look at a payment plan, more "
    "time or a hardship arrangement: call {{ help_phone }} or visit {{ help_url }}."
)
_HELP_ZH = (
    "如果您还款有困难，请告诉我们。我们可以商议分期还款、延期或困难纾困安排："
    "请致电{{ help_phone }}或访问{{ help_url }}。"
)
_CARE_EN = (
    "There is no pressure to reply straight away. If your circumstances are difficult, we "
    "will work with you at your pace, and you are welcome to have someone you trust speak "
    "with us. Free, independent debt advice is also available. Call {{ help_phone }} or visit "
    "{{ help_url }}."
)
_CARE_ZH = (
    "您不必立即答复。如果您目前处境困难，我们会按照您的节奏与您一起想办法，您也可以请信任的人"
    "陪同与我们沟通。您还可以获得免费、独立的债务咨询。请致电{{ help_phone }}或访问{{ help_url }}。"
)
_CREDIT_EN = (
    "Why it matters: a payment that is late is reported to the credit bureau and stays on your "
    "credit record, which can make borrowing harder or more expensive later."
)
_CREDIT_ZH = (
    "温馨提示：逾期还款会被报送征信机构并记入您的信用记录，可能使您今后贷款更困难或成本更高。"
)


def _stage_templates() -> dict[str, str]:
    t: dict[str, str] = {}
    # early: helpful reminders
    t["early.sms.en"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, {{ currency }} {{ arrears }} on loan {{ loan_ref }} is "
            "{{ dpd }} days overdue. If you have paid, thank you. Need help? Call {{ help_phone }}."
        ),
    )
    t["early.sms.en.vulnerable"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, a payment on loan {{ loan_ref }} is overdue. No rush: if "
            "things are difficult, we can help at your pace. Call {{ help_phone }}."
        ),
    )
    t["early.sms.zh-CN"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，您的贷款{{ loan_ref }}有{{ currency }} {{ arrears }}已逾期"
            "{{ dpd }}天。如已还款，谢谢您。如需帮助请致电{{ help_phone }}。"
        ),
    )
    t["early.sms.zh-CN.vulnerable"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，您的贷款{{ loan_ref }}有一笔还款已逾期。不必着急，"
            "如您有困难，我们会按您的节奏提供帮助，请致电{{ help_phone }}。"
        ),
    )
    t["early.email.en"] = _email(
        "en",
        "Loan {{ loan_ref }}: a payment is overdue",
        (
            "Our records show that {{ currency }} {{ arrears }} on loan {{ loan_ref }} is "
            "{{ dpd }} days past due. If you have already paid, thank you, and please ignore this "
            "message.\n\n" + _HELP_EN
        ),
    )
    t["early.email.en.vulnerable"] = _email(
        "en",
        "Loan {{ loan_ref }}: we are here to help",
        (
            "A payment of {{ currency }} {{ arrears }} on loan {{ loan_ref }} is overdue.\n\n"
            + _CARE_EN
        ),
    )
    t["early.email.zh-CN"] = _email(
        "zh-CN",
        "贷款{{ loan_ref }}：有一笔还款已逾期",
        (
            "我们的记录显示，"
            "您的贷款{{ loan_ref }}有{{ currency }} {{ arrears }}已逾期{{ dpd }}天。"
            "如您已还款，谢谢您，请忽略本邮件。\n\n" + _HELP_ZH
        ),
    )
    t["early.email.zh-CN.vulnerable"] = _email(
        "zh-CN",
        "贷款{{ loan_ref }}：我们随时为您提供帮助",
        ("您的贷款{{ loan_ref }}有一笔{{ currency }} {{ arrears }}的还款已逾期。\n\n" + _CARE_ZH),
    )
    # negotiation: call tasks and an invitation to agree a plan
    t["negotiation.voice.en"] = (
        "Call task ({{ borrower_name }}): loan {{ loan_ref }}, {{ dpd }} days past due, "
        "arrears {{ currency }} "
        "{{ arrears }}. Introduce yourself as {{ collector_name }} of {{ bank_name }} and confirm "
        "the borrower's identity before discussing the loan. Ask how they are and whether they "
        "can pay; offer a payment plan or record a promise with amount and date. Mention hardship "
        "support ({{ help_phone }}). Be factual and respectful; end the call if asked."
    )
    t["negotiation.voice.zh-CN"] = (
        "外呼任务（{{ borrower_name }}）：贷款{{ loan_ref }}，逾期{{ dpd }}天，"
        "欠款{{ currency }} {{ arrears }}。"
        "请以{{ bank_name }}的{{ collector_name }}的身份自我介绍，先核实客户身份再谈及贷款。"
        "了解客户近况及还款能力，可商议分期方案或记录还款承诺（金额和日期）。"
        "告知困难纾困渠道（{{ help_phone }}）。语气客观、尊重；客户要求结束通话时立即结束。"
    )
    t["negotiation.sms.en"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, loan {{ loan_ref }} is {{ dpd }} days "
            "overdue ({{ currency }} "
            "{{ arrears }}). {{ collector_name }} can agree a payment plan "
            "with you: {{ help_phone }}."
        ),
    )
    t["negotiation.sms.en.vulnerable"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, we would like to help with loan {{ "
            "loan_ref }} in a way that "
            "works for you. Talk to us when you are ready: {{ help_phone }}."
        ),
    )
    t["negotiation.sms.zh-CN"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，"
            "您的贷款{{ loan_ref }}已逾期{{ dpd }}天，欠款{{ currency }} "
            "{{ arrears }}。{{ collector_name }}可与您商议还款计划，请致电{{ help_phone }}。"
        ),
    )
    t["negotiation.sms.zh-CN.vulnerable"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，关于贷款{{ loan_ref }}，我们希望以适合您的方式提供帮助。"
            "方便时请致电{{ help_phone }}。"
        ),
    )
    # intensive: calls and letters
    t["intensive.voice.en"] = (
        "Call task ({{ borrower_name }}): loan {{ loan_ref }}, {{ dpd }} days past due, "
        "arrears {{ currency }} "
        "{{ arrears }}. Introduce yourself as {{ collector_name }} of {{ bank_name }} and confirm "
        "identity first. Explain the amount overdue and listen to the borrower's situation. Seek "
        "a realistic payment plan or promise (amount and date) and offer hardship support "
        "({{ help_phone }}). Be factual and respectful; end the call if asked."
    )
    t["intensive.voice.zh-CN"] = (
        "外呼任务（{{ borrower_name }}）：贷款{{ loan_ref }}，逾期{{ dpd }}天，"
        "欠款{{ currency }} {{ arrears }}。"
        "请以{{ bank_name }}的{{ collector_name }}的身份自我介绍并先核实身份。说明逾期金额，"
        "倾听客户情况，争取切实可行的还款计划或承诺（金额和日期），并告知困难纾困渠道"
        "（{{ help_phone }}）。语气客观、尊重；客户要求结束通话时立即结束。"
    )
    t["intensive.letter.en"] = _letter(
        "en",
        "loan {{ loan_ref }}, {{ currency }} {{ arrears }} overdue",
        (
            "The amount of {{ currency }} {{ arrears }} on your loan {{ "
            "loan_ref }} has been overdue "
            "for {{ dpd }} days. We would like to agree a way forward with you. Please contact "
            "{{ collector_name }} on {{ help_phone }}.\n\n" + _HELP_EN
        ),
    )
    t["intensive.letter.en.vulnerable"] = _letter(
        "en",
        "loan {{ loan_ref }}, support available",
        (
            "We are writing about your loan {{ loan_ref }}, on which {{ "
            "currency }} {{ arrears }} is "
            "overdue. We want to help you find an arrangement you can manage.\n\n" + _CARE_EN
        ),
    )
    t["intensive.letter.zh-CN"] = _letter(
        "zh-CN",
        "贷款{{ loan_ref }}逾期{{ currency }} {{ arrears }}",
        (
            "您的贷款{{ loan_ref }}有{{ currency }} {{ arrears }}已逾期{{ dpd }}天。"
            "我们希望与您商定"
            "解决方案，请联系{{ collector_name }}，电话{{ help_phone }}。\n\n" + _HELP_ZH
        ),
    )
    t["intensive.letter.zh-CN.vulnerable"] = _letter(
        "zh-CN",
        "贷款{{ loan_ref }}可获得的帮助",
        (
            "我们就您的贷款{{ loan_ref }}（逾期{{ currency }} {{ arrears }}）致函，希望帮助您找到"
            "力所能及的还款安排。\n\n" + _CARE_ZH
        ),
    )
    # legal: the demand letter, factual about what follows
    t["legal.letter.en"] = _letter(
        "en",
        "formal demand for payment, loan {{ loan_ref }}",
        (
            "The amount of {{ currency }} {{ arrears }} on your loan {{ "
            "loan_ref }} has been overdue "
            "for {{ dpd }} days. We ask you to pay it, or to contact us to agree a repayment "
            "arrangement, within 14 days of the date of this letter. If we cannot reach an "
            "agreement, the bank may refer the loan to its legal department, which can ask a court "
            "to decide on the debt. We would much rather agree a solution with you: call "
            "{{ help_phone }} or visit {{ help_url }}."
        ),
    )
    t["legal.letter.en.vulnerable"] = _letter(
        "en",
        "loan {{ loan_ref }}, please talk to us",
        (
            "{{ currency }} {{ arrears }} on your loan {{ loan_ref }} "
            "remains overdue, and we would "
            "like to resolve it together with you before any formal steps are considered.\n\n"
            + _CARE_EN
        ),
    )
    t["legal.letter.zh-CN"] = _letter(
        "zh-CN",
        "贷款{{ loan_ref }}正式还款通知",
        (
            "您的贷款{{ loan_ref }}有{{ currency }} {{ arrears }}已逾期{{ dpd }}天。"
            "请您在本函日期起"
            "14日内还款，或与我们联系商定还款安排。如未能达成一致，本行可能将该贷款移交法务部门，"
            "由法院依法裁决。我们更希望与您协商解决，请致电{{ help_phone }}或访问{{ help_url }}。"
        ),
    )
    t["legal.letter.zh-CN.vulnerable"] = _letter(
        "zh-CN",
        "关于贷款{{ loan_ref }}，请与我们沟通",
        (
            "您的贷款{{ loan_ref }}仍有{{ currency }} {{ arrears }}逾期，我们希望在考虑任何正式"
            "步骤之前与您共同解决。\n\n" + _CARE_ZH
        ),
    )
    return t


def _trigger_templates() -> dict[str, str]:
    t: dict[str, str] = {}
    # early warning: before the due date, with education on credit records and help
    t["early_warning.sms.en"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, {{ currency }} {{ amount_due }} on "
            "loan {{ loan_ref }} is due "
            "on {{ due_date }}. A late payment is reported on your credit record. Can't pay? Ask "
            "about hardship help: {{ help_phone }}."
        ),
    )
    t["early_warning.sms.en.vulnerable"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, a payment on loan {{ loan_ref }} is "
            "due on {{ due_date }}. If "
            "it may be difficult, tell us early and we will help: {{ help_phone }}."
        ),
    )
    t["early_warning.sms.zh-CN"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，"
            "您的贷款{{ loan_ref }}将于{{ due_date }}到期还款{{ currency }} "
            "{{ amount_due }}。逾期将记入征信记录。如还款有困难，可申请纾困帮助：{{ help_phone }}。"
        ),
    )
    t["early_warning.sms.zh-CN.vulnerable"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，您的贷款{{ loan_ref }}将于{{ due_date }}到期还款。"
            "如可能有困难，请尽早告诉我们，我们会帮助您：{{ help_phone }}。"
        ),
    )
    t["early_warning.email.en"] = _email(
        "en",
        "Reminder: {{ currency }} {{ amount_due }} due on {{ due_date }}",
        (
            "Instalment {{ instalment_no }} of your loan {{ loan_ref }}, {{ currency }} "
            "{{ amount_due }}, is due on {{ due_date }}.\n\n"
            + _CREDIT_EN
            + "\n\nIf you cannot pay "
            "on time, please tell us before the due date. You can ask for a hardship arrangement, "
            "for example more time or smaller instalments, by calling {{ help_phone }} or at "
            "{{ help_url }}. Asking for help costs nothing."
        ),
    )
    t["early_warning.email.en.vulnerable"] = _email(
        "en",
        "Your payment on {{ due_date }}: help is available",
        (
            "A payment of {{ currency }} {{ amount_due }} on loan {{ loan_ref }} is due on "
            "{{ due_date }}. Late payments are recorded with the credit bureau, so if paying may "
            "be hard, please let us know early.\n\n" + _CARE_EN
        ),
    )
    t["early_warning.email.zh-CN"] = _email(
        "zh-CN",
        "还款提醒：{{ due_date }}应还{{ currency }} {{ amount_due }}",
        (
            "您的贷款{{ loan_ref }}第{{ instalment_no }}期应还{{ currency }} {{ amount_due }}，"
            "到期日为{{ due_date }}。\n\n"
            + _CREDIT_ZH
            + "\n\n如无法按时还款，请在到期日前告诉我们。"
            "您可以致电{{ help_phone }}或访问{{ help_url }}申请困难纾困安排，"
            "例如延期或降低每期还款额。"
            "申请帮助不收取任何费用。"
        ),
    )
    t["early_warning.email.zh-CN.vulnerable"] = _email(
        "zh-CN",
        "{{ due_date }}还款：我们可以帮助您",
        (
            "您的贷款{{ loan_ref }}将于{{ due_date }}到期还款{{ currency }} {{ amount_due }}。"
            "逾期会记入征信记录，如还款可能有困难，请尽早告诉我们。\n\n" + _CARE_ZH
        ),
    )
    # promises
    t["promise_reminder.sms.en"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, a reminder of the payment of {{ currency }} "
            "{{ promise_amount }} you arranged for {{ promise_due_on }} on loan {{ loan_ref }}. If "
            "plans changed, call {{ collector_name }} on {{ help_phone }}."
        ),
    )
    t["promise_reminder.sms.en.vulnerable"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, a gentle reminder of the payment you arranged for "
            "{{ promise_due_on }}. If it is no longer possible, just let us know: {{ help_phone }}."
        ),
    )
    t["promise_reminder.sms.zh-CN"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，温馨提醒："
            "您约定于{{ promise_due_on }}为贷款{{ loan_ref }}还款"
            "{{ currency }} {{ promise_amount }}。如有变化，"
            "请致电{{ help_phone }}联系{{ collector_name }}。"
        ),
    )
    t["promise_reminder.sms.zh-CN.vulnerable"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，温馨提醒您约定于{{ promise_due_on }}的还款。"
            "如有困难，请告诉我们：{{ help_phone }}。"
        ),
    )
    t["promise_thanks.sms.en"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, thank you: we received your payment of {{ currency }} "
            "{{ promise_amount }} on loan {{ loan_ref }} as arranged. Questions: {{ help_phone }}."
        ),
    )
    t["promise_thanks.sms.en.vulnerable"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, thank you for your payment on loan {{ loan_ref }}. We are "
            "here if you need anything: {{ help_phone }}."
        ),
    )
    t["promise_thanks.sms.zh-CN"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，感谢您按约定为贷款{{ loan_ref }}还款{{ currency }} "
            "{{ promise_amount }}。如有疑问请致电{{ help_phone }}。"
        ),
    )
    t["promise_thanks.sms.zh-CN.vulnerable"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，感谢您为贷款{{ loan_ref }}还款。"
            "如需帮助，请随时致电{{ help_phone }}。"
        ),
    )
    # the new owner introduces themselves
    t["owner_intro.sms.en"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, I am {{ collector_name }} of {{ bank_name }}, your contact "
            "for loan {{ loan_ref }} from now on. You can reach me on {{ collector_phone }}."
        ),
    )
    t["owner_intro.sms.en.vulnerable"] = _sms(
        "en",
        (
            "Dear {{ borrower_name }}, I am {{ collector_name }}, your contact for loan "
            "{{ loan_ref }}. I am here to help when you are ready: {{ collector_phone }}."
        ),
    )
    t["owner_intro.sms.zh-CN"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，我是{{ bank_name }}的{{ collector_name }}，今后由我负责您的"
            "贷款{{ loan_ref }}，联系电话{{ collector_phone }}。"
        ),
    )
    t["owner_intro.sms.zh-CN.vulnerable"] = _sms(
        "zh-CN",
        (
            "尊敬的{{ borrower_name }}，我是{{ collector_name }}，今后负责您的贷款{{ loan_ref }}。"
            "您方便时可随时联系我：{{ collector_phone }}。"
        ),
    )
    t["owner_intro.email.en"] = _email(
        "en",
        "Your contact at {{ bank_name }} for loan {{ loan_ref }}",
        (
            "My name is {{ collector_name }} and from now on I am your contact at {{ bank_name }} "
            "for loan {{ loan_ref }}. You can reach me on {{ collector_phone }}.\n\n" + _HELP_EN
        ),
    )
    t["owner_intro.email.en.vulnerable"] = _email(
        "en",
        "Your contact at {{ bank_name }}",
        (
            "My name is {{ collector_name }} and I am your contact for loan "
            "{{ loan_ref }}. You can "
            "reach me on {{ collector_phone }} whenever it suits you.\n\n" + _CARE_EN
        ),
    )
    t["owner_intro.email.zh-CN"] = _email(
        "zh-CN",
        "{{ bank_name }}贷款{{ loan_ref }}的专属联系人",
        (
            "我是{{ collector_name }}，"
            "今后由我作为{{ bank_name }}的联系人负责您的贷款{{ loan_ref }}。"
            "联系电话{{ collector_phone }}。\n\n" + _HELP_ZH
        ),
    )
    t["owner_intro.email.zh-CN.vulnerable"] = _email(
        "zh-CN",
        "您在{{ bank_name }}的联系人",
        (
            "我是{{ collector_name }}，今后负责您的贷款{{ loan_ref }}。您方便时可随时致电"
            "{{ collector_phone }}与我联系。\n\n" + _CARE_ZH
        ),
    )
    return t


BUILTIN_TEMPLATES: Mapping[str, str] = {**_stage_templates(), **_trigger_templates()}
