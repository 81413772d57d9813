"""Time the bundled validation + fraud rules for one application, three ways, in one run:

1. our compiled rules (the functions the engine built from rules/*.yaml);
2. the same rules hand-written as plain Python lambdas over the same facts (the floor);
3. the same rules as a GoRules ZEN (``zen-engine``) expression node, through its Python binding.

Also times the whole rule evaluation as ``decide`` runs it (with the trace). Functions ZEN
does not have (check digits, list look-ups) are given to it precomputed, which favours ZEN. The
three are first checked to be the same rules (by id) giving the same results.

    .venv/bin/python loadtests/bench_rules.py [--calls 20000] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from loadtests.bench import write_result  # noqa: E402
from service.decide import application_facts  # noqa: E402
from service.engine import functions as fn  # noqa: E402
from service.engine.ruleset import load_ruleset  # noqa: E402
from service.schemas import DecisionRequest  # noqa: E402
from service.stages import verification  # noqa: E402
from service.stages.decision import Decision, Memberships, evaluate_rules  # noqa: E402


def nn(*values):  # all present
    return all(v is not None for v in values)


L = Memberships(frozenset())  # the application is on no list
LAMBDAS = {
    "PRODUCT_UNKNOWN": lambda F: not F["product.known"],
    "ID_NUMBER_INVALID": lambda F: not fn.id_number_valid(F["applicant.id_number"]),
    "ID_BIRTH_DATE_INVALID": lambda F: F["applicant.age"] is None,
    "AGE_BELOW_MINIMUM": lambda F: nn(F["applicant.age"], F["product.min_age"]) and F["applicant.age"] < F["product.min_age"] or (F["applicant.age"] is not None and F["applicant.age"] < 18),
    "AGE_ABOVE_MAXIMUM": lambda F: nn(F["applicant.age"], F["product.max_age"]) and F["applicant.age"] > F["product.max_age"],
    "PHONE_INVALID": lambda F: not fn.phone_valid(F["applicant.phone"]),
    "OCCUPATION_NOT_ELIGIBLE": lambda F: nn(F["applicant.occupation"], F["product.occupations"]) and F["applicant.occupation"] not in F["product.occupations"],
    "AMOUNT_OUT_OF_RANGE": lambda F: nn(F["loan.amount"], F["product.min_amount"]) and F["loan.amount"] < F["product.min_amount"] or nn(F["loan.amount"], F["product.max_amount"]) and F["loan.amount"] > F["product.max_amount"],
    "TERM_NOT_OFFERED": lambda F: nn(F["loan.term_months"], F["product.terms"]) and F["loan.term_months"] not in F["product.terms"],
    "CONSENT_CREDIT_INQUIRY_MISSING": lambda F: not F["consents.credit_inquiry"],
    "CONSENT_DATA_PROCESSING_MISSING": lambda F: not F["consents.data_processing"],
    "E_SIGNATURE_MISSING": lambda F: F["consents.e_signature.signed_at"] is None,
    "E_SIGNATURE_AFTER_SUBMISSION": lambda F: nn(F["consents.e_signature.signed_at"], F["submitted_at"]) and F["consents.e_signature.signed_at"] > F["submitted_at"],
    "BUSINESS_REQUIRED": lambda F: F["product.requires_business"] and F["business.uscc"] is None,
    "USCC_INVALID": lambda F: F["business.uscc"] is not None and not fn.uscc_valid(F["business.uscc"]),
    "INCOME_REQUIRED": lambda F: F["product.requires_income"] and F["applicant.monthly_income"] is not None and F["applicant.monthly_income"] <= 0,
    "RELATED_PARTY_ID_INVALID": lambda F: not fn.all_ids_valid(F["related.id_numbers"]),
    "RELATED_PARTY_IS_APPLICANT": lambda F: nn(F["applicant.id_number"], F["related.id_numbers"]) and F["applicant.id_number"] in F["related.id_numbers"],
    "ATTACHMENT_MISSING": lambda F: not fn.all_in(F["product.required_attachments"], F["attachments.types"]),
    "IDENTITY_MISMATCH": lambda F: F["verification.failed"] is not None and "identity" in F["verification.failed"],
    "FACE_LIVENESS_FAILED": lambda F: F["verification.failed"] is not None and "face" in F["verification.failed"],
    "FACE_SIMILARITY_LOW": lambda F: nn(F["verification.face.score"], F["product.face_threshold"]) and F["verification.face.score"] < F["product.face_threshold"],
    "SMS_NOT_VERIFIED": lambda F: F["verification.failed"] is not None and "sms" in F["verification.failed"],
    "BUSINESS_NOT_FOUND": lambda F: F["verification.business.status"] == "not_found",
    "BUSINESS_REVOKED_OR_DEREGISTERED": lambda F: F["verification.business.status"] in ("revoked", "deregistered"),
    "BUSINESS_REPRESENTATIVE_MISMATCH": lambda F: F["verification.business.representative_match"] is False,
    "BUSINESS_ABNORMAL_OPERATIONS": lambda F: F["verification.business.abnormal"] is True,
    "BUSINESS_TOO_NEW": lambda F: F["verification.business.years_operating"] is not None and F["verification.business.years_operating"] < 1,
    "BUSINESS_YEARS_OVERSTATED": lambda F: nn(F["business.years_operating"], F["verification.business.years_operating"]) and F["business.years_operating"] - F["verification.business.years_operating"] > 2,
    "VERIFICATION_UNAVAILABLE": lambda F: F["verification.unavailable"] is not None and len(F["verification.unavailable"]) > 0,
    "FRAUD_EMULATOR": lambda F: F["device.is_emulator"],
    "FRAUD_ROOTED_DEVICE": lambda F: F["device.is_rooted"],
    "FRAUD_FOREIGN_IP": lambda F: L.contains("foreign_ip_ranges", F["device.ip"]),
    "BLACKLIST_ID_NUMBER": lambda F: L.contains("black_id_numbers", F["applicant.id_number"]),
    "GREYLIST_ID_NUMBER": lambda F: L.contains("grey_id_numbers", F["applicant.id_number"]),
    "BLACKLIST_USCC": lambda F: L.contains("black_usccs", F["business.uscc"]),
    "BLACKLIST_PHONE": lambda F: L.contains("black_phones", F["applicant.phone"]),
    "BLACKLIST_DEVICE": lambda F: L.contains("black_devices", F["device.device_id"]),
    "BLACKLIST_IP": lambda F: L.contains("black_ips", F["device.ip"]),
    "RELATED_PARTY_BLACKLISTED": lambda F: L.contains_any("black_id_numbers", F["related.id_numbers"]) or L.contains_any("black_phones", F["related.phones"]),
    "VELOCITY_DEVICE_24H": lambda F: F["velocity.device_24h"] is not None and F["velocity.device_24h"] >= 3,
    "VELOCITY_ID_30D": lambda F: F["velocity.id_30d"] is not None and F["velocity.id_30d"] >= 5,
    "VELOCITY_PHONE_7D": lambda F: F["velocity.phone_7d"] is not None and F["velocity.phone_7d"] >= 4,
    "VELOCITY_IP_1H": lambda F: F["velocity.ip_1h"] is not None and F["velocity.ip_1h"] >= 10,
    "BUREAU_MANY_QUERIES": lambda F: F["bureau.queries_3m"] is not None and F["bureau.queries_3m"] > 6,
    "BUREAU_MULTI_LENDER": lambda F: F["bureau.multi_lender_count"] is not None and F["bureau.multi_lender_count"] >= 5,
    "BUREAU_SEVERE_DELINQUENCY": lambda F: F["bureau.max_overdue_days"] is not None and F["bureau.max_overdue_days"] > 90 or F["bureau.credit_history"] == "critical",
    "BEHAVIOUR_FORM_TOO_FAST": lambda F: F["device.form_fill_seconds"] is not None and F["device.form_fill_seconds"] < 20,
    "BEHAVIOUR_TYPING_TOO_FAST": lambda F: F["device.typing_ms_per_char"] is not None and F["device.typing_ms_per_char"] < 30,
    "GPS_FAR_FROM_ID_PROVINCE": lambda F: F["device.gps_km_from_id_province"] is not None and F["device.gps_km_from_id_province"] > 1500,
    "NIGHT_APPLICATION": lambda F: F["submitted.hour"] is not None and F["submitted.hour"] < 5,
}

ZEN_RULES = {
    "PRODUCT_UNKNOWN": "not product.known",
    "ID_NUMBER_INVALID": "not fn.id_number_valid",
    "ID_BIRTH_DATE_INVALID": "applicant.age == null",
    "AGE_BELOW_MINIMUM": "applicant.age < product.min_age or applicant.age < 18",
    "AGE_ABOVE_MAXIMUM": "applicant.age > product.max_age",
    "PHONE_INVALID": "not fn.phone_valid",
    "OCCUPATION_NOT_ELIGIBLE": "not (applicant.occupation in product.occupations)",
    "AMOUNT_OUT_OF_RANGE": "loan.amount < product.min_amount or loan.amount > product.max_amount",
    "TERM_NOT_OFFERED": "not (loan.term_months in product.terms)",
    "CONSENT_CREDIT_INQUIRY_MISSING": "not consents.credit_inquiry",
    "CONSENT_DATA_PROCESSING_MISSING": "not consents.data_processing",
    "E_SIGNATURE_MISSING": "consents.e_signature.signed_at == null",
    "E_SIGNATURE_AFTER_SUBMISSION": "date(consents.e_signature.signed_at) > date(submitted_at)",
    "BUSINESS_REQUIRED": "product.requires_business and business.uscc == null",
    "USCC_INVALID": "business.uscc != null and not fn.uscc_valid",
    "INCOME_REQUIRED": "product.requires_income and applicant.monthly_income <= 0",
    "RELATED_PARTY_ID_INVALID": "not fn.all_ids_valid",
    "RELATED_PARTY_IS_APPLICANT": "applicant.id_number in related.id_numbers",
    "ATTACHMENT_MISSING": "not fn.all_attachments",
    "IDENTITY_MISMATCH": "'identity' in verification.failed",
    "FACE_LIVENESS_FAILED": "'face' in verification.failed",
    "FACE_SIMILARITY_LOW": "verification.face.score < product.face_threshold",
    "SMS_NOT_VERIFIED": "'sms' in verification.failed",
    "BUSINESS_NOT_FOUND": "verification.business.status == 'not_found'",
    "BUSINESS_REVOKED_OR_DEREGISTERED": "verification.business.status in ['revoked', 'deregistered']",
    "BUSINESS_REPRESENTATIVE_MISMATCH": "verification.business.representative_match == false",
    "BUSINESS_ABNORMAL_OPERATIONS": "verification.business.abnormal == true",
    "BUSINESS_TOO_NEW": "verification.business.years_operating != null and verification.business.years_operating < 1",
    "BUSINESS_YEARS_OVERSTATED": "business.years_operating != null and verification.business.years_operating != null and business.years_operating - verification.business.years_operating > 2",
    "VERIFICATION_UNAVAILABLE": "len(verification.unavailable) > 0",
    "FRAUD_EMULATOR": "device.is_emulator",
    "FRAUD_ROOTED_DEVICE": "device.is_rooted",
    "FRAUD_FOREIGN_IP": "fn.foreign_ip",
    "BLACKLIST_ID_NUMBER": "fn.black_id",
    "GREYLIST_ID_NUMBER": "fn.grey_id",
    "BLACKLIST_USCC": "fn.black_uscc",
    "BLACKLIST_PHONE": "fn.black_phone",
    "BLACKLIST_DEVICE": "fn.black_device",
    "BLACKLIST_IP": "fn.black_ip",
    "RELATED_PARTY_BLACKLISTED": "fn.related_black",
    "VELOCITY_DEVICE_24H": "velocity.device_24h >= 3",
    "VELOCITY_ID_30D": "velocity.id_30d >= 5",
    "VELOCITY_PHONE_7D": "velocity.phone_7d >= 4",
    "VELOCITY_IP_1H": "velocity.ip_1h >= 10",
    "BUREAU_MANY_QUERIES": "bureau.queries_3m > 6",
    "BUREAU_MULTI_LENDER": "bureau.multi_lender_count >= 5",
    "BUREAU_SEVERE_DELINQUENCY": "bureau.max_overdue_days > 90 or bureau.credit_history == 'critical'",
    "BEHAVIOUR_FORM_TOO_FAST": "device.form_fill_seconds < 20",
    "BEHAVIOUR_TYPING_TOO_FAST": "device.typing_ms_per_char < 30",
    "GPS_FAR_FROM_ID_PROVINCE": "device.gps_km_from_id_province > 1500",
    "NIGHT_APPLICATION": "submitted.hour < 5",
}


def zen_decision():
    import zen

    content = {
        "nodes": [
            {"id": "in", "type": "inputNode", "name": "in", "position": {"x": 0, "y": 0}},
            {"id": "rules", "type": "expressionNode", "name": "rules", "position": {"x": 0, "y": 0},
             "content": {"expressions": [{"id": str(i), "key": k, "value": v}
                                         for i, (k, v) in enumerate(ZEN_RULES.items())]}},
            {"id": "out", "type": "outputNode", "name": "out", "position": {"x": 0, "y": 0}},
        ],
        "edges": [{"id": "a", "sourceId": "in", "targetId": "rules", "type": "edge"},
                  {"id": "b", "sourceId": "rules", "targetId": "out", "type": "edge"}],
    }
    return zen.ZenEngine().create_decision(json.dumps(content))


def nested(facts: dict) -> dict:
    out: dict = {}
    for path, value in facts.items():
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):  # e.g. the raw `attachments` list
                node[part] = {}
            node = node[part]
        if isinstance(node.get(leaf), dict):
            continue
        if isinstance(value, (dt.date, dt.datetime)):
            value = value.isoformat()
        node[leaf] = value
    F = facts
    out["fn"] = {
        "id_number_valid": fn.id_number_valid(F["applicant.id_number"]),
        "phone_valid": fn.phone_valid(F["applicant.phone"]),
        "uscc_valid": fn.uscc_valid(F["business.uscc"]),
        "all_ids_valid": fn.all_ids_valid(F["related.id_numbers"]),
        "all_attachments": fn.all_in(F["product.required_attachments"], F["attachments.types"]),
        "foreign_ip": False, "black_id": False, "grey_id": False, "black_uscc": False,
        "black_phone": False, "black_device": False,
        "black_ip": False, "related_black": False,
    }
    return out


def per_call_us(call, n: int, repeat: int = 7) -> dict:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(n):
            call()
        runs.append((time.perf_counter_ns() - start) / n / 1000)
    return {"median_us": round(statistics.median(runs), 3), "best_us": round(min(runs), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000, help="evaluations per timing round")
    parser.add_argument("--smoke", action="store_true", help="a few calls, nothing written (tests)")
    args = parser.parse_args()
    calls = 20 if args.smoke else args.calls
    ruleset = load_ruleset(ROOT / "rules")
    fixture = yaml.safe_load((ROOT / "rules/tests/fixtures.yaml").read_text())["fixtures"]["good_consumer"]
    request = DecisionRequest.model_validate(fixture["application"], strict=False)
    recorded = {**fixture["facts"], **{f"velocity.{k}_{w}": 0 for k in ("device", "phone", "id", "ip")
                                       for w in ("1h", "24h", "7d", "30d")}}  # as a live counter store gives
    facts = application_facts(request, ruleset) | recorded
    ctx = Decision(facts, ruleset, ruleset.products[request.product], ruleset.experiment.live[0], L, {})
    verification.run(ctx)  # verification facts from the recorded results
    rules = ruleset.validation.rules + ruleset.fraud.rules
    ids = [r.id for r in rules]
    for name, ours in (("LAMBDAS", LAMBDAS), ("ZEN_RULES", ZEN_RULES)):
        missing, extra = [i for i in ids if i not in ours], [i for i in ours if i not in ids]
        assert not missing and not extra, f"{name} must hold the bundled rules: missing {missing}, extra {extra}"
    compiled = [r.when.fn for r in rules]
    lambdas = [LAMBDAS[i] for i in ids]
    ours = [bool(f(facts, L)) for f in compiled]
    plain = [bool(f(facts)) for f in lambdas]
    assert ours == plain, "compiled and lambda rules disagree"
    zen_input = nested(facts)
    decision = zen_decision()
    zen_out = decision.evaluate(zen_input)["result"]
    assert [bool(zen_out[i]) for i in ids] == ours, "zen and compiled rules disagree"

    def run_compiled():
        for f in compiled:
            f(facts, L)

    def run_lambdas():
        for f in lambdas:
            f(facts)

    def run_stage():
        facts["flags"] = []
        ctx.reasons.clear()
        evaluate_rules(ctx, ruleset.validation)
        evaluate_rules(ctx, ruleset.fraud)

    results = {
        "rules": len(compiled),
        "compiled": per_call_us(run_compiled, calls),
        "plain_lambdas": per_call_us(run_lambdas, calls),
        "compiled_with_trace": per_call_us(run_stage, calls),
        "zen_engine": per_call_us(lambda: decision.evaluate(zen_input), max(1, calls // 40)),
    }
    results["compiled_vs_lambdas"] = round(results["compiled"]["median_us"] / results["plain_lambdas"]["median_us"], 2)
    results["zen_vs_compiled"] = round(results["zen_engine"]["median_us"] / results["compiled"]["median_us"], 1)
    print(json.dumps(results, indent=2))
    if not args.smoke:
        write_result("rules", {"results": results})


if __name__ == "__main__":
    main()
