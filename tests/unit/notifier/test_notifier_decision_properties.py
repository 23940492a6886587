"""Random borrowers and request streams through `decide`, in time order, around DST changes."""

import copy
import heapq
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from services.notifier.domain.decision import cap_release, decide
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

ZONES = ["America/New_York", "Europe/London", "Asia/Shanghai", "Asia/Kolkata"]
# Daylight-saving changes of 2026 (US 03-08 / 11-01, UK 03-29 / 10-25) and a quiet month.
ANCHORS = [datetime(2026, m, d, tzinfo=UTC) for m, d in
           [(3, 8), (3, 29), (10, 25), (11, 1), (6, 15)]]


def _policy(quiet):
    doc = copy.deepcopy(DEFAULT_CONTACT_POLICY)
    doc["quiet_hours"] = quiet
    return parse_contact_policy(doc)


# Besides the default, quiet ends that fall in a DST gap (02:30 New York, 01:30 London)
# or on a repeated hour (01:30 New York in November).
POLICIES = [
    DEFAULT_POLICY,
    _policy({"start": "20:00", "end": "02:30"}),
    _policy({"start": "23:00", "end": "01:30"}),
]
STAGE_CHANNELS = [("early", "sms"), ("early", "email"), ("negotiation", "voice"),
                  ("negotiation", "sms"), ("intensive", "voice"), ("intensive", "letter")]

borrowers = st.builds(
    lambda tz, vulnerable, opted, lang: BorrowerProfile(
        borrower_id="B", timezone=tz, language=lang, vulnerable=vulnerable,
        opted_out_channels=frozenset(opted)),
    st.sampled_from(ZONES), st.booleans(),
    st.sets(st.sampled_from(["sms", "email", "voice", "letter"]), max_size=1),
    st.sampled_from(["en", "zh-CN"]),
)
steps = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=720),  # minutes since the previous step
        st.sampled_from(["request"] * 12 + ["dispute", "clear_dispute", "cease"]),
        st.sampled_from(STAGE_CHANNELS),
        st.sampled_from(["sent", "sent", "delivered", "failed"]),  # what the provider reports
    ),
    min_size=1, max_size=40,
)


def _quiet(instant, tz, policy):
    return policy.quiet_hours.is_quiet(instant.astimezone(tz).time())


def _counted(history, channel, policy):
    statuses = {"sent", "delivered"} | ({"failed"} if channel in policy.failed_counts_toward_caps
                                       else set())
    return sorted(r.sent_at for r in history if r.channel == channel and r.status in statuses)


def _assert_caps_hold(history, channel, policy):
    times = _counted(history, channel, policy)
    for cap in policy.caps[channel]:
        for end in times:  # counts only grow at a send, so windows ending at sends suffice
            inside = [t for t in times if end - cap.window < t <= end]
            assert len(inside) <= cap.max, (channel, cap, inside)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(borrower=borrowers, anchor=st.sampled_from(ANCHORS),
       offset=st.integers(min_value=-3 * 1440, max_value=2 * 1440),
       policy=st.sampled_from(POLICIES), stream=steps)
def test_stream_of_requests_respects_every_rule(borrower, anchor, offset, policy, stream):
    tz = ZoneInfo(borrower.timezone)
    now = anchor + timedelta(minutes=offset, seconds=17)
    history: list[ContactRecord] = []
    flags: set[str] = set()
    ceased_at = None
    timeline: list = []  # (time, seq, kind, payload)
    seq = 0
    for gap, action, (stage, channel), outcome in stream:
        now += timedelta(minutes=gap)
        seq += 1
        timeline.append((now, seq, action, (stage, channel, outcome)))
    heapq.heapify(timeline)

    while timeline:
        at, _, action, payload = heapq.heappop(timeline)
        if action == "cease":
            flags.add("cease_contact")
            ceased_at = ceased_at or at
            continue
        if action == "dispute":
            flags.add("dispute")
            continue
        if action == "clear_dispute":
            flags.discard("dispute")
            continue
        if action == "request":
            stage, channel, outcome = payload
            req = ContactRequest(
                contact_id=f"c{at.timestamp()}-{channel}", loan_id="L", borrower_id="B",
                channel=channel, template=f"{stage}.{channel}", trigger="cadence", stage=stage,
                created_at=at, requires_stage=None, loan_stage_now=stage,
            )
        else:  # a deferred request released by the scheduler
            req, outcome = payload
        decision = decide(req, borrower, frozenset(flags), list(history), at, policy)
        event(f"{decision.kind}:{getattr(decision, 'reason', '')}")
        assert decision == decide(req, borrower, frozenset(flags), list(history), at, policy)

        if isinstance(decision, Send):
            assert not _quiet(at, tz, policy), at.astimezone(tz)
            assert ceased_at is None, "sent after a cease request"
            assert "dispute" not in flags
            assert req.channel not in borrower.opted_out_channels
            assert not (borrower.vulnerable and req.channel == "voice")
            assert decision.vulnerable == borrower.vulnerable
            history.append(ContactRecord(req.channel, at, outcome))
            _assert_caps_hold(history, req.channel, policy)
        elif isinstance(decision, Defer):
            until = decision.until
            assert until > at
            assert until.second == 0 and until.microsecond == 0
            assert not _quiet(until, tz, policy), until.astimezone(tz)
            assert until <= req.created_at + policy.max_deferral
            # Earliest: one minute before, quiet hours or a cap still forbid it.
            before = until - timedelta(minutes=1)
            if before >= at:
                times = _counted(history, req.channel, policy)
                blocked = cap_release(times, before, policy.caps[req.channel]) > before
                assert _quiet(before, tz, policy) or blocked
            seq += 1
            heapq.heappush(timeline, (until, seq, "release", (req, outcome)))
        else:
            assert isinstance(decision, Suppress)
            assert decision.reason
