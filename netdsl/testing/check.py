"""The property every valid network must have, and a shrinker for the networks that lack it.

For one `.net` text, `check()` runs, with the deterministic weights perturbed (every BatchNorm
gets random running statistics, scale — some negative — and shift; every bias a random value),
on random inputs:

  * the numpy reference (`run_reference`, float64, and a float32 run of it) — the oracle;
  * the C runtime at -O0 and at -O3 (`run_level`), at batch 3 and at batch 1 for each sample,
    on every ISA the CPU supports (`netdsl.runtime.lib.using_isa`);
  * non-finite inputs: NaN, +inf and -inf at a few positions of sample 1 of batch 3; NaN, +inf
    and -inf must sit exactly where the reference has them, at -O0 and -O3, and samples 0 and 2
    must not be touched;
  * the compiled bundle (-O3, `netdsl.compiler.compile_model`, then `netdsl.load`), whose outputs must
    equal the -O3 session's.

Tolerance. Outputs are compared with |got − ref| ≤ tol = ATOL · scale · √depth, scale =
max(1, max |ref|) over the finite values of that output, depth = the longest path of layers to
it. Why: the C runtime computes in float32 (unit roundoff u = 6e-8) and sums in other orders
than numpy (blocked GEMM, per-ISA vector widths, folded BatchNorm weights rounded once,
fused epilogues), while the reference is float64. One layer's sum of K products of O(scale)
values differs by at most about K·u·scale — K ≤ 2400 here (the generator caps FC inputs at
800 and channels at 48, 96 in one network of eight, so a 5x5 window sums ≤ 2400 products),
so ≤ 1.4e-4·scale in the worst case, and typically √K·u·scale ≈ 3e-6·scale. The
He-initialized layers keep magnitudes about constant from layer to layer, so per-layer
errors add up like a random walk: ∝ √depth. ATOL = 1e-4 is above the worst case of one layer
and ~50x the typical accumulated error of a 30-layer network, while every real mistake
(a lost bias, a wrong channel, an activation applied or not, a window off by one, a Mul done
as an Add) changes outputs by O(scale). The values are never close to a discontinuity: every
op is continuous (ReLU, pooling, Sigmoid…), and StochasticPool's Σa²/Σa is bounded by max a.
Batch 3 against batch 1 and the bundle against its session use the same bound (the kernels
may split work by batch differently).

Ill-conditioned networks. Some generated networks amplify rounding far past that model: a
product of a LogSoftmax (x − logsumexp x, a cancellation) with its own input, BatchNorm with a
tiny variance, 50 layers of Mul. There float32 itself cannot do better, whatever the order of
the sums, and a value may even pass float32's range (3.4e38) inside the network while the
float64 oracle stays finite. So the reference also runs in float32 (the same numpy code), and
how far that run is from float64 measures the network's own conditioning: the tolerance is at
least CONDITION = 8 times the float32 reference's largest error on that output, and positions
where the float32 reference overflows (or the float64 value is beyond float32's range) are not
compared. A real mistake still shows: it moves outputs by O(scale) on a network whose float32
reference is accurate, and non-finite *inputs* are NaN/inf in both references alike, so their
propagation is still checked position by position.

On failure, `shrink()` deletes statements, layers, branches and outputs and shrinks the inputs
of the generator's tree (netdsl.testing.generate.mutations) while the same kind of failure
remains, and returns the smallest text.
"""
from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, field

import numpy as np

from .tree import mutations

ATOL = 1e-4
CONDITION = 8      # the C runtime may lose up to this many times what numpy's float32 run loses


@dataclass
class Failure:
    kind: str   # 'O0-vs-ref', 'O3-vs-ref', 'batch', 'threads', 'nan-O0', 'nan-O3', 'bundle', 'crash'
    detail: str

    def __str__(self):
        return f"{self.kind}: {self.detail}"


