"""Text the command line prints about compiled bundles (`netdsl info MODEL.netc`,
`netdsl compile`'s last line), and `netdsl run --profile`'s table.
Presentation only: the header comes from netdsl/bundle.py, already checked."""
from __future__ import annotations

import os
import re

from .errors import NetDSLError


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
    if "quant" in h:                   # an int8 bundle (netdsl quantize, docs/QUANTIZE.md)
        q = h["quant"]
        lines.append(f"  int8:     {len(q['layers'])} layers int8 ({q['method']} calibration), "
                     f"{len(q['skipped'])} Conv/FC float32")
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


def profile_table(self, top: int | None = None, width: int = 60) -> str:
    """The per-layer table of a runtime.profile.Profile (`netdsl run --profile`): every step in plan order, or the `top`
    slowest."""
    unit = time_unit(self.total_s)
    rows = self.rows if top is None else sorted(self.rows, key=lambda r: -r.seconds)[:top]
    body = []
    for r in rows:
        layer = r.layer if len(r.layer) <= width else r.layer[:width - 1] + "…"
        body.append([str(r.index), layer, r.op, r.algo, r.shape, ms_text(r.seconds, unit),
                     ms_text(r.in_plan, unit) if r.in_plan is not None else "—",
                     f"{r.gflops:.1f}" if r.gflops is not None else "—",
                     f"{r.pct_peak:.0f}%" if r.pct_peak is not None else "—", f"{r.share:.1f}%"])
    th = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
    peak = (f"peak {self.peak_gflops:.1f} GFLOP/s ({'netdsl SGEMM 512³/1024³, measured now' if self.peak_source == 'measured' else 'given'})"
            if self.peak_gflops else "peak not measured")
    flops = sum(r.flops for r in self.rows)
    out = [f"profile: {self.model}, batch {self.batch}, {th}, {self.isa}; {peak}",
           table_text(["#", "layer", "op", "algo", "input → output", unit, f"in plan {unit}", "GFLOP/s", "% peak",
                       "share"], body, right={0, 5, 6, 7, 8, 9})]
    gf = flops / self.total_s / 1e9 if self.total_s > 0 else 0.0
    in_plan = sum(r.in_plan for r in self.rows) if self.rows and all(r.in_plan is not None for r in self.rows) else None
    out.append(f"total: {ms_text(self.total_s, unit)} {unit} over {len(self.rows)} steps"
               + (f" (the {top} slowest shown)" if top is not None and top < len(self.rows) else "")
               + f", {gf:.1f} GFLOP/s" + (f", {100 * gf / self.peak_gflops:.0f}% of peak" if self.peak_gflops else "")
               + f"; the whole plan as one call: {ms_text(self.plan_s, unit)} {unit}"
               + (f" (its steps timed inside it sum to {ms_text(in_plan, unit)} {unit})" if in_plan is not None else ""))
    out.append("by algorithm: " + ", ".join(f"{k} {s:.1f}%" for k, _, s in self.by_algo()))
    from .runtime.profile import BUSY_NOTE
    if self.foreign_cpus is not None and self.foreign_cpus > BUSY_NOTE:
        out.append(f"note: other processes kept {self.foreign_cpus:.1f} of {self.cpus or '?'} CPUs busy during "
                   "the profile: the times are inflated"
                   + (f" (with {self.threads} threads, each parallel step waits for the threads the other "
                      "work preempts)" if self.threads > 1 else ""))
    if self.elided:
        shown = ", ".join(self.elided[:3]) + (", …" if len(self.elided) > 3 else "")
        out.append(f"{len(self.elided)} concat{'s' if len(self.elided) != 1 else ''} elided (their producers "
                   f"write the slices; no step): {shown}")
    return "\n".join(out)


def cli_profile(model, x, args) -> None:
    """`netdsl run --profile / --profile-json FILE [--peak GFLOPS]`: print the table and/or write the JSON
    (FILE '-' is stdout)."""
    peak = getattr(args, "peak", None)
    if peak is not None and not peak > 0:
        raise NetDSLError(f"--peak must be a positive GFLOP/s figure, got {peak}")
    from .runtime.profile import profile
    p = profile(model, x, peak=peak)
    if args.profile:
        print(profile_table(p))
    path = getattr(args, "profile_json", None)
    if path:
        text = p.to_json(indent=1)
        if path == "-":
            print(text)
            return
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        except OSError as e:
            raise NetDSLError(f"cannot write {path}: {e.strerror or e}",
                              hint="check that the folder exists and is writable") from None
        print(f"wrote the profile ({len(p.rows)} steps) to {path}")


MAX_BOXES_SHOWN = 100


def boxes_table(per_image, size, src, names=None, thresh=0.25, nms=0.45) -> str:
    """The boxes of a detection run: class, score, left, top, width, height in pixels of `src`."""
    from .runtime.detect import class_name, pixel_box
    w, h = size
    out = [f"detections (score > {thresh:g}, NMS IoU {nms:g}); boxes in pixels of {src} ({w}x{h}): "
           "x, y = top-left corner"]
    for i, boxes in enumerate(per_image):
        if len(per_image) > 1:
            out.append(f"  [{i}]")
        if not boxes:
            out.append("  no boxes")
            continue
        rows = []
        for b in boxes[:MAX_BOXES_SHOWN]:
            x, y, bw, bh = pixel_box(b, w, h)
            rows.append([class_name(b.cls, names), f"{b.score:.3f}", f"{x:.1f}", f"{y:.1f}", f"{bw:.1f}", f"{bh:.1f}"])
        out.append(table_text(["class", "score", "x", "y", "w", "h"], rows,
                              right=frozenset(range(1, 6))))
        if len(boxes) > MAX_BOXES_SHOWN:
            out.append(f"  ... and {len(boxes) - MAX_BOXES_SHOWN:,} more (raise --thresh)")
    return "\n".join(out)
