import copy
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.notifier.domain.decision import decide
from services.notifier.domain.model import (
    BorrowerProfile,
    ContactRecord,
    ContactRequest,
    Defer,
    Send,
    Suppress,
)
from services.notifier.domain.policy import (
    DEFAULT_CONTACT_POLICY,
    DEFAULT_POLICY,
    parse_contact_policy,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
NEW_YORK = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")


def local(tz, *args):
    return datetime(*args, tzinfo=tz)


def request(channel="sms", *, created_at, template=None, stage="early", requires="early",
            now_stage=None, closed=False, valid_until=None, trigger="stage_entry"):
    return ContactRequest(
        contact_id="c-1", loan_id="L1", borrower_id="B1", channel=channel,
        template=template or f"{stage}.{channel}", trigger=trigger, stage=stage,
        created_at=created_at, requires_stage=requires,
        loan_stage_now=now_stage or stage, loan_closed=closed, valid_until=valid_until,
    )


def borrower(tz="Asia/Shanghai", **kw):
    return BorrowerProfile(borrower_id="B1", timezone=tz, language=kw.pop("language", "en"), **kw)


def run(req, b=None, flags=(), history=(), now=None, policy=DEFAULT_POLICY):
    return decide(req, b or borrower(), frozenset(flags), list(history), now or req.created_at,
                  policy)


def policy_with(**changes):
    doc = copy.deepcopy(DEFAULT_CONTACT_POLICY)
    for path, value in changes.items():
        *parents, leaf = path.split("__")
        node = doc
        for p in parents:
            node = node[p]
        node[leaf] = value
    return parse_contact_policy(doc)


def test_sends_in_allowed_hours_with_the_language_template():
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    assert run(request(created_at=now)) == Send("c-1", "sms", "early.sms.en", "en", False)
    zh = run(request(created_at=now), borrower(language="zh-CN"))
    assert zh.template_id == "early.sms.zh-CN"


def test_unsupported_language_falls_back_to_the_default():
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    assert run(request(created_at=now), borrower(language="fr")).template_id == "early.sms.zh-CN"


def test_window_edges_are_0800_inclusive_and_2100_exclusive():
    assert isinstance(run(request(created_at=local(SHANGHAI, 2026, 5, 5, 8, 0))), Send)
    assert isinstance(run(request(created_at=local(SHANGHAI, 2026, 5, 5, 20, 59, 59))), Send)
    late = run(request(created_at=local(SHANGHAI, 2026, 5, 5, 21, 0)))
    assert isinstance(late, Defer) and late.reason == "quiet_hours"


def test_late_evening_defers_to_0800_next_local_day():
    d = run(request(created_at=local(SHANGHAI, 2026, 5, 5, 23, 30)))
    assert d == Defer("c-1", datetime(2026, 5, 6, 0, 0, tzinfo=UTC), "quiet_hours",
                      ("quiet_hours",))


def test_early_morning_defers_to_0800_the_same_day():
    d = run(request(created_at=local(ZoneInfo("Asia/Kolkata"), 2026, 5, 5, 6, 10)),
            borrower("Asia/Kolkata"))
    assert d.until == datetime(2026, 5, 5, 2, 30, tzinfo=UTC)


@pytest.mark.parametrize(("tz", "evening", "expected_utc"), [
    (NEW_YORK, (2026, 3, 7, 22, 0), datetime(2026, 3, 8, 12, 0, tzinfo=UTC)),   # EST -> EDT
    (NEW_YORK, (2026, 10, 31, 22, 0), datetime(2026, 11, 1, 13, 0, tzinfo=UTC)),  # EDT -> EST
    (LONDON, (2026, 3, 28, 22, 0), datetime(2026, 3, 29, 7, 0, tzinfo=UTC)),    # GMT -> BST
    (LONDON, (2026, 10, 24, 22, 0), datetime(2026, 10, 25, 8, 0, tzinfo=UTC)),  # BST -> GMT
])
def test_deferral_over_a_daylight_saving_change_lands_on_0800_local(tz, evening, expected_utc):
    d = run(request(created_at=local(tz, *evening)), borrower(tz.key))
    assert d.until == expected_utc
    assert d.until.astimezone(tz).strftime("%H:%M:%S") == "08:00:00"


def test_a_quiet_end_that_does_not_exist_lands_on_the_transition():
    policy = policy_with(quiet_hours={"start": "20:00", "end": "02:30"})
    # 2026-03-08 in New York: 02:00 EST jumps to 03:00 EDT, 02:30 never happens.
    d = run(request(created_at=local(NEW_YORK, 2026, 3, 8, 1, 0)), borrower("America/New_York"),
            policy=policy)
    assert d.until == datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert d.until.astimezone(NEW_YORK).strftime("%H:%M") == "03:00"


def test_a_quiet_end_that_happens_twice_lands_on_its_first_occurrence():
    policy = policy_with(quiet_hours={"start": "23:00", "end": "01:30"})
    # 2026-11-01 in New York: 01:30 EDT (05:30 UTC), then 01:30 EST (06:30 UTC).
    d = run(request(created_at=local(NEW_YORK, 2026, 11, 1, 0, 15)),
            borrower("America/New_York"), policy=policy)
    assert d.until == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)