@dataclass
class Result:
    text: str
    failures: list = field(default_factory=list)
    checked: set = field(default_factory=set)     # which comparisons ran
    ops: set = field(default_factory=set)

    @property
    def ok(self):
        return not self.failures

    def kinds(self):
        return {f.kind for f in self.failures}


# ---------------------------------------------------------------- pieces

def perturbed_weights(model, seed):
    """The model's deterministic weights, with every BN's statistics and affine randomized
    (about a fifth of the scales negative) and every bias random."""
    rng = np.random.default_rng(seed)
    sd = model.state_dict()
    bn_nodes = {n.name: n for n in model.graph.nodes() if "running_var" in n.buffers}
    for k, v in sd.items():
        layer, _, p = k.rpartition(".")
        if layer in bn_nodes:
            c = v.shape
            if p == "running_mean":
                sd[k] = rng.normal(0, 0.5, c)
            elif p == "running_var":
                sd[k] = rng.uniform(0.3, 2.0, c)
            elif p == "weight":
                sd[k] = rng.uniform(0.5, 1.5, c) * np.where(rng.random(c) < 0.2, -1, 1)
            elif p == "bias":
                sd[k] = rng.normal(0, 0.3, c)
        elif p == "bias":
            sd[k] = rng.normal(0, 0.1, v.shape)
        sd[k] = np.asarray(sd[k], np.float32)
    return sd


def depths(graph):
    """Longest path (in layers) from an input to each output."""
    d = {}
    for node in graph.nodes():
        preds = graph.preds(node.name)
        d[node.name] = 1 + max((d[p] for p in preds), default=0)
    return {k: d[v] for k, v in graph.outputs.items()}


def as_dict(out, graph):
    if isinstance(out, dict):
        return out
    return {next(iter(graph.outputs)): out}


F32_MAX = float(np.finfo(np.float32).max)


def compare(got, ref, depth, ref32=None, f32_err=0.0):
    """None when got matches ref within the tolerance, else a description. Non-finite values
    must agree exactly: NaN where the reference has NaN, ±inf where it has ±inf.

    `ref32`, the same reference computed in float32, measures how the network itself treats
    float32 (see the module docstring): positions where the float64 value is beyond float32's
    range, or where float32 arithmetic itself overflows (ref32 non-finite, ref finite), are not
    compared; and the tolerance is at least CONDITION times the float32 reference's own error
    (or `f32_err`, when comparing two C runs: the conditioning measured on the same input)."""
    got = np.asarray(got, np.float64)
    ref = np.asarray(ref, np.float64)
    if got.shape != ref.shape:
        return f"shape {got.shape} vs reference {ref.shape}"
    outside = np.zeros(ref.shape, bool)
    if ref32 is not None:
        ref32 = np.asarray(ref32, np.float64)
        outside = np.isfinite(ref) & (~np.isfinite(ref32) | (np.abs(ref) > F32_MAX))
        f32_err = max(f32_err, f32_error(ref, ref32))
    for name, f in (("NaN", np.isnan), ("+inf", np.isposinf), ("-inf", np.isneginf)):
        a, b = f(got) & ~outside, f(ref) & ~outside
        if (a != b).any():
            idx = tuple(int(i) for i in np.argwhere(a != b)[0])
            return (f"{name} at {int(a.sum())} positions, the reference at {int(b.sum())}; first "
                    f"difference at {idx}: got {got[idx]!r}, reference {ref[idx]!r}")
    fin = np.isfinite(ref) & ~outside
    if not fin.any():
        return None
    scale = max(1.0, float(np.abs(ref[fin]).max()))
    tol = max(ATOL * scale * math.sqrt(depth), CONDITION * f32_err)
    diff = np.where(fin, np.abs(got - ref), 0.0)
    err = float(diff.max())
    if not err <= tol:
        idx = tuple(int(i) for i in np.unravel_index(int(diff.argmax()), diff.shape))
        return (f"max |diff| {err:.3g} > tol {tol:.3g} (scale {scale:.3g}, depth {depth}, float32 "
                f"reference error {f32_err:.3g}) at {idx}: got {got[idx]:.6g}, reference {ref[idx]:.6g}")
    return None


