"""Write a network as `.net` text a person would want to read.

Importers describe a network as a `Net`: its inputs and a list of `Layer`s (a netdsl op name,
arguments, and the names of the values each one reads, in slot order), in topological order.
`write` turns that into the language's own shapes:

    conv1:Conv(64, 7, stride=2, pad=3, bias=false) - bn1:BN - ReLU - MaxPool(3, 2, pad=1)
    [ c1:Conv(64, 1, bias=false) - b1:BN - ReLU - ... - b3:BN
    | down:Conv(256, 1, bias=false) - down_bn:BN ] - Add - ReLU

- a value read by exactly one layer flows on in the chain (`a - b - c`);
- a value read by several layers whose paths meet again at one merge is written as parallel
  branches, `[ branch | branch ] - Merge`, in the merge's slot order (`_` where the merge reads
  the forked value itself, as a residual shortcut does); branches nest;
- anything else (a U-Net skip, a value read far away) is labelled where it is made, and the
  layer that reads it later starts its chain from the label, or lists it as a branch
  (`[ _ | enc1 ] - Concat`);
- a layer is labelled when it has weights (so its parameters get a name the importer can
  rename its weights to), when it is referenced, when it is an output, or when asked
  (`Layer.label`); activations and pools in a chain stay unlabelled.

`write` returns the text and `{Layer.name: netdsl layer name}` for every labelled layer. The
text is written flat (no blocks, no scopes), so a labelled layer's netdsl name is its label.

What this does not do: find repeated subgraphs and write them as blocks (that needs the graph's
structure, not its text), and check the network (the caller parses the text: an import is
checked like any hand-written file).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from .. import ops

KEYWORDS = {"input", "output", "const", "default", "import", "block", "if", "else", "and", "or",
            "not", "true", "false"}
MERGES = {"Concat", "Add", "Mul", "Crop"}          # ops written as `[ ... | ... ] - Op`


def _merge(l) -> bool:
    """A layer written as `[ ... | ... ] - Op`: a MERGES op, but not a Crop of one input."""
    return l.op in MERGES and not (l.op == "Crop" and len(l.inputs) == 1)
MAX_LINE = 100                                     # a chain longer than this breaks after a ` - `


@dataclass
class Layer:
    """One layer: `op` is a netdsl op name (or alias), `inputs` the values it reads in slot order
    (producer layer names or network input names)."""
    name: str
    op: str
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
    inputs: tuple = ()
    label: str | None = None       # the label to use (else one is made from `name` when needed)
    comment: str = ""


@dataclass
class Net:
    name: str = "model"
    header: list = field(default_factory=list)      # comment lines at the top (without '#')
    inputs: list = field(default_factory=list)      # (name, shape, options dict)
    layers: list = field(default_factory=list)
    outputs: list = field(default_factory=list)     # value names; default: the last layer

    def add_input(self, name: str, shape, **options):
        self.inputs.append((name, tuple(int(d) for d in shape), options))

    def add(self, layer: Layer) -> Layer:
        self.layers.append(layer)
        return layer


# ---------------------------------------------------------------- values and names

def fmt_value(v) -> str:
    """An argument value in the language's syntax."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, tuple)):
        inner = ", ".join(fmt_value(x) for x in v)
        return f"({inner},)" if len(v) == 1 else f"({inner})"
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError(f"the language has no literal for {v}")
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v)}.0"
        return repr(v)
    if hasattr(v, "item"):                      # numpy scalars
        return fmt_value(v.item())
    return str(v)


def fmt_call(layer: Layer) -> str:
    parts = [fmt_value(a) for a in layer.args]
    parts += [f"{k}={fmt_value(v)}" for k, v in layer.kwargs.items()]
    return f"{layer.op}({', '.join(parts)})" if parts else layer.op


def _reserved() -> set:
    words = set(KEYWORDS)
    for spec in ops.all_specs().values():
        words.add(spec.name)
        words.update(spec.aliases)
    return words