@pytest.mark.parametrize("flag", ["cease_contact", "dispute", "bankruptcy", "deceased", "fraud"])
def test_blocking_flags_suppress(flag):
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    assert run(request(created_at=now), flags={flag}) == Suppress("c-1", flag)


def test_cease_contact_is_reported_before_other_flags_and_before_quiet_hours():
    now = local(SHANGHAI, 2026, 5, 5, 23, 0)
    d = run(request(created_at=now), flags={"fraud", "cease_contact", "dispute"})
    assert d.reason == "cease_contact"


def test_non_blocking_flags_do_not_suppress():
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    assert isinstance(run(request(created_at=now), flags={"wilful_default"}), Send)


def test_opted_out_channel_is_suppressed():
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    d = run(request(created_at=now), borrower(opted_out_channels=frozenset({"sms"})))
    assert d == Suppress("c-1", "opted_out", "sms")
    other = run(request("email", created_at=now), borrower(opted_out_channels=frozenset({"sms"})))
    assert isinstance(other, Send)


def test_vulnerable_borrower_gets_no_voice_and_the_vulnerable_template():
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    vb = borrower(vulnerable=True)
    voice = request("voice", created_at=now, stage="negotiation", requires="negotiation")
    assert run(voice, vb).reason == "vulnerable_no_voice"
    sms = run(request(created_at=now), vb)
    assert sms.template_id == "early.sms.en.vulnerable" and sms.vulnerable


def test_hardship_flag_gets_vulnerable_treatment():
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    assert run(request(created_at=now), flags={"hardship"}).template_id.endswith(".vulnerable")
    voice = request("voice", created_at=now, stage="negotiation", requires="negotiation")
    assert run(voice, flags={"hardship"}).reason == "vulnerable_no_voice"


@pytest.mark.parametrize(("channel", "missing"), [
    ("sms", "has_phone"), ("voice", "has_phone"), ("email", "has_email"), ("letter", "has_address"),
])
def test_no_address_for_the_channel(channel, missing):
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    req = request(channel, created_at=now, stage="intensive", requires="intensive")
    assert run(req, borrower(**{missing: False})) == Suppress("c-1", "no_address", channel)


def test_stale_when_the_loan_cured_or_closed():
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    cured = run(request(created_at=now, now_stage="current"))
    assert cured == Suppress("c-1", "stale", "stage_changed:current")
    assert run(request(created_at=now, closed=True)) == Suppress("c-1", "stale", "loan_closed")


def test_a_stage_independent_request_survives_a_stage_change():
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    req = request(created_at=now, template="promise_thanks.sms", requires=None,
                  now_stage="negotiation", trigger="promise_thanks")
    assert isinstance(run(req), Send)


def test_no_automated_contact_in_write_off():
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    req = request(created_at=now, template="promise_reminder.sms", requires=None,
                  now_stage="write_off", trigger="promise_reminder")
    assert run(req) == Suppress("c-1", "stage_not_automated", "write_off")


def test_sms_daily_cap_defers_to_the_minute_after_the_window_releases():
    now = local(SHANGHAI, 2026, 5, 5, 9, 0)
    sent = local(SHANGHAI, 2026, 5, 4, 15, 0, 30)
    d = run(request(created_at=now), history=[ContactRecord("sms", sent, "sent")])
    assert d.reason == "frequency_cap"
    assert d.until == local(SHANGHAI, 2026, 5, 5, 15, 1).astimezone(UTC)


def test_a_contact_exactly_one_window_ago_no_longer_counts():
    now = local(SHANGHAI, 2026, 5, 5, 15, 0)
    history = [ContactRecord("sms", now - timedelta(hours=24), "delivered")]
    assert isinstance(run(request(created_at=now), history=history), Send)


