"""PNG charts for the analysts' reports. matplotlib is an optional extra (``.[report]``): it is
imported only here, never on the decision path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

OUTCOME_COLOURS = {"approve": "#2e7d32", "decline": "#c62828", "refer": "#f9a825"}


class ChartUnavailable(Exception):
    """matplotlib is not installed."""


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, no display
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ChartUnavailable("charts need matplotlib: pip install -e '.[report]'") from exc
    return plt


def backtest_chart(report: dict[str, Any], path: Path) -> None:
    """Left: outcome rates per ruleset. Right: the most frequent decline reasons per ruleset."""
    plt = _pyplot()
    rulesets = report["rulesets"]
    labels = [f"{'AB'[i]} {s['ruleset']}" for i, s in enumerate(rulesets)]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1, 2]})
    bottom = [0.0] * len(rulesets)
    for outcome, colour in OUTCOME_COLOURS.items():
        values = [s["rates"][outcome] * 100 for s in rulesets]
        left.bar(labels, values, bottom=bottom, color=colour, label=outcome)
        bottom = [b + v for b, v in zip(bottom, values)]
    left.set_ylabel("% of applications")
    left.set_title(f"Outcomes ({report['applications']:,} applications)")
    left.legend(loc="lower right", fontsize=8)
    codes: list[str] = []
    for s in rulesets:
        for code, _ in s["decline_reasons"][:10]:
            if code not in codes:
                codes.append(code)
    width = 0.8 / len(rulesets)
    for i, s in enumerate(rulesets):
        counts = dict(s["decline_reasons"])
        positions = [k + i * width for k in range(len(codes))]
        right.barh(positions, [counts.get(c, 0) for c in codes], height=width, label=labels[i])
    right.set_yticks([k + width * (len(rulesets) - 1) / 2 for k in range(len(codes))], codes, fontsize=8)
    right.invert_yaxis()
    right.set_xlabel("declined applications naming the reason")
    right.set_title("Decline reasons")
    right.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_chart(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    """Latency percentiles (ms, log scale) against offered load (requests/s) per target."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.8))
    targets = sorted({r["target"] for r in rows})
    for colour, target in zip(("#1565c0", "#c62828", "#2e7d32", "#6a1b9a"), targets):
        points = sorted((r for r in rows if r["target"] == target and r.get("offered_rps")),
                        key=lambda r: r["offered_rps"])
        if not points:
            continue
        x = [p["offered_rps"] for p in points]
        for key, style in (("p50_ms", "-"), ("p99_ms", "--"), ("p999_ms", ":")):
            ax.plot(x, [p[key] for p in points], style, color=colour, marker="o", markersize=3,
                    label=f"{target} {key.removesuffix('_ms')}")
    ax.set_yscale("log")
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.axhline(15, color="grey", linewidth=0.8)
    ax.annotate("15 ms", (ax.get_xlim()[0], 15), fontsize=7, color="grey", va="bottom")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
