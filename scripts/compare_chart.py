#!/usr/bin/env python3
"""Draws scripts/compare.sh's CSV as an SVG: one panel per scenario, one bar
per server, coserve's bars in colour, the null peer (a server that
costs nothing) in grey. No dependencies.

    scripts/compare_chart.py target/compare/compare-STAMP.csv docs/compare.svg "title"
"""
import csv
import sys
from html import escape

PANELS = [
    ("small", "req_per_s", "1 KiB, 64 connections (req/s)"),
    ("c1000", "req_per_s", "1 KiB, 1,000 connections (req/s)"),
    ("large", "req_per_s", "10 MiB, 16 connections (req/s)"),
    ("idle", "per_conn_kib", "KiB per idle connection (lower is better)"),
]
W, PANEL_H, LABEL_W, BAR_H, GAP = 760, 0, 130, 16, 4


def main():
    src, out = sys.argv[1], sys.argv[2]
    title = sys.argv[3] if len(sys.argv) > 3 else "coserve and its peers"
    rows = list(csv.DictReader(open(src)))
    servers = []
    for r in rows:
        if r["server"] not in servers:
            servers.append(r["server"])
    panel_h = 28 + len(servers) * (BAR_H + GAP) + 10
    height = 40 + len(PANELS) * panel_h
    svg = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" '
           f'font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{height}" fill="white"/>',
           f'<text x="10" y="24" font-size="15" font-weight="bold">{escape(title)}</text>']
    y = 40
    for scenario, field, label in PANELS:
        values = {}
        for r in rows:
            if r["scenario"].startswith(scenario) and r[field]:
                values[r["server"]] = float(r[field])
        svg.append(f'<text x="10" y="{y + 16}" font-weight="bold">{escape(label)}</text>')
        top = max(values.values(), default=1.0) or 1.0
        by = y + 26
        for server in servers:
            v = values.get(server)
            svg.append(f'<text x="{LABEL_W - 6}" y="{by + BAR_H - 4}" text-anchor="end">{escape(server)}</text>')
            if v is not None:
                width = (W - LABEL_W - 110) * v / top
                colour = "#d95f02" if server.startswith("coserve") else "#999999" if server.startswith("null") else "#7570b3"
                svg.append(f'<rect x="{LABEL_W}" y="{by}" width="{width:.1f}" height="{BAR_H}" fill="{colour}"/>')
                text = f"{v:,.0f}" if field == "req_per_s" else f"{v:.2f}"
                svg.append(f'<text x="{LABEL_W + width + 5:.1f}" y="{by + BAR_H - 4}">{text}</text>')
            by += BAR_H + GAP
        y += panel_h
    svg.append("</svg>")
    open(out, "w").write("\n".join(svg) + "\n")


if __name__ == "__main__":
    main()