def sanitize(name: str) -> str:
    """A valid label from any name: letters, digits and `_`, not starting with a digit."""
    s = re.sub(r"[^A-Za-z0-9_]+", "_", name).strip("_")
    s = re.sub(r"_+", "_", s) or "layer"
    return s if not s[0].isdigit() else f"l{s}"


class _Labels:
    def __init__(self, taken=()):
        self.reserved = _reserved()
        self.lower_reserved = {w.lower() for w in KEYWORDS}
        self.used = set(taken)

    def make(self, want: str) -> str:
        base = sanitize(want)
        if base in self.reserved or base.lower() in self.lower_reserved:
            base = base[0].lower() + base[1:] if base[0].isupper() else base + "_"
            if base in self.reserved or base.lower() in self.lower_reserved:
                base += "_"
        label, n = base, 2
        while label in self.used:
            label, n = f"{base}_{n}", n + 1
        self.used.add(label)
        return label


# ---------------------------------------------------------------- structure

class _Writer:
    def __init__(self, net: Net):
        self.net = net
        self.layers = {l.name: l for l in net.layers}
        if len(self.layers) != len(net.layers):
            dup = sorted({l.name for l in net.layers if sum(m.name == l.name for m in net.layers) > 1})
            raise ValueError(f"layer names must be unique: {', '.join(dup)}")
        self.input_names = [n for n, _, _ in net.inputs]
        self.order = {l.name: i for i, l in enumerate(net.layers)}
        self.consumers: dict[str, list[str]] = {v: [] for v in [*self.input_names, *self.layers]}
        for l in net.layers:
            for v in l.inputs:
                if v not in self.consumers:
                    raise ValueError(f"layer {l.name!r} reads {v!r}, which is neither an input nor an "
                                     f"earlier layer")
                if v in self.layers and self.order[v] >= self.order[l.name]:
                    raise ValueError(f"layer {l.name!r} reads {v!r}, which comes after it")
                self.consumers[v].append(l.name)
        self.outputs = list(net.outputs) or ([net.layers[-1].name] if net.layers else [])
        self.emitted: set[str] = set()
        self.referenced: set[str] = set()

    # a unit is either one single-input layer after v, or a whole fork-merge region after v
    def _is_simple(self, name: str) -> bool:
        l = self.layers[name]
        return len(l.inputs) == 1 and not _merge(l)

    def _region(self, v: str, depth: int = 0):
        """v forks; if every consumer's path meets the others at one merge that reads nothing
        else, return ("fork", merge, branches) where each branch is a list of units (empty for
        `_`)."""
        if depth > 8:
            return None
        cons = self.consumers[v]
        if len(cons) < 2:
            return None
        # the merge every branch must end in: the earliest one all consumers reach
        merge = self._find_merge(v)
        if merge is None:
            return None
        branches = []
        ends = []
        for slot_value in self.layers[merge].inputs:
            if slot_value == v:
                branches.append([])
                ends.append(v)
                continue
            found = None
            for c in cons:
                if c == merge:
                    continue
                p = self._path_from(c, merge, depth)
                if p is not None and p[1] == slot_value:
                    found = p
                    break
            if found is None:
                return None
            branches.append(found[0])
            ends.append(found[1])
        used = set()
        for b in branches:
            used |= self._units_layers(b)
        first_layers = {c for c in cons if c != merge}
        if not first_layers <= used or len(ends) != len(set(ends)) or len(branches) < 2:
            return None
        return ("fork", merge, branches)

    def _path_from(self, first, merge, depth):
        """The branch that starts with layer `first` and ends at an input of `merge`: (units, end)
        or None when a value inside it is read elsewhere or is an output."""
        if not self._is_simple(first):
            return None
        units, cur = [("layer", first)], first
        if first in self.outputs:
            return None
        while merge not in self.consumers[cur] or len(self.consumers[cur]) != 1:
            if len(self.consumers[cur]) > 1:
                region = self._region(cur, depth + 1)
                if region is None:
                    return None
                units.append(region)
                cur = region[1]
                continue
            if not self.consumers[cur]:
                return None
            nxt = self.consumers[cur][0]
            if not self._is_simple(nxt) or nxt in self.outputs:
                return None
            units.append(("layer", nxt))
            cur = nxt
        return units, cur

    def _find_merge(self, v):
        """The earliest merge that every consumer of v reaches, or None."""
        common = set.intersection(*(self._reachable(c) for c in self.consumers[v]))
        merges = [n for n in common if _merge(self.layers[n])]
        return min(merges, key=self.order.get) if merges else None

    def _reachable(self, start, limit=1 << 16):
        out, stack = set(), [start]
        while stack and len(out) < limit:
            n = stack.pop()
            if n in out:
                continue
            out.add(n)
            stack.extend(self.consumers.get(n, ()))
        return out

    def _units_layers(self, units) -> set:
        s = set()
        for u in units:
            s.add(u[1])
            if u[0] == "fork":
                for b in u[2]:
                    s |= self._units_layers(b)
        return s

    # ---------------------------------------------------------------- walking

    def _mark(self, units):
        for n in self._units_layers(units):
            self.emitted.add(n)

    def chain_from(self, v: str):
        """The statement that starts at value v: units until the chain cannot go on."""
        units, cur = [], v
        while True:
            cons = [c for c in self.consumers[cur] if c not in self.emitted]
            if not cons:
                break
            if len(self.consumers[cur]) > 1 and cur not in self.outputs:
                region = self._region(cur)
                if region is not None and self._ready(region):
                    units.append(region)
                    self._mark([region])
                    cur = region[1]
                    continue
            if len(self.consumers[cur]) > 1 or cur in self.outputs:
                self.referenced.add(cur)
            c = min(cons, key=self.order.get)
            layer = self.layers[c]
            if _merge(layer) or len(layer.inputs) != 1:
                if any(x not in self.emitted and x not in self.input_names for x in layer.inputs if x != cur):
                    self.referenced.add(cur)
                    break
                units.append(("merge", c, cur))
                for x in layer.inputs:
                    if x != cur:
                        self.referenced.add(x)
                self.emitted.add(c)
                cur = c
                continue
            units.append(("layer", c))
            self.emitted.add(c)
            cur = c
        return units, cur

    def _ready(self, region) -> bool:
        """Every input of the region's merge is made inside it (or is the forked value)."""
        inside = set().union(*(self._units_layers(b) for b in region[2]))
        return all(x in inside or x in self.emitted or x in self.input_names
                   for x in self.layers[region[1]].inputs)

    def walk(self):
        """Statements: (start value, units)."""
        stmts = []
        for name in self.input_names:
            if self.consumers[name]:
                stmts.append((name, *self.chain_from(name)))
        progress = True
        while progress and len(self.emitted) < len(self.layers):
            progress = False
            for l in self.net.layers:
                if l.name in self.emitted:
                    continue
                if all(x in self.emitted or x in self.input_names for x in l.inputs):
                    if len(l.inputs) == 1 and not _merge(l):
                        self.referenced.add(l.inputs[0])
                        units, end = self.chain_from(l.inputs[0])
                        stmts.append((l.inputs[0], units, end))
                    else:                           # a merge whose inputs all came from elsewhere
                        for x in l.inputs:
                            self.referenced.add(x)
                        self.emitted.add(l.name)
                        units, end = self.chain_from(l.name)
                        stmts.append((None, [("merge", l.name, None)] + units, end))
                    progress = True
                    break
        if len(self.emitted) < len(self.layers):
            left = [l.name for l in self.net.layers if l.name not in self.emitted]
            raise ValueError(f"layers that read nothing: {', '.join(left[:5])}")
        return stmts

    # ---------------------------------------------------------------- text

    def labels(self):
        taken = set(self.input_names)
        lab = _Labels(taken)
        out = {}
        for l in self.net.layers:                   # asked-for labels first, so they win
            if l.label:
                out[l.name] = lab.make(l.label)
        for l in self.net.layers:
            if l.name in out:
                continue
            spec = ops.lookup(l.op)
            weighted = spec is not None and "has_weights" in spec.flags
            if weighted or l.name in self.referenced:
                out[l.name] = lab.make(l.name)
        return out

    def ref(self, v, labels):
        return v if v in self.input_names else labels[v]

    def render_units(self, units, labels, indent="  ") -> list[str]:
        """One text per unit; a fork too long for a line puts each branch on its own line."""
        parts = []
        for u in units:
            if u[0] == "layer":
                parts.append(self.render_layer(u[1], labels))
                continue
            if u[0] == "fork":
                _, merge, branches = u
                inner = indent + "  "
                texts = [_wrap(self.render_units(b, labels, inner + "  "), inner + "  ") if b else "_"
                         for b in branches]
            else:                                    # a merge reading the chain's value and references
                _, merge, cur = u
                texts = ["_" if x == cur else self.ref(x, labels) for x in self.layers[merge].inputs]
            tail = " ] - " + self.render_layer(merge, labels)
            flat = "[ " + " | ".join(texts) + tail
            if "\n" not in flat and len(flat) + len(indent) <= MAX_LINE:
                parts.append(flat)
            else:
                parts.append("[ " + f"\n{indent}| ".join(texts) + tail)
        return parts

    def render_layer(self, name, labels) -> str:
        l = self.layers[name]
        text = fmt_call(l)
        return f"{labels[name]}:{text}" if name in labels else text


