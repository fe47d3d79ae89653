#!/usr/bin/env python3
"""Draws `make bench`'s proxy table as an SVG bar chart: CPU µs per request and p99 latency
per row, side by side. Python standard library only; no plotting server, no network.

usage: bench/chart.py RESULTS.tsv OUT.svg [TITLE]

RESULTS.tsv is what bench/proxy.sh writes: a header line, then one line per row with the
columns row, req_s, p50_us, p99_us, cpu_us, cpu_range ("-" where a figure is missing) and,
optionally, group. With a group column each group is its own block with its own scales, and
GROUPS says what its two panels show: in "handshake" rows cpu_us is per connection and req_s is
connections per second; in "pool" rows cpu_us holds KiB per pooled connection and req_s the
number of pooled connections; in "memory" rows (added by bench/memory.sh) cpu_us is KiB per
idle connection and p99_us KiB per unfinished header; in "crowd" rows cpu_us is the whole RSS in
MiB and req_s the connections held.
"""

import sys
from xml.sax.saxutils import escape

ROW_H = 24          # pixels per bar row
LABEL_W = 250       # row names
PANEL_W = 300       # one panel's bar area
GAP = 70            # between the two panels, room for value labels
TOP = 70            # title and panel headings
BOTTOM = 34         # the note under the bars
TETHER = "#1f6fb4"  # tether rows
OTHER = "#9a9a9a"   # everything else
GAP_Y = 26          # between two groups
# group -> (block title, [(column, panel heading, unit), (column, panel heading, unit)])
MICROS = [("cpu_us", "Proxy CPU µs per request (lower is better)", "µs"),
          ("p99_us", "p99 latency, µs (lower is better)", "µs")]
GROUPS = {
    "http": ("HTTP/1.1 in clear, kept alive", MICROS),
    "tls": ("TLS termination (ECDSA P-256), kept alive; HTTP/2 over TLS", MICROS),
    "handshake": ("New TLS connections (handshake + one request each)",
                  [("cpu_us", "Proxy CPU µs per connection (lower is better)", "µs"),
                   ("req_s", "connections per second (client-bound)", "/s")]),
    "memory": ("Memory per waiting client connection (bench/memory.sh)",
               [("cpu_us", "KiB of RSS per idle kept-alive connection (lower is better)", "KiB"),
                ("p99_us", "KiB of RSS per unfinished request header (lower is better)", "KiB")]),
    "crowd": ("Many idle clients at once (bench/memory.sh)",
              [("cpu_us", "the proxy's whole RSS, MiB (lower is better)", "MiB"),
               ("req_s", "idle kept-alive connections held", "")]),
    "pool": ("Upstream connection pool",
             [("cpu_us", "KiB of RSS per pooled connection (lower is better)", "KiB"),
              ("req_s", "pooled upstream connections", "")]),
}
FONT = "font-family=\"system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif\""


def read(path):
    """Rows as dicts, in file order; "-" figures become None."""
    with open(path, encoding="utf-8") as f:
        lines = [line.rstrip("\n") for line in f if line.strip()]
    header = lines[0].split("\t")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        cells = line.split("\t")
        if len(cells) != len(header):
            sys.exit(f"{path}:{n}: {len(cells)} columns, expected {len(header)}")
        row = dict(zip(header, cells))
        for key in ("req_s", "p50_us", "p99_us", "cpu_us"):
            row[key] = None if row.get(key, "-") in ("-", "") else float(row[key])
        rows.append(row)
    return rows


def nice_max(v):
    """A round axis maximum at or above v."""
    if v <= 0:
        return 1.0
    step = 10 ** (len(str(int(v))) - 1)
    for m in (1, 2, 2.5, 5, 10):
        if m * step >= v:
            return m * step
    return 10 * step


def is_tether(row):
    return row.startswith("tether") or row.endswith(", tether")


