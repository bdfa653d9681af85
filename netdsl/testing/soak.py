"""Soak: check random networks until the time is up.

    python -m netdsl.testing.soak --minutes 30 [--seed S] [--out DIR] [--no-shrink]

Each network (seeds S, S+1, …) goes through netdsl.testing.check.check; a failing one is
minimized (netdsl.testing.check.shrink) and written to DIR as `<seed>-<kind>.net`, with the
failure as comments at the top. Prints a summary — networks tried, invalid texts skipped,
ops covered, the comparisons run, failures — and exits 1 if anything failed.
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m netdsl.testing.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=30.0, help="how long to run (default 30)")
    ap.add_argument("--seed", type=int, default=None, help="first seed (default: from the clock)")
    ap.add_argument("--out", default="soak-findings", help="folder for minimized failing cases")
    ap.add_argument("--no-shrink", action="store_true", help="write failing cases unminimized")
    ap.add_argument("--shrink-seconds", type=float, default=90.0, help="time limit per minimization")
    args = ap.parse_args(argv)

    import netdsl
    from .. import ops
    from .check import check, shrink
    from .generate import generate

    seed = args.seed if args.seed is not None else int(time.time()) % 10_000_000
    first = seed
    deadline = time.monotonic() + args.minutes * 60
    tried = invalid = 0
    covered: collections.Counter = collections.Counter()
    checked: collections.Counter = collections.Counter()
    failures = []
    print(f"soak: seeds from {first}, {args.minutes:g} minutes", flush=True)
    next_report = time.monotonic() + 60
    while time.monotonic() < deadline:
        if time.monotonic() >= next_report:
            next_report += 60
            print(f"  … {tried} networks, {len(failures)} failing, {len(covered)} ops seen", flush=True)
        try:
            text, net, model, skip = generate(seed)
        except RuntimeError:
            invalid += 20
            seed += 1
            continue
        invalid += skip
        tried += 1
        try:
            res = check(text, seed=seed)
        except netdsl.NetDSLError as e:        # generate() parsed it, so this is a finding too
            res = None
            failures.append((seed, "crash", f"check refused a text parse accepted: {e}", text))
            _write(args.out, seed, "crash", failures[-1][2], text)
        if res is not None:
            covered.update(res.ops)
            checked.update(res.checked)
            if not res.ok:
                kinds = sorted(res.kinds())
                small = text
                if not args.no_shrink:
                    _, small = shrink(net, kinds, seed=seed, budget_s=args.shrink_seconds)
                detail = "\n".join(str(f) for f in res.failures[:6])
                failures.append((seed, kinds[0], detail, small))
                _write(args.out, seed, kinds[0], detail, small)
                print(f"seed {seed}: FAIL {', '.join(kinds)}\n{_indent(detail)}\n{_indent(small)}", flush=True)
        seed += 1
    registered = set(ops.all_specs())
    print(f"\nsoak summary: {tried} networks checked (seeds {first}..{seed - 1}), "
          f"{invalid} invalid texts skipped")
    print(f"ops covered: {len(registered & set(covered))} of {len(registered)}"
          + (f"; never: {', '.join(sorted(registered - set(covered)))}" if registered - set(covered) else ""))
    print("comparisons run: " + ", ".join(f"{k} {v}" for k, v in sorted(checked.items())))
    print(f"failures: {len(failures)}" + (f" (written to {args.out}/)" if failures else ""))
    for s, kind, detail, _ in failures:
        print(f"  seed {s}: {kind}: {detail.splitlines()[0][:200]}")
    return 1 if failures else 0


def _indent(text):
    return "\n".join("    " + line for line in text.rstrip().splitlines())


def _write(out, seed, kind, detail, text):
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, f"{seed}-{kind}.net")
    head = "".join(f"# {line}\n" for line in detail.splitlines())
    with open(path, "w", encoding="utf-8") as f:
        f.write(head + text)


if __name__ == "__main__":
    sys.exit(main())
