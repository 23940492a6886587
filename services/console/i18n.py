"""The console's message catalogue (en, zh-CN) and the choice of language.

Every string the pages show comes from :data:`MESSAGES`; a test checks that both languages have
every key. The language is ``?lang=`` when it names a supported one, else the best match of the
``Accept-Language`` header, else English. Values coming from the services (stage, product,
team, channel, status names) are translated through keys such as ``stage.early``; an unknown
value is shown as it came.
"""

from __future__ import annotations

from collections.abc import Callable

LANGUAGES = ("en", "zh-CN")
DEFAULT = "en"

MESSAGES: dict[str, dict[str, str]] = {
    "en": {
        "app.title": "Qingshou console",
        "nav.portfolio": "Portfolio",
        "nav.roll_rates": "Roll rates",
        "nav.contacts": "Contacts",
        "nav.leaderboard": "Leaderboard",
        "nav.loans": "Loans",
        "nav.logout": "Log out",
        "lang.switch": "中文",
        "login.title": "Sign in",
        "login.key": "API key",
        "login.submit": "Sign in",
        "login.help": "Use an API key with the read scope. It is kept in an HttpOnly cookie "
                      "for this browser session.",
        "login.invalid": "This key is not valid.",
        "login.forbidden": "This key lacks the read scope.",
        "error.upstream": "The {service} service is unavailable: {detail}. "
                          "The rest of the page is shown.",
        "error.not_found": "No loan {loan_id}.",
        "error.forbidden": "Your API key lacks the read scope.",
        "portfolio.title": "Portfolio by stage",
        "portfolio.business_date": "Business date",
        "portfolio.loans_chart": "Open loans by stage",
        "portfolio.arrears_chart": "Arrears by stage",
        "portfolio.product": "Product",
        "portfolio.stage": "Stage",
        "portfolio.loans": "Loans",
        "portfolio.arrears": "Arrears",
        "portfolio.total": "Total",
        "portfolio.empty": "No open loans.",
        "portfolio.trend": "Trend over business days",
        "portfolio.trend_note": "Loans per overdue stage at each closed business day (staging's "
                                "end-of-day snapshots, the last 60); current is left out.",
        "portfolio.arrears_note": "Arrears are summed across currencies as reported.",
        "roll.title": "Roll-rate matrix",
        "roll.period": "From {start} to {end}",
        "roll.from": "From stage",
        "roll.to": "To stage",
        "roll.base": "Loans at start",
        "roll.none": "Roll rates need two closed business days; none yet.",
        "roll.legend": "Share of the loans in a stage at the earlier date that are in each "
                       "stage at the later one; darker is higher.",
        "contacts.title": "Contacts by channel and status",
        "contacts.scope": "Every contact the notifier decided, each at its latest status; "
                          "below, the {count} loans listed (stage: {stage}) and their logs.",
        "contacts.all_stages": "all",
        "contacts.channel": "Channel",
        "contacts.status": "Status",
        "contacts.total": "Total",
        "contacts.chart": "Contacts by channel",
        "contacts.none": "No contacts logged for these loans.",
        "contacts.loans": "Loans sampled",
        "contacts.filter": "Show",
        "leaderboard.title": "Leaderboard",
        "leaderboard.period": "Period",
        "leaderboard.team": "Team",
        "leaderboard.all_teams": "All teams",
        "leaderboard.rank": "Rank",
        "leaderboard.collector": "Collector",
        "leaderboard.composite": "Composite score",
        "leaderboard.payout": "Payout",
        "leaderboard.empty": "No scorecards for this period and team.",
        "leaderboard.show": "Show",
        "scorecard.title": "Scorecard of {collector} ({period})",
        "scorecard.none": "No scorecard for this collector and period.",
        "scorecard.field": "Figure",
        "scorecard.value": "Value",
        "loans.title": "Loans",
        "loans.search": "Loan id",
        "loans.open": "Open",
        "loans.next": "Next page",
        "loans.empty": "No loans.",
        "loan.title": "Loan {loan_id}",
        "loan.stage": "Stage",
        "loan.dpd": "Days past due",
        "loan.arrears": "Arrears",
        "loan.product": "Product",
        "loan.status": "Status",
        "loan.owner": "Owner",
        "loan.team": "Team",
        "loan.no_owner": "none",
        "loan.rm": "Relationship manager",
        "loan.borrower": "Borrower",
        "loan.business_date": "As of business date",
        "loan.flags": "Flags",
        "loan.no_flags": "No active flags.",
        "loan.history": "Stage history",
        "loan.no_history": "No stage changes yet.",
        "loan.date": "Business date",
        "loan.from": "From",
        "loan.to": "To",
        "loan.reason": "Reason",
        "loan.promises": "Promises",
        "loan.no_promises": "No promises.",
        "loan.amount": "Amount",
        "loan.due_on": "Due on",
        "loan.paid": "Paid",
        "loan.collector": "Collector",
        "loan.contacts": "Contact log",
        "loan.no_contacts": "No contacts logged.",
        "loan.decided_at": "Decided at",
        "loan.channel": "Channel",
        "loan.trigger": "Trigger",
        "loan.contact_status": "Status",
        "stage.current": "Current",
        "stage.early": "Early",
        "stage.negotiation": "Negotiation",
        "stage.intensive": "Intensive",
        "stage.legal": "Legal",
        "stage.write_off": "Write-off",
        "stage.special": "Special",
        "product.credit_card": "Credit card",
        "product.consumer_loan": "Consumer loan",
        "product.mortgage": "Mortgage",
        "product.housing_fund_loan": "Housing fund loan",
        "product.business_loan": "Business loan",
        "team.negotiation": "Negotiation",
        "team.intensive": "Intensive",
        "team.legal": "Legal",
        "team.recovery": "Recovery",
        "channel.sms": "SMS",
        "channel.email": "E-mail",
        "channel.voice": "Voice",
        "channel.letter": "Letter",
        "status.sent": "Sent",
        "status.delivered": "Delivered",
        "status.failed": "Failed",
        "status.deferred": "Deferred",
        "status.suppressed": "Suppressed",
        "status.open": "Open",
        "status.closed": "Closed",
        "status.kept": "Kept",
        "status.broken": "Broken",
        "status.cancelled": "Cancelled",
    },
    "zh-CN": {
        "app.title": "清收控制台",
        "nav.portfolio": "资产组合",
        "nav.roll_rates": "迁徙率",
        "nav.contacts": "催收联络",
        "nav.leaderboard": "排行榜",
        "nav.loans": "贷款",
        "nav.logout": "退出",
        "lang.switch": "English",
        "login.title": "登录",
        "login.key": "API 密钥",
        "login.submit": "登录",
        "login.help": "请使用具有 read 权限的 API 密钥。密钥仅在本次浏览器会话中保存在 HttpOnly "
                      "Cookie 中。",
        "login.invalid": "该密钥无效。",
        "login.forbidden": "该密钥没有 read 权限。",
        "error.upstream": "{service} 服务不可用：{detail}。页面其余部分照常显示。",
        "error.not_found": "没有贷款 {loan_id}。",
        "error.forbidden": "您的 API 密钥没有 read 权限。",
        "portfolio.title": "按阶段的资产组合",
        "portfolio.business_date": "营业日",
        "portfolio.loans_chart": "各阶段在贷笔数",
        "portfolio.arrears_chart": "各阶段逾期金额",
        "portfolio.product": "产品",
        "portfolio.stage": "阶段",
        "portfolio.loans": "笔数",
        "portfolio.arrears": "逾期金额",
        "portfolio.total": "合计",
        "portfolio.empty": "没有在贷贷款。",
        "portfolio.trend": "按营业日的趋势",
        "portfolio.trend_note": "各逾期阶段在每个已结营业日的贷款笔数（staging 日终快照，"
                                "最近 60 天）；不含正常阶段。",
        "portfolio.arrears_note": "逾期金额按服务返回的数值跨币种相加。",
        "roll.title": "迁徙率矩阵",
        "roll.period": "从 {start} 到 {end}",
        "roll.from": "起始阶段",
        "roll.to": "目标阶段",
        "roll.base": "期初笔数",
        "roll.none": "迁徙率需要两个已结束的营业日，目前还没有。",
        "roll.legend": "较早日期处于某阶段的贷款在较晚日期所处阶段的占比；颜色越深占比越高。",
        "contacts.title": "按渠道和状态的联络",
        "contacts.scope": "通知服务决定的全部联络，按最新状态计；下列为 {count} 笔贷款"
                          "（阶段：{stage}）及其联络记录。",
        "contacts.all_stages": "全部",
        "contacts.channel": "渠道",
        "contacts.status": "状态",
        "contacts.total": "合计",
        "contacts.chart": "各渠道联络次数",
        "contacts.none": "这些贷款没有联络记录。",
        "contacts.loans": "抽样贷款",
        "contacts.filter": "显示",
        "leaderboard.title": "排行榜",
        "leaderboard.period": "期间",
        "leaderboard.team": "团队",
        "leaderboard.all_teams": "全部团队",
        "leaderboard.rank": "名次",
        "leaderboard.collector": "催收员",
        "leaderboard.composite": "综合得分",
        "leaderboard.payout": "奖金",
        "leaderboard.empty": "该期间和团队没有计分卡。",
        "leaderboard.show": "显示",
        "scorecard.title": "{collector} 的计分卡（{period}）",
        "scorecard.none": "该催收员在该期间没有计分卡。",
        "scorecard.field": "指标",
        "scorecard.value": "数值",
        "loans.title": "贷款",
        "loans.search": "贷款编号",
        "loans.open": "打开",
        "loans.next": "下一页",
        "loans.empty": "没有贷款。",
        "loan.title": "贷款 {loan_id}",
        "loan.stage": "阶段",
        "loan.dpd": "逾期天数",
        "loan.arrears": "逾期金额",
        "loan.product": "产品",
        "loan.status": "状态",
        "loan.owner": "负责人",
        "loan.team": "团队",
        "loan.no_owner": "无",
        "loan.rm": "客户经理",
        "loan.borrower": "借款人",
        "loan.business_date": "截至营业日",
        "loan.flags": "标记",
        "loan.no_flags": "没有生效的标记。",
        "loan.history": "阶段历史",
        "loan.no_history": "尚无阶段变化。",
        "loan.date": "营业日",
        "loan.from": "原阶段",
        "loan.to": "新阶段",
        "loan.reason": "原因",
        "loan.promises": "还款承诺",
        "loan.no_promises": "没有还款承诺。",
        "loan.amount": "金额",
        "loan.due_on": "承诺日期",
        "loan.paid": "已还",
        "loan.collector": "催收员",
        "loan.contacts": "联络记录",
        "loan.no_contacts": "没有联络记录。",
        "loan.decided_at": "决定时间",
        "loan.channel": "渠道",
        "loan.trigger": "触发",
        "loan.contact_status": "状态",
        "stage.current": "正常",
        "stage.early": "早期",
        "stage.negotiation": "协商",
        "stage.intensive": "强化催收",
        "stage.legal": "法律",
        "stage.write_off": "核销",
        "stage.special": "特殊",
        "product.credit_card": "信用卡",
        "product.consumer_loan": "消费贷款",
        "product.mortgage": "住房按揭",
        "product.housing_fund_loan": "公积金贷款",
        "product.business_loan": "经营贷款",
        "team.negotiation": "协商组",
        "team.intensive": "强化催收组",
        "team.legal": "法务组",
        "team.recovery": "资产回收组",
        "channel.sms": "短信",
        "channel.email": "电子邮件",
        "channel.voice": "语音",
        "channel.letter": "信函",
        "status.sent": "已发送",
        "status.delivered": "已送达",
        "status.failed": "失败",
        "status.deferred": "已延后",
        "status.suppressed": "已抑制",
        "status.open": "未结",
        "status.closed": "已结清",
        "status.kept": "已履约",
        "status.broken": "已违约",
        "status.cancelled": "已取消",
    },
}