def _wrap(parts: list[str], indent: str = "  ") -> str:
    """Join a chain's parts with ` - `, breaking the line before a ` - ` when it gets long."""
    lines, cur = [], ""
    for i, p in enumerate(parts):
        first = p.split("\n", 1)[0]
        if cur and (len(cur) + 3 + len(first) > MAX_LINE or "\n" in p):
            lines.append(cur)
            cur = indent + "- " + p
        else:
            cur += p if i == 0 else " - " + p
        if "\n" in cur:                              # a multi-line fork: go on after its last line
            head, _, cur = cur.rpartition("\n")
            lines.append(head)
    lines.append(cur)
    return "\n".join(lines)


def write(net: Net) -> tuple[str, dict]:
    """The `.net` text of `net`, and {Layer.name: netdsl layer name} for every labelled layer."""
    w = _Writer(net)
    stmts = w.walk()
    ends = [end for _, units, end in stmts if units]
    needs_output_line = len(w.outputs) > 1 or (ends and w.outputs and ends[-1] != w.outputs[0])
    if needs_output_line:
        w.referenced.update(o for o in w.outputs if o not in w.input_names)
    labels = w.labels()
    out = [f"# {h}".rstrip() for h in net.header]
    if out:
        out.append("")
    for name, shape, opts in net.inputs:
        dims = "x".join(str(d) for d in shape)
        extra = ", ".join(f"{k}={fmt_value(v)}" for k, v in opts.items() if v is not None)
        out.append(f"input {name}: {dims}" + (f" ({extra})" if extra else ""))
    out.append("")
    last_end = net.inputs[0][0] if len(net.inputs) == 1 else None
    for start, units, end in stmts:
        parts = w.render_units(units, labels, "    ")
        if not parts:
            continue
        if start is not None and start != last_end:
            parts[0] = f"{w.ref(start, labels)} - {parts[0]}"
        text = _wrap(parts)
        comments = [w.layers[n].comment for n in w._units_layers(units) if w.layers[n].comment]
        out.append(text + (f"   # {'; '.join(comments)}" if comments and "\n" not in text else ""))
        last_end = end
    if needs_output_line:
        out.append("output " + ", ".join(w.ref(o, labels) for o in w.outputs))
    return "\n".join(out).rstrip() + "\n", {n: labels[n] for n in labels}


__all__ = ["Net", "Layer", "write", "fmt_value", "fmt_call", "sanitize"]