def panel(out, rows, key, x0, heading, unit, y0=TOP):
    """Bars of column `key` for `rows`, the first at y0, on a scale of their own."""
    values = [r[key] for r in rows if r[key] is not None]
    top = nice_max(max(values) if values else 0)
    out.append(f'<text x="{x0}" y="{y0 - 16}" font-size="13" font-weight="600" {FONT}>{escape(heading)}</text>')
    for i in range(5):
        x = x0 + PANEL_W * i / 4
        out.append(f'<line x1="{x:.1f}" y1="{y0 - 6}" x2="{x:.1f}" y2="{y0 + ROW_H * len(rows)}" stroke="#e4e4e4"/>')
        label = f"{top * i / 4:g}"
        out.append(f'<text x="{x:.1f}" y="{y0 + ROW_H * len(rows) + 14}" font-size="10" fill="#777" text-anchor="middle" {FONT}>{label}</text>')
    for i, r in enumerate(rows):
        y = y0 + ROW_H * i
        v = r[key]
        if v is None:
            out.append(f'<text x="{x0 + 4}" y="{y + ROW_H * 0.68:.1f}" font-size="11" fill="#999" {FONT}>not measured</text>')
            continue
        w = PANEL_W * v / top
        colour = TETHER if is_tether(r["row"]) else OTHER
        out.append(f'<rect x="{x0}" y="{y + 4}" width="{w:.1f}" height="{ROW_H - 8}" fill="{colour}" rx="2">'
                   f'<title>{escape(r["row"])}: {f"{v:g} {unit}".rstrip()}</title></rect>')
        out.append(f'<text x="{x0 + w + 4:.1f}" y="{y + ROW_H * 0.68:.1f}" font-size="11" {FONT}>{v:g}</text>')


def labels(out, rows, y0):
    for i, r in enumerate(rows):
        y = y0 + ROW_H * i + ROW_H * 0.68
        weight = ' font-weight="600"' if is_tether(r["row"]) else ""
        out.append(f'<text x="{LABEL_W - 8}" y="{y:.1f}" font-size="12" text-anchor="end"{weight} {FONT}>{escape(r["row"])}</text>')


def grouped_svg(rows, title):
    """One block per group, in the order groups first appear, each with its own two panels."""
    order = []
    for r in rows:
        if r["group"] not in order:
            order.append(r["group"])
    width = LABEL_W + 2 * PANEL_W + 2 * GAP
    blocks, y = [], 40
    for g in order:
        members = [r for r in rows if r["group"] == g]
        blocks.append((g, members, y))
        y += 22 + (TOP - 40) + ROW_H * len(members) + 14 + GAP_Y
    height = y - GAP_Y + BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">',
           f'<title>{escape(title)}</title>',
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="10" y="22" font-size="15" font-weight="600" {FONT}>{escape(title)}</text>']
    for g, members, y in blocks:
        name, panels = GROUPS.get(g, (g, MICROS))
        out.append(f'<text x="10" y="{y + 14}" font-size="13" font-weight="600" fill="#444" {FONT}>{escape(name)}</text>')
        y0 = y + 22 + (TOP - 40)
        labels(out, members, y0)
        for j, (key, heading, unit) in enumerate(panels):
            panel(out, members, key, LABEL_W + j * (PANEL_W + GAP), heading, unit, y0)
    note = "Median of the rounds; one proxy core. bench/README.md says how to read it."
    out.append(f'<text x="10" y="{height - 8}" font-size="10" fill="#777" {FONT}>{escape(note)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def svg(rows, title):
    if rows and "group" in rows[0]:
        return grouped_svg(rows, title)
    width = LABEL_W + 2 * PANEL_W + 2 * GAP
    height = TOP + ROW_H * len(rows) + BOTTOM
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" role="img">',
           f'<title>{escape(title)}</title>',
           f'<rect width="{width}" height="{height}" fill="#fff"/>',
           f'<text x="10" y="22" font-size="15" font-weight="600" {FONT}>{escape(title)}</text>']
    labels(out, rows, TOP)
    panel(out, rows, "cpu_us", LABEL_W, "Proxy CPU µs per request (lower is better)", "µs")
    panel(out, rows, "p99_us", LABEL_W + PANEL_W + GAP, "p99 latency, µs (lower is better)", "µs")
    note = "Median of the rounds; one proxy core, keep-alive. bench/README.md says how to read it."
    out.append(f'<text x="10" y="{height - 8}" font-size="10" fill="#777" {FONT}>{escape(note)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main(argv):
    if len(argv) not in (3, 4):
        sys.exit(__doc__)
    rows = read(argv[1])
    if not rows:
        sys.exit(f"{argv[1]}: no rows")
    title = argv[3] if len(argv) == 4 else "make bench: proxies head to head"
    with open(argv[2], "w", encoding="utf-8") as f:
        f.write(svg(rows, title))


if __name__ == "__main__":
    main(sys.argv)
