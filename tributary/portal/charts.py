"""Earnings charts drawn on the server as SVG (no script, no CDN): stacked bars per day,
one series per work or per model, in one currency (amounts in different currencies are
never stacked). Each chart names itself for screen readers; the page shows the same
numbers as a table beside it."""

from __future__ import annotations

from datetime import date, timedelta
from html import escape
from typing import Any

# Okabe-Ito: distinguishable with the common colour-vision deficiencies
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#7a7a7a")
MAX_SERIES = 6  # the rest is "other"


def series(rows: list[tuple[date, str, int]], days: list[date]) -> tuple[list[str], dict[str, list[int]]]:
    """(names in legend order, name -> micros per day); the smaller series folded into "other"."""
    totals: dict[str, int] = {}
    for _, name, micros in rows:
        totals[name] = totals.get(name, 0) + micros
    names = sorted(totals, key=lambda n: (-totals[n], n))
    keep = names if len(names) <= MAX_SERIES + 1 else names[:MAX_SERIES]
    index = {d: i for i, d in enumerate(days)}
    values: dict[str, list[int]] = {n: [0] * len(days) for n in keep}
    if len(names) > len(keep):
        values["other"] = [0] * len(days)
    for day, name, micros in rows:
        if day in index:
            values[name if name in keep else "other"][index[day]] += micros
    return list(values), values


def day_range(until: date, days: int) -> list[date]:
    return [until - timedelta(days=days - 1 - i) for i in range(days)]


def stacked_bars(title: str, days: list[date], names: list[str], values: dict[str, list[int]], currency: str,
                 width: int = 720, height: int = 240) -> str:
    from tributary.money import format_micros

    left, bottom, top = 8, 28, 10
    plot_w, plot_h = width - left * 2, height - bottom - top
    totals = [sum(max(values[n][i], 0) for n in names) for i in range(len(days))]
    peak = max(totals, default=0) or 1
    bar_w = plot_w / max(len(days), 1)
    parts: list[str] = []
    for i, day in enumerate(days):
        y: float = top + plot_h
        x = left + i * bar_w + bar_w * 0.15
        for n, name in enumerate(names):
            v = max(values[name][i], 0)
            if not v:
                continue
            h = v / peak * plot_h
            y -= h
            parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.7:.1f}" height="{h:.1f}" '
                         f'fill="{PALETTE[n % len(PALETTE)]}"><title>{escape(str(day))} {escape(name)}: '
                         f'{escape(format_micros(values[name][i], currency))}</title></rect>')
        last = len(days) - 1
        if i in (0, last) or (len(days) > 7 and i % 7 == 0 and last - i >= 4):
            parts.append(f'<text x="{left + i * bar_w + bar_w / 2:.1f}" y="{height - 10}" font-size="11" '
                         f'text-anchor="middle" fill="#222">{day:%b %d}</text>')
    total = sum(totals)
    desc = escape(f"Earnings per day in {currency}, {days[0]} to {days[-1]}, by {title}: "
                  f"{format_micros(total, currency)} in all; the table below gives every figure.", quote=True)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
            f'class="chart" aria-label="{desc}"><rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>'
            f'<line x1="{left}" y1="{top + plot_h}" x2="{width - left}" y2="{top + plot_h}" stroke="#555"/>'
            + "".join(parts) + "</svg>")


def legend(names: list[str]) -> list[dict[str, Any]]:
    return [{"name": n, "colour": PALETTE[i % len(PALETTE)]} for i, n in enumerate(names)]
