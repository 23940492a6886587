"""The stage policy: which DPD range makes which stage, who owns it, what sticks.

A policy is a versioned JSON document (``GET/PUT /v1/policy``). The top level is the default
for every product; ``products`` may override ``tolerance``, ``promise_grace_days`` and/or the
whole ``stages`` list for one product. :func:`validate_policy` returns every problem with the
field at fault, :func:`parse_policy` turns a valid document into a :class:`PolicySet`, and
handlers work with the :class:`Policy` resolved for the loan's product.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from functools import cached_property
from typing import Any

from shared.frozen import quick_init

STAGE_NAMES = ("current", "early", "negotiation", "intensive", "legal", "write_off", "special")
CURRENT, LEGAL, SPECIAL = "current", "legal", "special"
# Stages that must exist in every policy: the cure target, the emergency path, the flag path.
REQUIRED_STAGES = (CURRENT, LEGAL, SPECIAL)
TEAMS = ("negotiation", "intensive", "legal", "recovery")
OWNER_KINDS = ("none", "automated", "relationship_manager", "team")
PRODUCTS = ("credit_card", "consumer_loan", "mortgage", "housing_fund_loan", "business_loan")

# Day counts (DPD thresholds, grace days) are bounded: the engine adds them to business dates,
# and a threshold past year 9999 made every evaluation near it raise OverflowError (each event
# of such a loan dead-lettered, end of day retrying forever). 100 years is beyond any policy.
MAX_DAYS = 36_500

_TOP_KEYS = {"version", "tolerance", "promise_grace_days", "stages", "products"}
_OVERRIDE_KEYS = {"tolerance", "promise_grace_days", "stages"}
_STAGE_KEYS = {"name", "dpd_min", "dpd_max", "owner", "team", "sticky"}


class PolicyInvalid(ValueError):
    def __init__(self, errors: list[dict[str, str]]) -> None:
        super().__init__("; ".join(f"{e['field']}: {e['message']}" for e in errors))
        self.errors = errors


@quick_init
@dataclass(frozen=True)
class StageRule:
    name: str
    dpd_min: int | None  # None only for `special`, entered by flag
    dpd_max: int | None  # None = open-ended
    owner: str
    team: str | None
    sticky: bool

    def holds(self, dpd: int) -> bool:
        if self.dpd_min is None or dpd < self.dpd_min:
            return False
        return self.dpd_max is None or dpd <= self.dpd_max


@quick_init
@dataclass(frozen=True)
class Policy:
    """The policy in force for one product."""

    version: int
    tolerance: Decimal
    promise_grace_days: int
    stages: tuple[StageRule, ...]

    def stage(self, name: str) -> StageRule:
        return self._by_name[name]  # KeyError for a stage the policy does not have

    @cached_property
    def _by_name(self) -> Mapping[str, StageRule]:
        return {rule.name: rule for rule in self.stages}

    @cached_property
    def ranged(self) -> tuple[StageRule, ...]:
        """The DPD-driven stages, from least to most severe (computed once per policy: it is
        asked for on every evaluation)."""
        return tuple(
            sorted((r for r in self.stages if r.dpd_min is not None), key=lambda r: r.dpd_min or 0)
        )

    def rank(self, name: str | None) -> int | None:
        """Severity of a DPD-driven stage; None for `special`, `closed` or an unknown name."""
        return self._ranks.get(name)

    @cached_property
    def _ranks(self) -> Mapping[str | None, int]:
        return {rule.name: index for index, rule in enumerate(self.ranged)}

    @cached_property
    def _stage_of_dpd(self) -> dict[int, str]:
        return {}  # stage_for_dpd's memo


@quick_init
@dataclass(frozen=True)
class PolicySet:
    """A whole policy document: the default policy and the per-product ones."""

    version: int
    default: Policy
    products: Mapping[str, Policy]
    document: Mapping[str, Any]

    def for_product(self, product: str) -> Policy:
        return self.products.get(product, self.default)

    def to_dict(self) -> dict[str, Any]:
        return copy.deepcopy(dict(self.document))

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> PolicySet:
        return parse_policy(doc)


def stage_for_dpd(policy: Policy, dpd: int) -> str:
    """The stage whose DPD range holds ``dpd`` (ranges are contiguous, validated); memoised
    per policy (every evaluation asks, and DPDs are few)."""
    memo = policy._stage_of_dpd
    name = memo.get(dpd)
    if name is not None:
        return name
    for rule in policy.ranged:
        if rule.holds(dpd):
            if len(memo) < _DPD_MEMO:
                memo[dpd] = rule.name
            return rule.name
    raise ValueError(f"policy version {policy.version} does not cover DPD {dpd}")


_DPD_MEMO = 40_000  # a century of days


# --- validation ----------------------------------------------------------------------------


def _err(field: str, message: str) -> dict[str, str]:
    return {"field": field, "message": message}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _unknown_keys(item: Mapping[str, Any], allowed: set[str], path: str) -> list[dict[str, str]]:
    prefix = f"{path}." if path else ""
    return [_err(f"{prefix}{key}", "unknown field") for key in sorted(set(item) - allowed)]


def _check_tolerance(value: Any, field: str) -> list[dict[str, str]]:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return [_err(field, "must be a decimal string such as \"10.00\"")]
    try:
        amount = Decimal(value)
    except InvalidOperation:
        return [_err(field, "must be a decimal string such as \"10.00\"")]
    if not amount.is_finite() or amount < 0:
        return [_err(field, "must be a finite amount >= 0")]
    return []


def _check_grace(value: Any, field: str) -> list[dict[str, str]]:
    if not _is_int(value) or not 0 <= value <= MAX_DAYS:
        return [_err(field, f"must be an integer from 0 to {MAX_DAYS}")]
    return []


def _check_stage(item: Any, path: str) -> list[dict[str, str]]:
    if not isinstance(item, Mapping):
        return [_err(path, "must be an object")]
    errors = _unknown_keys(item, _STAGE_KEYS, path)
    for key in ("name", "dpd_min", "owner"):
        if key not in item:
            errors.append(_err(f"{path}.{key}", "is required"))
    name, owner, team = item.get("name"), item.get("owner"), item.get("team")
    if "name" in item and name not in STAGE_NAMES:
        errors.append(_err(f"{path}.name", f"unknown stage; expected one of {list(STAGE_NAMES)}"))
    if "owner" in item and owner not in OWNER_KINDS:
        errors.append(_err(f"{path}.owner", f"unknown owner kind; expected {list(OWNER_KINDS)}"))
    if team is not None and team not in TEAMS:
        errors.append(_err(f"{path}.team", f"unknown team; expected one of {list(TEAMS)}"))
    elif owner == "team" and team is None:
        errors.append(_err(f"{path}.team", "is required when owner is 'team'"))
    elif owner in ("none", "automated") and team is not None:
        errors.append(_err(f"{path}.team", f"must be null when owner is '{owner}'"))
    if not isinstance(item.get("sticky", False), bool):
        errors.append(_err(f"{path}.sticky", "must be a boolean"))
    errors += _check_range(item, path)
    return errors


def _check_range(item: Mapping[str, Any], path: str) -> list[dict[str, str]]:
    low, high = item.get("dpd_min"), item.get("dpd_max")
    if item.get("name") == SPECIAL:
        if low is not None or high is not None:
            return [_err(f"{path}.dpd_min", "special is entered by flag only: must be null")]
        return []
    if not isinstance(low, int) or isinstance(low, bool) or not 0 <= low <= MAX_DAYS:
        return [_err(f"{path}.dpd_min", f"must be an integer from 0 to {MAX_DAYS}")]
    if high is not None and (not _is_int(high) or not low <= high <= MAX_DAYS):
        return [_err(f"{path}.dpd_max",
                     f"must be null (open-ended) or an integer from dpd_min to {MAX_DAYS}")]
    return []


def _check_coverage(stages: list[Mapping[str, Any]], path: str) -> list[dict[str, str]]:
    """DPD ranges must partition 0..infinity, in severity order."""
    ranged = sorted(
        ((i, s) for i, s in enumerate(stages) if s.get("name") != SPECIAL),
        key=lambda pair: (pair[1]["dpd_min"], pair[0]),
    )
    if not ranged:
        return [_err(path, "no stage covers DPD 0")]
    errors = []
    first_index, first = ranged[0]
    if first["dpd_min"] != 0:
        gap = f"DPD 0-{first['dpd_min'] - 1}"
        errors.append(_err(f"{path}[{first_index}].dpd_min", f"gap: {gap} not covered"))
    for (ia, a), (ib, b) in itertools.pairwise(ranged):
        a_max = a.get("dpd_max")
        if a_max is None:
            errors.append(_err(f"{path}[{ia}].dpd_max", f"open-ended range overlaps {path}[{ib}]"))
        elif b["dpd_min"] <= a_max:
            message = f"overlaps {path}[{ia}] (DPD up to {a_max})"
            errors.append(_err(f"{path}[{ib}].dpd_min", message))
        elif b["dpd_min"] > a_max + 1:
            gap = f"DPD {a_max + 1}-{b['dpd_min'] - 1}"
            errors.append(_err(f"{path}[{ib}].dpd_min", f"gap: {gap} not covered"))
        if STAGE_NAMES.index(b["name"]) < STAGE_NAMES.index(a["name"]):
            errors.append(_err(f"{path}[{ib}].name", f"out of severity order {list(STAGE_NAMES)}"))
    last_index, last = ranged[-1]
    if last.get("dpd_max") is not None:
        errors.append(_err(f"{path}[{last_index}].dpd_max", "the last range must be open-ended"))
    return errors


def _check_stages(stages: Any, path: str) -> list[dict[str, str]]:
    if not isinstance(stages, list) or not stages:
        return [_err(path, "must be a non-empty list")]
    errors: list[dict[str, str]] = []
    seen: set[str] = set()
    for index, item in enumerate(stages):
        errors += _check_stage(item, f"{path}[{index}]")
        name = item.get("name") if isinstance(item, Mapping) else None
        if name in seen:
            errors.append(_err(f"{path}[{index}].name", f"duplicate stage '{name}'"))
        if isinstance(name, str):
            seen.add(name)
    for required in REQUIRED_STAGES:
        if required not in seen:
            errors.append(_err(path, f"missing stage '{required}'"))
    if not errors:  # ranges are only comparable once every item is well formed
        errors += _check_coverage(stages, path)
    return errors


def _check_override(product: Any, override: Any, path: str) -> list[dict[str, str]]:
    if product not in PRODUCTS:
        return [_err(path, f"unknown product; expected one of {list(PRODUCTS)}")]
    if not isinstance(override, Mapping):
        return [_err(path, "must be an object")]
    errors = _unknown_keys(override, _OVERRIDE_KEYS, path)
    if "tolerance" in override:
        errors += _check_tolerance(override["tolerance"], f"{path}.tolerance")
    if "promise_grace_days" in override:
        errors += _check_grace(override["promise_grace_days"], f"{path}.promise_grace_days")
    if "stages" in override:
        errors += _check_stages(override["stages"], f"{path}.stages")
    return errors


def validate_policy(doc: Any) -> list[dict[str, str]]:
    """Every problem of a policy document as ``{"field", "message"}``; empty when valid."""
    if not isinstance(doc, Mapping):
        return [_err("", "the policy must be a JSON object")]
    errors = _unknown_keys(doc, _TOP_KEYS, "")
    if not _is_int(doc.get("version")) or doc["version"] < 1:
        errors.append(_err("version", "must be an integer >= 1"))
    if "tolerance" in doc:
        errors += _check_tolerance(doc["tolerance"], "tolerance")
    if "promise_grace_days" in doc:
        errors += _check_grace(doc["promise_grace_days"], "promise_grace_days")
    errors += _check_stages(doc.get("stages"), "stages")
    products = doc.get("products", {})
    if not isinstance(products, Mapping):
        errors.append(_err("products", "must be an object keyed by product"))
    else:
        for product, override in products.items():
            errors += _check_override(product, override, f"products.{product}")
    return errors


# --- parsing -------------------------------------------------------------------------------


def _rules(stages: list[Mapping[str, Any]]) -> tuple[StageRule, ...]:
    return tuple(
        StageRule(
            name=s["name"],
            dpd_min=s.get("dpd_min"),
            dpd_max=s.get("dpd_max"),
            owner=s["owner"],
            team=s.get("team"),
            sticky=bool(s.get("sticky", False)),
        )
        for s in stages
    )


def parse_policy(doc: Mapping[str, Any]) -> PolicySet:
    """A valid document as a :class:`PolicySet`; raises :class:`PolicyInvalid` otherwise."""
    errors = validate_policy(doc)
    if errors:
        raise PolicyInvalid(errors)
    default = Policy(
        version=doc["version"],
        tolerance=Decimal(str(doc.get("tolerance", "10.00"))),
        promise_grace_days=doc.get("promise_grace_days", 1),
        stages=_rules(doc["stages"]),
    )
    products = {}
    for product, override in doc.get("products", {}).items():
        products[product] = Policy(
            version=default.version,
            tolerance=Decimal(str(override.get("tolerance", default.tolerance))),
            promise_grace_days=override.get("promise_grace_days", default.promise_grace_days),
            stages=_rules(override["stages"]) if "stages" in override else default.stages,
        )
    return PolicySet(default.version, default, products, copy.deepcopy(dict(doc)))


def _stage(name: str, low: int | None, high: int | None, owner: str, team: str | None = None,
           sticky: bool = False) -> dict[str, Any]:
    return {"name": name, "dpd_min": low, "dpd_max": high, "owner": owner, "team": team,
            "sticky": sticky}


DEFAULT_POLICY_DOCUMENT: dict[str, Any] = {
    "version": 1,
    "tolerance": "10.00",
    "promise_grace_days": 1,
    "stages": [
        _stage("current", 0, 0, "none"),
        _stage("early", 1, 30, "automated"),
        _stage("negotiation", 31, 60, "relationship_manager", "negotiation"),
        _stage("intensive", 61, 90, "team", "intensive"),
        _stage("legal", 91, 180, "team", "legal", sticky=True),
        _stage("write_off", 181, None, "team", "recovery", sticky=True),
        _stage("special", None, None, "team", "legal"),
    ],
    "products": {},
}

DEFAULT_POLICY_SET = parse_policy(DEFAULT_POLICY_DOCUMENT)
DEFAULT_POLICY = DEFAULT_POLICY_SET.default
