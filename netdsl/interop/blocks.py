"""Repeated subgraphs as `block`s: an imported ResNet-50 written like netdsl/zoo/resnet50.net.

`write_with_blocks(net)` has the contract of `netwriter.write` (text, {Layer.name: netdsl name})
and uses it for all the text. It

1. cuts the network (one input) at its articulation values: a layer after which nothing
   reads any earlier value — a ResNet block's final ReLU, an Inception module's Concat;
2. takes each piece between two cuts (a segment: one value in, one out) of 3 or more layers
   and keys it by its structure: the ops, the wiring, and every argument that is not an
   integer; segments with the same key and at least two instances become one block;
3. makes the integers that differ between instances block parameters: slots with the same
   values in every instance share one parameter, a slot that is always k times another is
   written `c*k`, slots equal everywhere stay literals;
4. writes the block body with netwriter (a Net whose input is the block's input), labelling
   each layer with the tail of the first instance's layer names (`layer1.1.conv1` -> `conv1`),
   and the network with one labelled call per instance (`layer1_1:AddBlock(64)`), whose
   layers are then named `layer1_1.conv1` — the names returned for the weights.

Anything this cannot express (a body that would need a second statement from the block's
input) keeps that group flat; the caller parses the result and falls back to the flat text if
it does not check.
"""
from __future__ import annotations

import re

from .. import ops
from .netwriter import MERGES, Layer, Net, sanitize, write

MIN_LAYERS = 3


def _canon(op):
    s = ops.lookup(op)
    return s.name if s is not None else op


def _is_act(l):
    spec = ops.lookup(l.op)
    return spec is not None and "elementwise" in spec.flags and "has_weights" not in spec.flags \
        and len(l.inputs) == 1 and _canon(l.op) not in MERGES


def _cuts(net: Net):
    """Indices i such that layer i's value is the only one of layers <= i read after i."""
    last = {}
    for i, l in enumerate(net.layers):
        for v in l.inputs:
            last[v] = max(last.get(v, -1), i)
    n = len(net.layers)
    for o in net.outputs:
        last[o] = n
    for name, _, _ in net.inputs:
        last.setdefault(name, -1)
    cuts = []
    reach = max([last.get(nm, -1) for nm, _, _ in net.inputs] or [-1])
    for i, l in enumerate(net.layers):
        if reach <= i and last.get(l.name, -1) >= i:
            cuts.append(i)
        reach = max(reach, last.get(l.name, -1))
    return cuts


def _values(l: Layer):
    """[(attr name, value, positional?)] in the op's attribute order; integer attributes left
    out take their default (so stride=1 and stride=2 instances are one block with a stride)."""
    spec = ops.lookup(l.op)
    names = [a.name for a in spec.attrs] if spec is not None else []
    out = [(k, v, True) for k, v in zip(names, l.args)]
    kw = dict(l.kwargs)
    for a in (spec.attrs if spec is not None else ()):
        if a.name in kw:
            out.append((a.name, kw.pop(a.name), False))
        elif a.name not in names[:len(l.args)] and isinstance(a.default, int) and \
                not isinstance(a.default, bool) and a.name in ("stride", "dilation", "groups", "pad"):
            out.append((a.name, a.default, False))
    out += [(k, v, False) for k, v in kw.items()]
    return out


def _default(l, k):
    spec = ops.lookup(l.op)
    for a in (spec.attrs if spec is not None else ()):
        if a.name == k:
            return a.default
    return object()


def _slots(l: Layer):
    """(structure key of a layer, its integer slots as [(slot name, value)])."""
    key, ints = [_canon(l.op)], []
    vals = [(k, v) for k, v, _ in _values(l)]
    for i, (k, v) in enumerate(vals):
        tag = k
        if isinstance(v, int) and not isinstance(v, bool):
            key.append((tag, "int"))
            ints.append((k, v))
        else:
            key.append((tag, repr(v)))
    return tuple(key), ints


