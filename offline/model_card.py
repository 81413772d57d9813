"""MODEL_CARD.md, written by ``loan-decision model train`` from the spec and the measured metrics."""

from __future__ import annotations

from typing import Any

from service.scoring.features import FeatureSpec

LEARNER_TEXT = {
    "lr_forest": "The average of two PDs: a logistic regression on standardised inputs (its "
                 "regularisation chosen by an inner 5-fold CV) and a random forest",
    "scorecard": "A logistic scorecard: one logistic regression on one-hot attribute bands "
                 "(regularisation chosen by an inner 5-fold CV), so each band carries fixed points",
}


def model_card(spec: FeatureSpec, metrics: dict[str, Any]) -> str:
    cv = metrics["cv"]
    lines = [
        f"# Model card: {spec.name}",
        "",
        f"Version `{metrics['version']}`. Written by `loan-decision model train`; do not edit by hand.",
        "",
        "## Intended use",
        "",
        "Ranks applicants for the bank's small pre-approved loans by probability of default (PD) "
        "within the decision service's scoring stage; the strategy table (`rules/strategy.yaml`) "
        "turns its grade into approve, refer or decline. It is one input among the fraud rules, the "
        "whitelist and verification, never an automatic decision on its own. Not for pricing "
        "beyond the rate tiers, collections, or any customer population unlike the training data.",
        "",
        "## Data",
        "",
        f"`{metrics['data']}`: {metrics['applications']} applications, {metrics['bad']} bad "
        f"({metrics['bad'] / metrics['applications']:.0%}). The bundled set is the Statlog German "
        "credit data (1970s Germany) converted to this service's contract; see "
        "`models/data/german_credit/README.md` for source, licence and mapping.",
        "",
        "## Model",
        "",
        f"{LEARNER_TEXT[spec.learner]}. {metrics['columns']} input columns from "
        f"{len(spec.features)} features (`features.yaml`).",
        "",
        f"PD is shifted from the sample's bad rate ({spec.sample_bad_rate:.0%}) to the portfolio's "
        f"({spec.portfolio_bad_rate:.0%}) by a prior correction of the log-odds. Points: "
        f"{spec.base_points:g} at {spec.base_odds:g}:1 good:bad odds, {spec.points_to_double_odds:g} "
        "more for each doubling of the odds.",
        "",
        "| feature | from | encoding | missing |",
        "| --- | --- | --- | --- |",
    ]
    for f in spec.features:
        encoding = (f.encoding + (f" {list(f.levels)}" if f.levels else "")
                    + (f" ({f.transform})" if f.transform else ""))
        missing = f.missing + ("" if f.missing == "refuse" else f" {f.missing_value}")
        lines.append(f"| {f.name} | `{f.source}` | {encoding} | {missing} |")
    lines += [
        "",
        "## Quality",
        "",
        f"{metrics['protocol']}; every fitted step refitted inside each training fold; "
        f"mean (std) over {cv['folds']} test folds, PDs on the sample's scale:",
        "",
        "| AUC | KS | Brier |",
        "| --- | --- | --- |",
        f"| {cv['auc']['mean']:.4f} ({cv['auc']['std']:.4f}) | {cv['ks']['mean']:.4f} ({cv['ks']['std']:.4f}) "
        f"| {cv['brier']['mean']:.4f} ({cv['brier']['std']:.4f}) |",
        "",
        "Published anchors on this data: logistic regression 0.784 and the best ensemble 0.801 AUC "
        "(Lessmann et al. 2015); AutoML systems 0.783–0.796 (AMLB).",
        "",
        "Out-of-fold grades (calibrated PD bands), pooled over the repeats:",
        "",
        "| grade | PD below | share | observed bad rate (sample) |",
        "| --- | --- | --- | --- |",
    ]
    for g in metrics["grades"]:
        bad = "–" if g["bad_rate"] is None else f"{g['bad_rate']:.1%}"
        lines.append(f"| {g['grade']} | {g['max_pd']:g} | {g['share']:.1%} | {bad} |")
    fair = metrics.get("fairness")
    if fair:
        lines += [
            "",
            "## Fairness",
            "",
            "Sex/marital status and foreign-worker status are not inputs. Adding sex and "
            f"foreign-worker status as inputs gives a mean AUC of {fair['auc_with_protected']:.4f} "
            f"against {cv['auc']['mean']:.4f} without them: dropping them "
            f"{'costs' if fair['auc_with_protected'] >= cv['auc']['mean'] else 'gains'} "
            f"{abs(fair['auc_with_protected'] - cv['auc']['mean']):.4f} AUC. Age is an input (the "
            "product rules bound it); check it against local law before use.",
            "",
            "Mean out-of-fold PD (sample scale) against the observed bad rate by group:",
            "",
            "| group | applications | observed bad rate | mean PD |",
            "| --- | --- | --- | --- |",
        ]
        for g in fair["by_group"]:
            lines.append(f"| {g['group']} | {g['count']} | {g['observed_bad_rate']:.1%} | {g['mean_pd']:.1%} |")
    lines += [
        "",
        "## Limits",
        "",
        "- 1000 applications from one German bank decades ago: the ranking transfers only as a "
        "demonstration. A bank retrains on its own history (`loan-decision model train DIR --data "
        "FILE`) before any real use.",
        "- The contract is coarser than the source: ten loan purposes become four, and telephone "
        "ownership has no field, so some signal is lost.",
        "- Amounts are DM × 5 in CNY; incomes are implied by the instalment-rate band, not observed.",
        "- With 300 bad cases the grade bad rates carry wide intervals; the E grade is small.",
        "",
    ]
    return "\n".join(lines)
