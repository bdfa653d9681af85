"""Shape inference and per-node costs over a Graph.

For every node, in topological order: resolve attributes against the input
shapes (`same` padding becomes numbers), infer the output shape, count
parameters and MACs, activation memory, and the receptive field and
effective stride (jump). Through merges the receptive field is the largest
over all paths. Every failing node is reported (with its source line);
nodes downstream of a failure are skipped silently so one mistake is
reported once.
"""
from __future__ import annotations

from fractions import Fraction
from math import prod

from .. import ops
from ..errors import Diagnostic, ErrorSink
from ..graph import Graph
from ..ops.attrs import OpError
from ..ops.geometry import shape_str

BYTES = 4   # float32

# What netdsl agrees to run (docs/LANGUAGE.md, Limits), checked here, before anything is
# allocated: a network asking for more is refused at the line that asks for it.
MAX_PARAMS = 2**31            # learned values in all (8 GiB of float32 weights); one layer alike
MAX_VALUES = 2**31            # values in one layer's output, per sample (8 GiB of float32)


def _gib(n_values):
    return f"{n_values * BYTES / 2**30:,.1f} GiB"


def _check_limits(node, out, total_before):
    """OpError when one layer's weights or output, or the network's weights so far, pass the limits."""
    if node.n_params > MAX_PARAMS:
        raise OpError(f"{node.n_params:,} parameters ({_gib(node.n_params)} of float32 weights) in this one "
                      f"layer; netdsl's limit is {MAX_PARAMS:,} ({_gib(MAX_PARAMS)}) per network",
                      hint="check the channel counts and the input size this layer gets; "
                           "the limits are in docs/LANGUAGE.md (Limits)")
    n_out = prod(out)
    if n_out > MAX_VALUES:
        raise OpError(f"the output {shape_str(out)} holds {n_out:,} values per sample ({_gib(n_out)}); "
                      f"netdsl's limit is {MAX_VALUES:,} ({_gib(MAX_VALUES)}) per layer",
                      hint="check the channel counts and the input size; the limits are in docs/LANGUAGE.md (Limits)")
    if total_before + node.n_params > MAX_PARAMS:
        raise OpError(f"the network's parameters pass netdsl's limit of {MAX_PARAMS:,} ({_gib(MAX_PARAMS)}) here: "
                      f"{total_before:,} before this layer + {node.n_params:,} in it",
                      hint="the limits are in docs/LANGUAGE.md (Limits)")


def analyze(g: Graph, earlier=()) -> Graph:
    """Fill shape, params, MACs and receptive field on every node; raise NetDSLError on problems
    (together with `earlier` diagnostics from expansion, so one run reports everything)."""
    sink = ErrorSink()
    sink.diagnostics.extend(earlier)
    # the front end's warnings, not g.warnings: a second analysis (after a pass) must not
    # add this analysis's own warnings twice
    sink.warnings.extend(getattr(g, "source_warnings", ()))
    failed = set()
    total_params = 0
    for name in g.topo():
        node = g[name]
        preds = g.preds(name)
        if any(p in failed for p in preds):
            failed.add(name)
            continue
        spec = ops.get(node.op)
        shapes = [g[p].shape for p in preds]
        try:
            a = spec.resolve(node.attrs, shapes)
            out = tuple(int(s) for s in spec.infer(a, shapes))
            if any(s <= 0 for s in out):
                raise OpError(f"{node.op} produces an empty output {shape_str(out)}")
            node.attrs = a
            node.shape = out
            node.params = dict(spec.params(a, shapes))
            node.buffers = dict(spec.buffers(a, shapes))
            node.n_params = sum(prod(s) for s in node.params.values())
            _check_limits(node, out, total_params)
            total_params += node.n_params
            node.macs = int(spec.macs(a, shapes, out))
            _receptive_field(g, node, spec, a, shapes, preds)
        except OpError as e:
            failed.add(name)
            notes = list(e.notes)
            if len(preds) > 1:
                notes += _provenance(g, preds)
            notes += _used_at(g, node)
            hint = e.hint or _merge_hint(g, node, preds)
            if node.op == "Add" and len(preds) > 1:
                hint = _merge_hint(g, node, preds) or hint     # names the projection needed
            sink.diagnostics.append(Diagnostic(f"{node.op} at {name}: {e.message}", node.attr_span(e.attr),
                                               hint, notes))
    if not sink and not g.outputs:
        sink.add("the network has no output")
    _sign_warnings(g, failed, sink)
    sink.diagnostics.sort(key=lambda d: (d.span is None, d.span.line if d.span else 0, d.span.col if d.span else 0))
    g.warnings = sink.warnings
    sink.raise_if_any()
    return g