def f32_error(ref, ref32):
    """The float32 reference's largest error against float64 where both are finite."""
    ref, ref32 = np.asarray(ref, np.float64), np.asarray(ref32, np.float64)
    both = np.isfinite(ref) & np.isfinite(ref32) & (np.abs(ref) <= F32_MAX)
    return float(np.abs(ref32 - ref)[both].max()) if both.any() else 0.0


def nonfinite(x, rng, sample=1):
    """A copy of the batch with one NaN, one +inf and one -inf at random positions of one
    sample (fewer when the sample has fewer values)."""
    x = x.copy()
    flat = x[sample].reshape(-1)
    pos = rng.choice(flat.size, size=min(flat.size, 3), replace=False)
    for p, v in zip(pos, (np.nan, np.inf, -np.inf)):
        flat[p] = v
    return x


# ---------------------------------------------------------------- the check

def check(text, seed=0, isas=None, bundle=True, nan=True, threads=2, name="gen.net"):
    """Run the property on one network text; returns a Result (failures empty when it holds).
    Raises NetDSLError if the text is not a valid network.

    Every run uses one thread, and -O3 batch 3 runs again with `threads` threads (None: skip)
    on the default ISA, where the kernels split the work between threads. (One thread for the
    rest because OpenMP's waiting threads make small runs ~100x slower on a busy machine.)"""
    with np.errstate(all="ignore"):     # the reference meets NaN and inf on purpose
        return _check(text, seed, isas, bundle, nan, threads, name)


def _check(text, seed, isas, bundle, nan, threads, name):
    import netdsl
    from ..runtime import lib

    m0 = netdsl.parse(text, name)
    m3 = netdsl.parse(text, name)
    res = Result(text)
    res.ops = {n.op for n in m0.graph.nodes()}
    g = m0.graph
    m0.run_level, m3.run_level = 0, 3
    m0.threads = m3.threads = 1
    try:
        sd = perturbed_weights(m0, seed)
        m0.load_state_dict(sd)
        m3.load_state_dict(sd)
    except Exception as e:  # noqa: BLE001 - any exception is a finding
        res.failures.append(Failure("crash", f"load_state_dict: {type(e).__name__}: {e}"))
        return res
    rng = np.random.default_rng(seed + 1)
    x3 = {n: rng.standard_normal((3, *g[n].shape)).astype(np.float32) for n in g.inputs}
    dep = depths(g)
    from ..runtime.reference import run_reference

    def references(x):
        """The float64 oracle and its float32 run, or None (a crash of the oracle is a finding)."""
        try:
            return (run_reference(g, m0.weights, x), run_reference(g, m0.weights, x, dtype=np.float32))
        except Exception as e:  # noqa: BLE001
            res.failures.append(Failure("crash", f"reference: {type(e).__name__}: {e}"))
            return None

    refs = references(x3)
    if refs is None:
        return res
    ref, ref32 = refs
    err32 = {k: f32_error(ref[k], ref32[k]) for k in ref}    # the network's conditioning on x3
    isas = isas or lib.supported_isas()
    # 2 threads and the bundle are compared with the 1-thread -O3 run of the same ISA
    base_isa = lib.isa() if lib.isa() in isas else isas[0]

    def cmp(kind, what, got, want, want32=None):
        """got against a reference (want32: its float32 run) or against another C run of x3."""
        for k in want:
            if k not in got:
                res.failures.append(Failure(kind, f"{what}: output {k} missing"))
                return
            if want32 is not None:
                msg = compare(got[k], want[k], dep[k], want32[k])
            else:
                msg = compare(got[k], want[k], dep[k], f32_err=err32[k])
            if msg:
                res.failures.append(Failure(kind, f"{what}, output {k}: {msg}"))

    def run(m, x, what):
        try:
            return as_dict(m(x), g)
        except Exception as e:  # noqa: BLE001
            res.failures.append(Failure("crash", f"{what}: {type(e).__name__}: {e}"))
            return None

    o3_default = None
    for isa in isas:
        with lib.using_isa(isa):
            for level, m in ((0, m0), (3, m3)):
                got = run(m, x3, f"-O{level} {isa} batch 3")
                if got is None:
                    continue
                res.checked.add(f"O{level}")
                cmp(f"O{level}-vs-ref", f"-O{level} {isa} batch 3", got, ref, ref32)
                if level == 3 and isa == base_isa:
                    o3_default = got
                for i in range(3):
                    one = run(m, {k: v[i:i + 1] for k, v in x3.items()}, f"-O{level} {isa} batch 1")
                    if one is None:
                        break
                    res.checked.add("batch")
                    cmp("batch", f"-O{level} {isa} batch 1, sample {i} vs batch 3",
                        one, {k: v[i:i + 1] for k, v in got.items()})
    with lib.using_isa(base_isa):
        if threads and threads > 1 and o3_default is not None:
            m3.threads = threads
            got = run(m3, x3, f"-O3 {threads} threads batch 3")
            m3.threads = 1
            if got is not None:
                res.checked.add("threads")
                cmp("threads", f"-O3 {threads} threads vs 1 thread, batch 3", got, o3_default)
    if nan:
        nrng = np.random.default_rng(seed + 2)
        xn = {k: nonfinite(v, nrng) for k, v in x3.items()}
        refs_n = references(xn)
        for isa in isas if refs_n is not None else ():
            with lib.using_isa(isa):
                for level, m in ((0, m0), (3, m3)):
                    got = run(m, xn, f"-O{level} {isa} non-finite input")
                    if got is not None:
                        res.checked.add(f"nan-O{level}")
                        cmp(f"nan-O{level}", f"-O{level} {isa} non-finite input", got, *refs_n)
    if bundle and o3_default is not None:
        with lib.using_isa(base_isa):
            _bundle_roundtrip(res, m3, x3, o3_default, g, cmp)
    return res