def negotiate(query_lang: str | None, accept_language: str | None) -> str:
    """The page language: ``?lang=`` if supported, else the best Accept-Language match."""
    if query_lang in LANGUAGES:
        return query_lang
    best, best_q = DEFAULT, -1.0
    for position, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip().lower()
        q = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q <= 0 or not tag:
            continue
        lang = "zh-CN" if tag == "zh" or tag.startswith("zh-") else (
            "en" if tag == "en" or tag.startswith("en-") else None)
        # equal weights: the earlier entry wins (the header's order)
        if lang is not None and q - position * 1e-6 > best_q:
            best, best_q = lang, q - position * 1e-6
    return best


def translator(lang: str) -> Callable[..., str]:
    """``t(key, **values)``: the message in ``lang``; ``t.value(kind, raw)`` for API values."""
    table = MESSAGES.get(lang, MESSAGES[DEFAULT])

    def t(key: str, **values: object) -> str:
        text = table.get(key) or MESSAGES[DEFAULT].get(key) or key
        return text.format(**values) if values else text

    return t


def label(lang: str, kind: str, raw: object) -> str:
    """A service value (``stage``, ``product``, ``team``, ``channel``, ``status``) in ``lang``."""
    if raw is None:
        return ""
    return MESSAGES.get(lang, MESSAGES[DEFAULT]).get(f"{kind}.{raw}", str(raw))
