"""Ratios, targets, and the three result files: latest.json, latest.md and
read_latency.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# Targets of issues 4 and 10. A benchmark reports them; nothing here asserts.
SQLITE_1W_MIN = 0.5
POSTGRES_2W_MIN = 0.35
POSTGRES_SCALING_MIN = 1.6  # PostgreSQL, 2 workers against 1
PACED_P99_MAX_MS = 25.0
PLATFORM_MIN = 1.0  # 1,000 accounts at once against one account
CROWD_MIN = 0.8  # 256 connections against 32
READ_GROWTH_MAX = 1.2
PAGE_1000_SQLITE_P50_MAX_MS = 15.0
DASHBOARD_SQLITE_P50_MAX_MS = 30.0  # issue 8: overview, impacts page, track view
# Issue 9: the public JSON and the SVG badge against the ceiling's GET.
PUBLIC_MIN = 0.5
# Reads whose cost must not grow with the account (totals are never a scan).
FLAT_READS = ("records", "customer_records", "impact")


def _ceiling(writes: list[dict[str, Any]], workers: int) -> float | None:
    for w in writes:
        if w["subject"] == "ceiling" and w["workers"] == workers:
            return float(w["max"]["rps"])
    return None


def _add_ratios(out: dict[str, Any]) -> None:
    ceiling_get = next(
        (float(p["max"]["rps"]) for p in out.get("public", []) if p["subject"] == "ceiling"), None
    )
    for p in out.get("public", []):
        p["ratio"] = round(p["max"]["rps"] / ceiling_get, 3) if ceiling_get else None
    for w in out["writes"]:
        # Measured in turn with the ceiling (bench/run.py): the median of the
        # rounds' ratios. Results of older runs name the ceiling as a subject.
        if "ratio" not in w:
            ceiling = _ceiling(out["writes"], w["workers"])
            w["ratio"] = round(w["max"]["rps"] / ceiling, 3) if ceiling else None
        # The platform load is measured in the same rounds as the subject
        # (bench/run.py): the median of the rounds' ratios. Older runs and
        # the crowd: against the subject's median.
        for load in ("crowd", "platform"):
            if load in w and w.get(f"{load}_ratio") is None:
                w[f"{load}_ratio"] = round(w[load]["rps"] / w["max"]["rps"], 3)
    base: dict[tuple[str, str], float] = {}
    smallest = min((r["size"] for r in out["reads"]), default=0)
    for r in out["reads"]:
        if r["size"] == smallest:
            base[(r["backend"], r["endpoint"])] = r["result"]["p50_ms"]
    for r in out["reads"]:
        ref = base.get((r["backend"], r["endpoint"]))
        r["ratio"] = round(r["result"]["p50_ms"] / ref, 3) if ref else None


def _targets(out: dict[str, Any]) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, holds: bool | None) -> None:
        targets.append({"target": name, "value": value, "goal": goal, "holds": holds})

    writes = {(w["subject"], w["workers"]): w for w in out["writes"]}
    w = writes.get(("sqlite", 1))
    add(
        "POST plant_tree, SQLite, 1 worker",
        w and w["ratio"],
        f">= {SQLITE_1W_MIN}x ceiling",
        None if not w else w["ratio"] >= SQLITE_1W_MIN,
    )
    w = writes.get(("postgresql", 2))
    add(
        "POST plant_tree, PostgreSQL, 2 workers",
        w and w["ratio"],
        f">= {POSTGRES_2W_MIN}x ceiling",
        None if not w else w["ratio"] >= POSTGRES_2W_MIN,
    )
    one = writes.get(("postgresql", 1))
    if w and one:
        scaling = round(w["max"]["rps"] / one["max"]["rps"], 3)
        add(
            "POST plant_tree, PostgreSQL, 2 workers against 1",
            scaling,
            f">= {POSTGRES_SCALING_MIN}x",
            scaling >= POSTGRES_SCALING_MIN,
        )
    for (subject, workers), w in sorted(writes.items()):
        if subject == "ceiling":
            continue
        p99 = w["paced"]["p99_ms"]
        add(
            f"POST p99 at 0.7x max, {subject}, {workers} worker(s)",
            p99,
            f"<= {PACED_P99_MAX_MS:g} ms",
            p99 <= PACED_P99_MAX_MS,
        )
        if "platform_ratio" in w:
            add(
                f"POST, {w['accounts']:,} accounts at once, {subject}, {workers} worker(s)",
                w["platform_ratio"],
                f">= {PLATFORM_MIN:g}x one account",
                w["platform_ratio"] >= PLATFORM_MIN,
            )
        if "crowd_ratio" in w:
            add(
                f"POST, {w['many_connections']} connections, {subject}, {workers} worker(s)",
                w["crowd_ratio"],
                f">= {CROWD_MIN:g}x {out['meta']['connections']} connections",
                w["crowd_ratio"] >= CROWD_MIN,
            )
    sizes = sorted({r["size"] for r in out["reads"]})
    if len(sizes) > 1:
        largest = sizes[-1]
        for r in out["reads"]:
            if r["size"] != largest or r["endpoint"].split(" ")[0] not in FLAT_READS:
                continue
            add(
                f"{r['backend']} {r['endpoint']}: {largest:,} vs {sizes[0]:,} impacts",
                r["ratio"],
                f"<= {READ_GROWTH_MAX}x",
                r["ratio"] is not None and r["ratio"] <= READ_GROWTH_MAX,
            )
    for r in out["reads"]:
        if r["backend"] == "sqlite" and "limit=1000" in r["endpoint"] and r["size"] == sizes[-1]:
            p50 = r["result"]["p50_ms"]
            add(
                f"sqlite {r['endpoint']} p50, {r['size']:,} impacts",
                p50,
                f"< {PAGE_1000_SQLITE_P50_MAX_MS:g} ms",
                p50 < PAGE_1000_SQLITE_P50_MAX_MS,
            )
    for r in out["reads"]:
        if not r["endpoint"].startswith("dashboard") or r["size"] != sizes[-1]:
            continue
        add(
            f"{r['backend']} {r['endpoint']}: {sizes[-1]:,} vs {sizes[0]:,} impacts",
            r["ratio"],
            f"<= {READ_GROWTH_MAX}x",
            r["ratio"] is not None and r["ratio"] <= READ_GROWTH_MAX,
        )
        if r["backend"] == "sqlite":
            p50 = r["result"]["p50_ms"]
            add(
                f"sqlite {r['endpoint']} p50, {r['size']:,} impacts",
                p50,
                f"< {DASHBOARD_SQLITE_P50_MAX_MS:g} ms",
                p50 < DASHBOARD_SQLITE_P50_MAX_MS,
            )
    for p in out.get("public", []):
        if p["subject"] == "ceiling":
            continue
        add(
            f"{p['endpoint']}, {p['subject']}, 1 worker",
            p["ratio"],
            f">= {PUBLIC_MIN}x ceiling GET",
            None if p["ratio"] is None else p["ratio"] >= PUBLIC_MIN,
        )
    add(
        "errors (non-2xx, socket, wrong pages) in every run", out["errors"], "0", out["errors"] == 0
    )
    return targets


def _fmt_size(n: int) -> str:
    return f"{n // 1_000_000}M" if n >= 1_000_000 else f"{n // 1000}k" if n >= 1000 else str(n)


def markdown(out: dict[str, Any]) -> str:
    m = out["meta"]
    lines = [
        "# OpenImpact benchmark",
        "",
        f"{m['when']} · commit {m['commit'] or '?'} · {m['machine']['cpus']} CPUs "
        f"({m['machine']['cpu']}) · Python {m['machine']['python']} · "
        f"{'QUICK run · ' if m['quick'] else ''}"
        f"{'FAILED: ' + str(out['errors']) + ' error(s)' if out['errors'] else 'no errors'}"
        f" · {m.get('seconds', '?')} s",
        "",
        *(
            ["Stack: " + ", ".join(f"{k} {v}" for k, v in m["packages"].items()) + ".", ""]
            if m.get("packages")
            else []
        ),
        f"Server: {m['server']}. Load: {m['generator']}, {m['connections']} connections, "
        f"{m['write_seconds']:g} s per write measurement after {m['warmup_seconds']:g} s "
        f"of warm-up; reads one request at a time, {m['read_rounds']} one-second slices each, "
        "interleaved across reads and account sizes (median of the slices). "
        f"PostgreSQL: {m['postgresql']}.",
        "",
    ]
    if out["writes"]:
        lines += [
            "## Writes: POST /v1/plant_tree "
            "(customer_email, metadata, Idempotency-Key; all distinct)",
            "",
            "Ceiling and subject measured in turn, "
            f"{len(out['writes'][0].get('rounds', [])) or 1} round(s) each; x ceiling is the "
            "median of the rounds' ratios. Platform: every request for the next of many "
            "accounts, measured in each round right after the subject's one account; its x is "
            "the median of the rounds' ratios to that account. Paced: 0.7x the subject's own "
            "maximum. Crowd: the same load over more connections.",
            "",
            "| server | workers | ceiling req/s | req/s | x ceiling | paced at "
            "| p50 ms | p99 ms | crowd req/s | platform req/s | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for w in out["writes"]:
            crowd = (
                f"{w['crowd']['rps']:,.0f} ({w['many_connections']} conn., {w['crowd_ratio']:.2f}x)"
                if "crowd" in w
                else "-"
            )
            platform = (
                f"{w['platform']['rps']:,.0f} ({w['accounts']:,} accounts, "
                f"{w['platform_ratio']:.2f}x)"
                if "platform" in w
                else "-"
            )
            ceiling = f"{w['ceiling_rps']:,.0f}" if "ceiling_rps" in w else "-"
            lines.append(
                f"| {w['subject']} | {w['workers']} | {ceiling} | {w['max']['rps']:,.0f} | "
                f"{w['ratio']:.2f} | {w['paced_rate']:,.0f} req/s | {w['paced']['p50_ms']:.2f} | "
                f"{w['paced']['p99_ms']:.2f} | {crowd} | {platform} | {w['errors']} |"
            )
        lines.append("")
    if out["reads"]:
        sizes = sorted({r["size"] for r in out["reads"]})
        lines += [
            "## Reads: p50 latency in ms (x the same read on the "
            f"{_fmt_size(sizes[0])}-impact account), one worker",
            "",
            "| database | read | "
            + " | ".join(f"{_fmt_size(s)} impacts" for s in sizes)
            + " | p99 at "
            f"{_fmt_size(sizes[-1])} | errors |",
            "|---|---|" + "---:|" * (len(sizes) + 2),
        ]
        keys = list(dict.fromkeys((r["backend"], r["endpoint"]) for r in out["reads"]))
        by = {(r["backend"], r["endpoint"], r["size"]): r for r in out["reads"]}
        for backend, endpoint in keys:
            cells = []
            errors = 0
            last = None
            for s in sizes:
                r = by.get((backend, endpoint, s))
                if r is None:
                    cells.append("-")
                    continue
                errors += r["errors"]
                last = r
                ratio = f" ({r['ratio']:.2f}x)" if s != sizes[0] and r["ratio"] is not None else ""
                cells.append(f"{r['result']['p50_ms']:.2f}{ratio}")
            p99 = f"{last['result']['p99_ms']:.2f}" if last else "-"
            lines.append(
                f"| {backend} | {endpoint} | " + " | ".join(cells) + f" | {p99} | {errors} |"
            )
        lines.append("")
    if out.get("public"):
        lines += [
            "## Public reads: closed loop, one worker "
            "(per-address rate limit on, at a budget the load never reaches)",
            "",
            "| server | read | req/s | x ceiling GET | p50 ms | p99 ms | errors |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for p in out["public"]:
            ratio = f"{p['ratio']:.2f}" if p["ratio"] is not None else "-"
            lines.append(
                f"| {p['subject']} | {p['endpoint']} | {p['max']['rps']:,.0f} | {ratio} | "
                f"{p['max']['p50_ms']:.2f} | {p['max']['p99_ms']:.2f} | {p['errors']} |"
            )
        lines.append("")
    lines += ["## Targets", "", "| target | value | goal | holds |", "|---|---:|---|---|"]
    for t in out["targets"]:
        value = t["value"]
        shown = (
            "-" if value is None else f"{value:,.2f}" if isinstance(value, float) else f"{value}"
        )
        holds = "-" if t["holds"] is None else "yes" if t["holds"] else "**no**"
        lines.append(f"| {t['target']} | {shown} | {t['goal']} | {holds} |")
    lines.append("")
    return "\n".join(lines)


def plot(out: dict[str, Any], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("bench: matplotlib is not installed (pip install -e '.[dev]'); no plot")
        return False
    backends = list(dict.fromkeys(r["backend"] for r in out["reads"]))
    if not backends:
        return False
    fig, axes = plt.subplots(1, len(backends), figsize=(6.5 * len(backends), 6.4), squeeze=False)
    for ax, backend in zip(axes[0], backends, strict=True):
        rows = [r for r in out["reads"] if r["backend"] == backend]
        for endpoint in dict.fromkeys(r["endpoint"] for r in rows):
            points = sorted(
                (r["size"], r["result"]["p50_ms"]) for r in rows if r["endpoint"] == endpoint
            )
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=endpoint)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("impacts in the account")
        ax.set_ylabel("p50 latency (ms)")
        ax.set_title(f"Read latency against account size: {backend}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write(out: dict[str, Any], directory: Path) -> str:
    directory.mkdir(parents=True, exist_ok=True)
    out["errors"] = (
        sum(w["errors"] for w in out["writes"])
        + sum(r["errors"] for r in out["reads"])
        + sum(p["errors"] for p in out.get("public", []))
    )
    out["failed"] = out["errors"] > 0
    _add_ratios(out)
    out["targets"] = _targets(out)
    (directory / "latest.json").write_text(json.dumps(out, indent=1) + "\n")
    text = markdown(out)
    (directory / "latest.md").write_text(text)
    if out["reads"]:
        plot(out, directory / "read_latency.png")
    return text