def test_cap_release_inside_quiet_hours_moves_to_the_next_morning():
    now = local(SHANGHAI, 2026, 5, 5, 9, 0)
    sent = local(SHANGHAI, 2026, 5, 4, 20, 59, 30)
    d = run(request(created_at=now), history=[ContactRecord("sms", sent, "sent")])
    assert d.until == local(SHANGHAI, 2026, 5, 6, 8, 0).astimezone(UTC)
    assert d.reason == "quiet_hours"
    assert d.constraints == ("frequency_cap", "quiet_hours")


def test_weekly_sms_cap_waits_for_the_oldest_to_leave():
    now = local(SHANGHAI, 2026, 5, 8, 10, 0)
    history = [ContactRecord("sms", local(SHANGHAI, 2026, 5, d, 9, 0), "sent") for d in (2, 4, 6)]
    d = run(request(created_at=now), history=history)
    assert d.until == local(SHANGHAI, 2026, 5, 9, 9, 0).astimezone(UTC)


def test_voice_daily_cap_of_six():
    now = local(SHANGHAI, 2026, 5, 5, 16, 0)
    history = [ContactRecord("voice", local(SHANGHAI, 2026, 5, 5, 9 + h, 0), "sent")
               for h in range(6)]
    req = request("voice", created_at=now, stage="negotiation", requires="negotiation")
    d = run(req, history=history)
    assert d.reason == "frequency_cap"
    assert d.until == local(SHANGHAI, 2026, 5, 6, 9, 0).astimezone(UTC)


def test_failed_counts_for_voice_only_and_other_statuses_never():
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    for status in ("failed", "deferred", "suppressed"):
        history = [ContactRecord("sms", now - timedelta(hours=1), status)]
        assert isinstance(run(request(created_at=now), history=history), Send)
    calls = [ContactRecord("voice", now - timedelta(hours=h), "failed") for h in range(1, 7)]
    req = request("voice", created_at=now, stage="negotiation", requires="negotiation")
    assert isinstance(run(req, history=calls), Defer)


def test_other_channels_do_not_use_up_the_cap():
    now = local(SHANGHAI, 2026, 5, 5, 10, 0)
    history = [ContactRecord("email", now - timedelta(hours=1), "sent")]
    assert isinstance(run(request(created_at=now), history=history), Send)


def test_stale_when_the_deferral_would_pass_the_staleness_limit():
    created = local(SHANGHAI, 2026, 5, 2, 12, 0)
    now = local(SHANGHAI, 2026, 5, 4, 22, 0)  # 58 h later; next 08:00 is 68 h after creation
    assert isinstance(run(request(created_at=created), now=now), Defer)
    now = local(SHANGHAI, 2026, 5, 5, 22, 0)  # next 08:00 would be 92 h after creation
    d = run(request(created_at=created), now=now)
    assert d == Suppress("c-1", "stale", "too_old")
    d = run(request(created_at=created), now=local(SHANGHAI, 2026, 5, 4, 23, 0),
            policy=policy_with(staleness={"max_deferral_hours": 60}))
    assert d == Suppress("c-1", "stale", "deferral_beyond_limit:quiet_hours")


def test_stale_after_the_requests_last_valid_local_day():
    created = local(SHANGHAI, 2026, 5, 5, 22, 0)
    req = request(created_at=created, template="promise_reminder.sms", requires=None,
                  trigger="promise_reminder", valid_until=date(2026, 5, 5))
    assert run(req).reason == "stale"
    req = request(created_at=created, template="promise_reminder.sms", requires=None,
                  trigger="promise_reminder", valid_until=date(2026, 5, 6))
    assert isinstance(run(req), Defer)


def test_same_inputs_same_decision():
    now = local(LONDON, 2026, 10, 24, 22, 0)
    history = [ContactRecord("sms", now - timedelta(hours=5), "sent")]
    req = request(created_at=now)
    assert run(req, borrower("Europe/London"), history=history) == run(
        req, borrower("Europe/London"), history=history)


def test_released_request_is_decided_again_with_the_new_loan_state():
    created = local(SHANGHAI, 2026, 5, 5, 23, 0)
    first = run(request(created_at=created))
    assert isinstance(first, Defer)
    released = request(created_at=created).with_loan_state("current", False)
    assert run(released, now=first.until).reason == "stale"
    assert isinstance(run(request(created_at=created), now=first.until), Send)