def _segment_key(seg, entry):
    """Structure of a segment: per layer its key and its inputs as segment positions."""
    idx = {l.name: i for i, l in enumerate(seg)}
    key, ints = [], []
    for l in seg:
        k, iv = _slots(l)
        ins = tuple(-1 if v == entry else idx[v] for v in l.inputs)
        key.append((k, ins))
        ints.append(iv)
    return tuple(key), ints


def _common_prefix(names):
    parts = [n.split(".") for n in names]
    out = []
    for col in zip(*parts):
        if len(set(col)) != 1:
            break
        out.append(col[0])
    return ".".join(out)


def _params(instances):
    """For a group of instances (each: list over layers of [(slot, value)]), the text of every
    slot: a literal, a parameter name or `p*k`; and the parameter names in order with their
    values per instance."""
    flat = [[(li, si, k, v) for li, layer in enumerate(inst) for si, (k, v) in enumerate(layer)]
            for inst in instances]
    nslots = len(flat[0])
    vectors = [tuple(inst[j][3] for inst in flat) for j in range(nslots)]
    params, pvec, text = [], [], {}
    names_used = {}
    for j, vec in enumerate(vectors):
        li, si, k, _ = flat[0][j]
        if len(set(vec)) == 1:
            text[(li, si)] = vec[0]
            continue
        if vec in pvec:
            text[(li, si)] = params[pvec.index(vec)]
            continue
        for p, u in zip(params, pvec):
            if all(x != 0 for x in u) and all(a % b == 0 for a, b in zip(vec, u)):
                ratios = {a // b for a, b in zip(vec, u)}
                if len(ratios) == 1 and next(iter(ratios)) > 1:
                    text[(li, si)] = f"{p}*{next(iter(ratios))}"
                    break
        else:
            base = {"out_channels": "c", "kernel": "k", "groups": "g"}.get(k, k)
            n = names_used.get(base, 0)
            names_used[base] = n + 1
            name = base if n == 0 else f"{base}{n + 1}"
            params.append(name)
            pvec.append(vec)
            text[(li, si)] = name
    return text, params, pvec


def write_with_blocks(net: Net):
    if len(net.inputs) != 1 or len(net.layers) < 2 * MIN_LAYERS:
        return write(net)
    cuts = _cuts(net)
    segs, prev = [], -1
    for c in cuts:
        seg = net.layers[prev + 1:c + 1]
        if segs and len(seg) == 1 and _is_act(seg[0]) and segs[-1][1] - segs[-1][0] > 1:
            segs[-1] = (segs[-1][0], c)            # the ReLU after a block's Add joins it
        else:
            segs.append((prev, c))
        prev = c
    entry_of = lambda a: net.inputs[0][0] if a < 0 else net.layers[a].name
    groups = {}
    for a, b in segs:
        seg = net.layers[a + 1:b + 1]
        if len(seg) < MIN_LAYERS or not any(l.op in MERGES or _canon(l.op) in MERGES for l in seg):
            continue
        key, ints = _segment_key(seg, entry_of(a))
        groups.setdefault(key, []).append((a, b, ints))
    groups = {k: v for k, v in groups.items() if len(v) >= 2}
    if not groups:
        return write(net)

    blocks_text, block_of_seg, bnames = [], {}, set()
    for key, insts in sorted(groups.items(), key=lambda kv: kv[1][0][0]):
        a0, b0, _ = insts[0]
        seg0 = net.layers[a0 + 1:b0 + 1]
        ml = next((l for l in reversed(seg0) if _canon(l.op) in MERGES), None)
        merge = _canon(ml.op) if ml is not None else ""
        base = {"Add": "ResBlock", "Concat": "ConcatBlock", "Mul": "GateBlock"}.get(merge, "Block")
        if merge == "Add" and entry_of(a0) not in ml.inputs:
            base = "ProjResBlock"              # the shortcut has layers of its own (a projection)
        bname, k = base, 2
        while bname in bnames or ops.lookup(bname) is not None:
            bname, k = f"{base}{k}", k + 1
        bnames.add(bname)
        text, params, pvec = _params([i[2] for i in insts])
        # the body: a Net whose input is the block's input, labels from the first instance
        prefix = _common_prefix([l.name for l in seg0])
        inner = {}
        body = Net(name=bname)
        entry = "x__block_input"
        body.add_input(entry, (1, 1, 1))
        rename = {entry_of(a0): entry}
        taken = set()
        for li, l in enumerate(seg0):
            tail = l.name[len(prefix):].lstrip(".") if prefix and l.name.startswith(prefix) else l.name
            spec = ops.lookup(l.op)
            slot_i = 0
            args, kwargs = [], {}
            for kk, v, positional in _values(l):
                if isinstance(v, int) and not isinstance(v, bool):
                    v = text[(li, slot_i)]
                    slot_i += 1
                if positional:
                    args.append(v)
                elif not (isinstance(v, int) and v == _default(l, kk)):
                    kwargs[kk] = v
            weighted = spec is not None and "has_weights" in spec.flags
            lab = None
            if weighted and tail:
                lab = sanitize(tail)
                while lab in taken:
                    lab += "_"
                taken.add(lab)
            body.add(Layer(l.name, l.op, tuple(args), dict(kwargs), tuple(rename.get(v, v) for v in l.inputs),
                           label=lab))
        body.outputs = [seg0[-1].name]
        try:
            btext, bl = write(body)
        except ValueError:
            continue
        lines = [ln for ln in btext.splitlines() if ln.strip() and not ln.startswith(("#", "input "))]
        if any(re.search(rf"\b{entry}\b", ln) for ln in lines) or any(ln.startswith("output") for ln in lines):
            continue                    # the body needs its input by name: keep this group flat
        sig = ", ".join(params)
        blocks_text.append(f"block {bname}({sig}) {{\n" + "\n".join("  " + ln for ln in lines) + "\n}")
        for j, (a, b, _) in enumerate(insts):
            seg = net.layers[a + 1:b + 1]
            pre = _common_prefix([l.name for l in seg]) or f"{bname.lower()}{j}"
            inner[(a, b)] = (bname, tuple(vec[j] for vec in pvec), pre,
                             {l.name: bl.get(l0.name) for l, l0 in zip(seg, seg0)})
        block_of_seg.update(inner)
    if not block_of_seg:
        return write(net)

    # the network with one call per instance
    main = Net(name=net.name, header=list(net.header), inputs=list(net.inputs))
    exit_to_call, inside = {}, {}
    i = 0
    seg_at = {a + 1: (a, b) for (a, b) in block_of_seg}
    while i < len(net.layers):
        if i in seg_at:
            a, b = seg_at[i]
            bname, vals, pre, lab = block_of_seg[(a, b)]
            entry = entry_of(a)
            call = f"{pre}"
            cname = call
            while any(l.name == cname for l in main.layers):
                cname += "_"
            main.add(Layer(cname, bname, vals, {}, (exit_to_call.get(entry, entry),), label=sanitize(call)))
            exit_to_call[net.layers[b].name] = cname
            for l in net.layers[a + 1:b + 1]:
                inside[l.name] = (cname, lab.get(l.name))
            i = b + 1
            continue
        l = net.layers[i]
        main.add(Layer(l.name, l.op, l.args, l.kwargs, tuple(exit_to_call.get(v, v) for v in l.inputs),
                       label=l.label, comment=l.comment))
        i += 1
    main.outputs = [exit_to_call.get(o, o) for o in net.outputs]
    text, names = write(main)
    # blocks after the header comments, before the inputs
    lines = text.splitlines()
    k = 0
    while k < len(lines) and (lines[k].startswith("#") or not lines[k].strip()):
        k += 1
    text = "\n".join(lines[:k] + ["\n\n".join(blocks_text), ""] + lines[k:]) + "\n"
    out = dict(names)
    for lname, (cname, lab) in inside.items():
        if lab is not None:
            out[lname] = f"{names[cname]}.{lab}"
    return text, out


__all__ = ["write_with_blocks"]