def _bundle_roundtrip(res, m3, x3, want, g, cmp):
    import netdsl
    from ..compiler import compile_model
    fd, path = tempfile.mkstemp(suffix=".netc")
    os.close(fd)
    try:
        try:
            compile_model(m3, path, 3)        # what `netdsl compile` does, load-back check included
        except Exception as e:  # noqa: BLE001
            res.failures.append(Failure("bundle", f"save: {type(e).__name__}: {e}"))
            return
        try:
            mb = netdsl.load(path, threads=1)
            got = as_dict(mb(x3), g)
        except Exception as e:  # noqa: BLE001
            res.failures.append(Failure("bundle", f"load/run: {type(e).__name__}: {e}"))
            return
        res.checked.add("bundle")
        cmp("bundle", "bundle vs -O3 session", got, want)
    finally:
        os.unlink(path)


def fails_like(text, kinds, seed=0, **kw):
    """True when `text` is valid and check() fails with one of `kinds`."""
    import netdsl
    try:
        r = check(text, seed=seed, **kw)
    except netdsl.NetDSLError:
        return False
    return bool(r.kinds() & set(kinds))


def shrink(net, kinds, seed=0, budget_s=60.0, max_tries=400, **kw):
    """Greedy: take the first smaller variant of `net` that still fails with one of `kinds`,
    until none does (or the budget is spent). Returns (net, text)."""
    t0 = time.monotonic()
    tries = 0
    improved = True
    while improved and time.monotonic() - t0 < budget_s and tries < max_tries:
        improved = False
        for cand in mutations(net):
            tries += 1
            if fails_like(cand.render(), kinds, seed, **kw):
                net, improved = cand, True
                break
            if time.monotonic() - t0 > budget_s or tries >= max_tries:
                break
    return net, net.render()