def _sign_warnings(g, failed, sink):
    """Warn where an op that assumes non-negative input (StochasticPool: p_i = a_i / Σ a_k, as
    after a ReLU) gets one not known to be: decided by each spec's nonnegative_output."""
    nonneg = {}
    for name in g.topo():
        if name in failed:
            continue
        node, preds = g[name], g.preds(name)
        spec = ops.get(node.op)
        ins = [nonneg.get(p, False) for p in preds]
        nonneg[name] = bool(preds) and spec.nonnegative_output(node.attrs, ins)
        if node.op == "StochasticPool" and preds and not ins[0]:
            src = _sign_origin(g, preds[0], nonneg)
            sink.warn(f"StochasticPool at {name}: its input is not known to be non-negative "
                      f"({src.name}, {'an' if src.op[0] in 'AEIOU' else 'a'} {src.op}{_act_text(src)}, "
                      f"can output negative values)", node.span,
                      "the lecture's p_i = a_i / Σ a_k assumes activations after a ReLU: put a ReLU before it",
                      notes=_used_at(g, node))


def _sign_origin(g, name, nonneg):
    """The layer a possibly negative value comes from: back through the ops that only pass
    their inputs' sign on (pools, Dropout, Concat, ...) to one that makes it."""
    for _ in range(len(g)):
        node = g[name]
        spec = ops.get(node.op)
        bad = [p for p in g.preds(name) if not nonneg.get(p, False)]
        if spec.output_sign != "inputs" or not bad:
            return node
        name = bad[0]
    return g[name]


def _act_text(node):
    act = node.attrs.get("act")
    return "" if act is None else (" without an activation" if act == "none" else f" with act={act}")


def _receptive_field(g, node, spec, a, shapes, preds):
    """rf/jump of node from its inputs. A windowed layer with a second input (a Conv's fused
    residual) applies its window to the first only: the residual is added after it. The jump
    comes from the full-size inputs: a per-channel operand (squeeze-and-excitation's GAP branch,
    1x1) says nothing about the stride between the map's pixels."""
    if not preds:
        node.rf, node.jump = (1, 1), (Fraction(1), Fraction(1))
        return
    kh, kw, sh, sw = spec.window(a, shapes)
    windowed = preds[:1] if len(preds) > 1 and (kh, kw, sh, sw) != (1, 1, 1, 1) else preds

    def area(p):
        shp = g[p].shape
        return shp[1] * shp[2] if shp and len(shp) == 3 else 0
    big = max(area(p) for p in windowed)
    rf = tuple(max(g[p].rf[i] for p in windowed) for i in range(2))
    jump = tuple(max(g[p].jump[i] for p in windowed if area(p) == big) for i in range(2))
    r = tuple(max([rf[i] + (k - 1) * jump[i]] + [g[p].rf[i] for p in preds if p not in windowed])
              for i, k in enumerate((kh, kw)))
    node.rf = tuple(int(x) if Fraction(x).denominator == 1 else float(x) for x in r)
    node.jump = (jump[0] * Fraction(sh), jump[1] * Fraction(sw))


def _spatial(shape):
    return shape_str(shape[1:]) if shape and len(shape) == 3 else shape_str(shape)


