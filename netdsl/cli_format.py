"""Text the command line prints about compiled bundles (`netdsl info MODEL.netc`,
`netdsl compile`'s last line), and the table helpers of `netdsl run --profile`.
Presentation only: the header comes from netdsl/bundle.py, already checked."""
from __future__ import annotations

import os
import re


def size_text(b: int) -> str:
    """Bytes for people: KiB below a MiB, else MiB."""
    return f"{b / 2**20:,.1f} MiB" if b >= 2**20 else f"{b / 1024:,.1f} KiB"


def _shape(h, node_name):
    for nd in h["nodes"]:
        if nd["name"] == node_name:
            return "x".join(map(str, nd["shape"]))
    return "?"


def info_text(h: dict, path: str = "") -> str:
    """What `netdsl info MODEL.netc` prints: where it came from and its memory contract."""
    c = h["contract"]
    size = os.path.getsize(path) if path and os.path.exists(path) else None
    lines = [f"{path or h['model']}: netdsl bundle, format {h['format_version']}"
             + (f", {size:,} bytes" if size is not None else ""),
             f"  model:    {h['model']} (from {h['source']}, netdsl {h['netdsl_version']}, -O{h['opt_level']})",
             "  inputs:   " + ", ".join(f"{n} {_shape(h, n)}" for n in h["inputs"]),
             "  outputs:  " + ", ".join(f"{k} {_shape(h, v)}" for k, v in h["outputs"].items()),
             f"  layers:   {c['layers']}, {c['params']:,} params, "
             + (f"{c['macs'] / 1e9:.2f} GMACs" if c["macs"] >= 1e8 else f"{c['macs'] / 1e6:.2f} MMACs")
             + " per image",
             f"  weights:  {c['weight_bytes']:,} bytes ({size_text(c['weight_bytes'])})"]
    limits = c.get("limits", {})
    for n, b in c["arena_bytes"].items():
        ws = c["workspace_bytes"].get(n, 0)
        lines.append(f"  arena:    batch {n}: {b:,} bytes ({size_text(b)})"
                     + (f" + workspace {ws:,} bytes" if ws else "")
                     + (f"; this runtime cannot run it: {limits[n]}" if n in limits else ""))
    lines.append("  ops:      " + ", ".join(f"{op} {k}" for op, k in
                                            sorted(c["op_counts"].items(), key=lambda x: (-x[1], x[0]))))
    totals = [r for r in h.get("rewrites", []) if re.fullmatch(r"[A-Za-z_]\w*: \d+ rewrites?", r)]
    shown = [r.replace(" rewrites", "").replace(" rewrite", "") for r in totals if not r.endswith(": 0 rewrites")]
    lines.append(f"  compiled: -O{h['opt_level']}" + (": " + ", ".join(shown) if shown else ", no rewrites")
                 + " (rewrites per pass; `netdsl compile --report` lists each)")
    return "\n".join(lines)


def ms_text(seconds: float, unit: str = "ms") -> str:
    """Seconds in `unit`: ms with 3 decimals below 100 ms (so small steps still add up) and 1 above;
    µs with 1 decimal."""
    v = seconds * (1e6 if unit == "µs" else 1e3)
    return f"{v:.3f}" if v < 100 and unit == "ms" else f"{v:.1f}"


def time_unit(total_seconds: float) -> str:
    """µs for a profile whose total is under a millisecond, else ms."""
    return "µs" if total_seconds < 1e-3 else "ms"


def table_text(header: list, rows: list, right=frozenset(), gap: str = "  ") -> str:
    """A plain-text table: columns as wide as their widest cell; the columns in `right`
    (indices) right-aligned, the others left-aligned; a rule under the header."""
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]

    def line(cells):
        return gap.join(str(c).rjust(w) if i in right else str(c).ljust(w)
                        for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return "\n".join([line(header), gap.join("-" * w for w in widths)] + [line(r) for r in rows])