def _provenance(g, preds):
    """Where each merge input got its size: the nearest layer that changed it, with the arithmetic."""
    notes = []
    size = _spatial
    if len({_spatial(g[p].shape) for p in preds}) == 1:    # same size: the channels differ
        size = shape_str
    for i, p in enumerate(preds):
        node, steps = g[p], 0
        while steps < 50:
            ins = g.preds(node.name)
            if not ins:
                break
            src = g[ins[0]]
            if src.shape and node.shape and size(src.shape) != size(node.shape):
                break
            node, steps = src, steps + 1
        line = f"input {i + 1} ({p}) is {size(g[p].shape)}"
        if g.preds(node.name):
            spec = ops.get(node.op)
            arith = [x for x in spec.explain(node.attrs, [g[q].shape for q in g.preds(node.name)], node.shape)
                     if x.startswith("H:") or "=" in x and "param" not in x]
            where = f" (line {node.span.line})" if node.span else ""
            line += f": {node.name}{where} made it {size(node.shape)}"
            if arith and size is _spatial:
                line += " — " + arith[0].removeprefix("H: ")
        else:
            line += f", the size of the input {node.name} (nothing on this path changes it)"
        notes.append(line)
    return notes


def _used_at(g, node):
    """'in block Bottleneck (layer2.0), used at f.net:14:1' for each enclosing instance,
    innermost first (at most three): the mistake may be in the block's arguments."""
    spans = getattr(g, "block_spans", {})
    parts = node.scope.split(".") if node.scope else []
    out = []
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in spans:
            out.append(f"in block {g.blocks.get(prefix, '?')} ({prefix}), used at {spans[prefix]}")
    return out[:2] + out[-1:] if len(out) > 3 else out


def _merge_hint(g, node, preds):
    if len(preds) < 2:
        return None
    sizes = [g[p].shape for p in preds]
    full = [s for s in sizes if len(s) == 3 and tuple(s[1:]) != (1, 1)]
    if node.op in ("Add", "Mul") and full and len(full) < len(sizes):      # a per-channel operand
        return (f"a per-channel operand (Cx1x1 or C) is broadcast over the map, so it needs the map's "
                f"{full[0][0]} channels: e.g. GAP - Conv({full[0][0]}, 1) or FC({full[0][0]}) on that branch")
    if node.op == "Add" and len({s[1:] for s in sizes if len(s) == 3}) > 1:
        big, small = max(sizes, key=lambda s: s[1]), min(sizes, key=lambda s: s[1])
        if big[1] % small[1] == 0:
            s = big[1] // small[1]
            return (f"the paths differ by a factor of {s}: a stride-{s} 1x1 projection on the shortcut? "
                    f"e.g. [ main | Conv({small[0]}, 1, stride={s}) ] - Add")
        return "both paths must end at the same size; check padding (pad=same) and strides"
    if node.op == "Add" and len({s[0] for s in sizes if len(s) == 3}) > 1:
        return (f"both paths must have the same channels: a 1x1 projection on the shortcut? "
                f"e.g. [ main | Conv({sizes[0][0]}, 1) ] - Add")
    if node.op == "Add" and all(len(s) == 1 for s in sizes):
        return f"both paths must have the same features: an FC({sizes[0][0]}) on the shortcut?"
    if node.op == "Add":
        return None
    if node.op == "Concat":
        return "concatenated maps must have the same height and width; crop or pad one path (Crop, Pad)"
    return None


# ---------------------------------------------------------------- totals

def totals(g: Graph) -> dict:
    nodes = [n for n in g.nodes() if n.shape is not None]
    return {
        "total_params": sum(n.n_params for n in nodes),
        "total_macs": sum(n.macs for n in nodes),
        "activation_bytes": sum(prod(n.shape) * BYTES for n in nodes),
        "weight_bytes": sum((prod(s) for n in nodes for s in list(n.params.values()) +
                             list(getattr(n, "buffers", {}).values())), 0) * BYTES,
    }
