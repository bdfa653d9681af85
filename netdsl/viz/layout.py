"""A layered (Sugiyama-style) layout with nested clusters, for drawing a network top to bottom.

    lay = layout(boxes, edges, clusters)
    lay.boxes["conv1"]      # (x, y, w, h) of a box, top-left corner
    lay.frames["layer1"]    # (x, y, w, h) of a cluster's rounded frame
    lay.routes[i]           # [(x, y), ...] the points edge i passes through, source to target

`boxes` maps a key to (width, height, cluster) in a topological order; `clusters` maps a
cluster key to (its parent cluster, the width its label needs) — '' is the top level.

The steps, each the simple version of the classic one:
1. layers: longest path from the sources (an input sits at the top, every box below all of
   its inputs);
2. an edge spanning several layers gets a virtual point in each layer it crosses, so it is
   routed between the boxes, never through one; the point belongs to the innermost cluster
   holding both ends;
3. order within a layer: barycenter sweeps (down, up, ...), sorting hierarchically — a
   cluster is one item among its siblings, keyed by the mean of its members, the same key in
   every layer — so a cluster's members stay contiguous and sibling clusters never swap;
4. x: each cluster is placed inside its parent as one rigid item spanning its layers; within
   a cluster the positions solve the separation constraints twice (packed left, packed right)
   and take the mean, then single boxes slide toward their neighbours (straight chains);
5. y: one row per layer, taller gaps where cluster labels start.

What it does not do: minimize crossings exactly, or route edges around clusters — an edge
into a cluster crosses its frame, which is what a reader expects of a block diagram.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx

PAD = 10            # frame margin around a cluster's content
LABEL_H = 17        # height of a cluster's label line
GAP = 18            # between two boxes of a layer
VGAP = 40           # between two layers (edge labels live here)
VIRTUAL_W = 6       # width a passing edge takes in a layer
MARGIN = 16


@dataclass
class Layout:
    boxes: dict = field(default_factory=dict)     # key -> (x, y, w, h)
    frames: dict = field(default_factory=dict)    # cluster -> (x, y, w, h)
    routes: list = field(default_factory=list)    # per edge: [(x, y), ...]
    layer: dict = field(default_factory=dict)     # key -> layer index
    width: float = 0.0
    height: float = 0.0


def _chain(c, clusters):
    """Cluster ancestors of cluster `c`, outermost first, `c` included ('' excluded)."""
    out = []
    while c:
        out.append(c)
        c = clusters[c][0]
    return out[::-1]


def _lca(a, b, clusters):
    ca, cb = _chain(a, clusters), _chain(b, clusters)
    common = ""
    for x, y in zip(ca, cb):
        if x != y:
            break
        common = x
    return common


def layout(boxes: dict, edges: list, clusters: dict) -> Layout:
    keys = list(boxes)
    index = {k: i for i, k in enumerate(keys)}
    preds = {k: [] for k in keys}
    for u, v in edges:
        preds[v].append(u)
    # 1. longest-path layers, in the given topological order
    layer = {}
    for k in keys:
        layer[k] = max((layer[p] + 1 for p in preds[k]), default=0)
    # a source that is not the first (a constant) sits just above its first reader
    succs = {k: [] for k in keys}
    for u, v in edges:
        succs[u].append(v)
    for k in keys:
        if not preds[k] and succs[k] and layer[k] == 0 and index[k] != 0:
            layer[k] = max(0, min(layer[s] for s in succs[k]) - 1)
    n_layers = max(layer.values(), default=0) + 1

    # 2. leaves: boxes and virtual points; parent cluster of each
    parent = {k: boxes[k][2] for k in keys}
    width = {k: boxes[k][0] for k in keys}
    height = {k: boxes[k][1] for k in keys}
    leaf_layer = dict(layer)
    paths = []                      # per edge: the leaves it passes, source .. target
    up = {k: [] for k in keys}
    down = {k: [] for k in keys}
    for i, (u, v) in enumerate(edges):
        path = [u]
        owner = _lca(parent[u], parent[v], clusters)
        for L in range(layer[u] + 1, layer[v]):
            vk = ("~", i, L)
            parent[vk], width[vk], height[vk], leaf_layer[vk] = owner, VIRTUAL_W, 0, L
            index[vk] = index[u] + 0.5
            up[vk], down[vk] = [], []
            path.append(vk)
        path.append(v)
        for a, b in zip(path, path[1:]):
            down[a].append(b)
            up[b].append(a)
        paths.append(path)
    layers = [[] for _ in range(n_layers)]
    for k in sorted(leaf_layer, key=lambda k: index[k]):
        layers[leaf_layer[k]].append(k)

    # cluster ranges (layers) and membership
    under = {c: [] for c in clusters}
    for k in leaf_layer:
        for c in _chain(parent[k], clusters):
            under[c].append(k)
    under = {c: m for c, m in under.items() if m}
    live = [c for c in clusters if c in under]
    top = {c: min(leaf_layer[k] for k in under[c]) for c in live}
    bot = {c: max(leaf_layer[k] for k in under[c]) for c in live}
    uid = {}
    for k in list(leaf_layer) + live:
        uid[k] = len(uid)

    # 3. ordering by hierarchical barycenters
    pos = {}
    key = {}

    def hkey(k):
        return tuple((key[c], uid[c]) for c in _chain(parent[k], clusters)) + ((key[k], uid[k]),)

    for k in leaf_layer:
        key[k] = index[k]
    for c in live:
        key[c] = sum(index[k] for k in under[c]) / len(under[c])
    for L in layers:
        L.sort(key=hkey)
    for sweep in range(8):
        for L in layers:
            for i, k in enumerate(L):
                pos[k] = i - (len(L) - 1) / 2
        nb = up if sweep % 2 == 0 else down
        for L in layers:
            for k in L:
                other = down[k] if sweep % 2 == 0 else up[k]
                ns = nb[k] or other
                # ties (two items under the same neighbour) go the way the other side pulls
                second = sum(pos[n] for n in other) / len(other) if other else pos[k]
                key[k] = (sum(pos[n] for n in ns) / len(ns) if ns else pos[k]) + 1e-3 * second
        for path in paths:          # an edge's virtual points move as one column: no zigzag
            vs = path[1:-1]
            if vs:
                mean = sum(key[k] for k in vs) / len(vs)
                for k in vs:
                    key[k] = mean
        for c in live:
            key[c] = sum(key[k] for k in under[c]) / len(under[c])
        for L in layers:
            L.sort(key=hkey)

    # 4. x positions, cluster by cluster from the innermost
    children = {c: [] for c in [""] + live}
    for c in live:
        children[clusters[c][0] if clusters[c][0] in children else ""].append(c)
    direct = {c: [] for c in [""] + live}
    for k in leaf_layer:
        direct[parent[k] if parent[k] in direct else ""].append(k)
    rel = {}                        # leaf -> x of its left edge relative to the cluster placed last
    cwidth = {}

    def place(c):
        for cc in children[c]:
            place(cc)
        lo = top[c] if c else 0
        hi = bot[c] if c else n_layers - 1
        items_w = {k: width[k] for k in direct[c]}
        items_w.update({cc: cwidth[cc] for cc in children[c]})
        rows = []
        for L in range(lo, hi + 1):
            row = [k for k in direct[c] if leaf_layer[k] == L]
            row += [cc for cc in children[c] if top[cc] <= L <= bot[cc]]
            row.sort(key=lambda k: (key[k], uid[k]))
            rows.append(row)
        cg = nx.DiGraph()
        cg.add_nodes_from(items_w)

        def gap(a, b):
            return VIRTUAL_W if isinstance(a, tuple) and isinstance(b, tuple) else \
                GAP / 2 if isinstance(a, tuple) or isinstance(b, tuple) else GAP
        for row in rows:
            for a, b in zip(row, row[1:]):
                w = items_w[a] + gap(a, b)
                if not cg.has_edge(a, b) or cg.edges[a, b]["w"] < w:
                    cg.add_edge(a, b, w=w)
        order = list(nx.topological_sort(cg))
        xl = {k: 0.0 for k in order}
        for a in order:
            for b in cg.successors(a):
                xl[b] = max(xl[b], xl[a] + cg.edges[a, b]["w"])
        span = max((xl[k] + items_w[k] for k in order), default=0.0)
        xr = {k: span - items_w[k] for k in order}
        for a in reversed(order):
            for b in cg.successors(a):
                xr[a] = min(xr[a], xr[b] - cg.edges[a, b]["w"])
        x = {k: (xl[k] + xr[k]) / 2 for k in order}
        # single boxes and passing edges slide toward their neighbours (inside the bounds)
        left_of, right_of = {}, {}
        for row in rows:
            for a, b in zip(row, row[1:]):
                right_of.setdefault(a, []).append(b)
                left_of.setdefault(b, []).append(a)

        def center(n):
            if n in x:
                return x[n] + items_w[n] / 2
            for cc in children[c]:          # a leaf inside a child cluster
                if n in rel_c.get(cc, {}):
                    return x[cc] + rel_c[cc][n] + width[n] / 2
            return None
        rel_c = {cc: {k: rel[k] for k in under[cc]} for cc in children[c]}
        for it in range(24):
            for k in (direct[c] if it % 2 == 0 else direct[c][::-1]):
                cs = [center(n) for n in up[k] + down[k]]
                cs = [v for v in cs if v is not None]
                if not cs:
                    continue
                cs.sort()
                want = (cs[(len(cs) - 1) // 2] + cs[len(cs) // 2]) / 2 - items_w[k] / 2
                lo_x = max([x[a] + items_w[a] + gap(a, k) for a in left_of.get(k, [])], default=0.0)
                hi_x = min([x[b] - items_w[k] - gap(k, b) for b in right_of.get(k, [])],
                           default=span - items_w[k])
                x[k] = min(max(want, lo_x), max(lo_x, hi_x))
        inner = span
        pad = PAD if c else 0
        label_w = clusters[c][1] if c else 0
        shift = max(0.0, (label_w - inner) / 2)
        cwidth[c] = max(inner, label_w) + 2 * pad
        for k in direct[c]:
            rel[k] = pad + shift + x[k]
        for cc in children[c]:
            for k in under[cc]:
                rel[k] = pad + shift + x[cc] + rel[k]
            rel[cc] = pad + shift + x[cc]
            for d in _descendants(cc, children):
                rel[d] = pad + shift + x[cc] + rel[d]

    place("")

    # 5. y: rows, gaps that fit the labels of the clusters starting (and frames ending) there
    k_top, k_bot = {}, {}
    for c in reversed(_preorder(children)):
        k_top[c] = 1 + max((k_top[cc] for cc in children[c] if top[cc] == top[c]), default=0)
        k_bot[c] = 1 + max((k_bot[cc] for cc in children[c] if bot[cc] == bot[c]), default=0)
    starts = [0] * n_layers
    ends = [0] * n_layers
    for c in live:
        starts[top[c]] = max(starts[top[c]], k_top[c])
        ends[bot[c]] = max(ends[bot[c]], k_bot[c])
    row_h = [max((height[k] for k in L), default=0) for L in layers]
    row_y = []
    y = MARGIN + (LABEL_H + 4) * starts[0]
    for L in range(n_layers):
        if L:
            y += row_h[L - 1] + VGAP + (LABEL_H + 4) * starts[L] + 8 * ends[L - 1]
        row_y.append(y)
    out = Layout(layer=layer)
    for k in keys:
        x0 = MARGIN + rel[k]
        L = layer[k]
        out.boxes[k] = (x0, row_y[L] + (row_h[L] - height[k]) / 2, width[k], height[k])
    for c in live:
        x0 = MARGIN + rel[c]
        y0 = row_y[top[c]] - 4 - (LABEL_H + 4) * (k_top[c] - 1) - LABEL_H
        y1 = row_y[bot[c]] + row_h[bot[c]] + 8 * k_bot[c] - 2
        out.frames[c] = (x0, y0, cwidth[c], y1 - y0)
    # routes: through the virtual points, ports spread along the box sides
    vx = {k: MARGIN + rel[k] + VIRTUAL_W / 2 for k in leaf_layer if isinstance(k, tuple)}
    for path in paths:
        pts = []
        for k in path[1:-1]:
            L = leaf_layer[k]
            pts += [(vx[k], row_y[L]), (vx[k], row_y[L] + row_h[L])]
        out.routes.append(pts)
    _ports(out, edges, paths)
    out.width = MARGIN * 2 + cwidth[""]
    out.height = row_y[-1] + row_h[-1] + MARGIN + 8 * ends[-1]
    return out


def _descendants(c, children):
    out = []
    for cc in children[c]:
        out.append(cc)
        out += _descendants(cc, children)
    return out


def _preorder(children):
    out = []

    def walk(c):
        for cc in children[c]:
            out.append(cc)
            walk(cc)
    walk("")
    return out


def _ports(out, edges, paths):
    """Start and end points: each box's edges leave its bottom and enter its top at points
    spread in the order of where they go (or come from), so parallel edges do not coincide."""
    outgoing, incoming = {}, {}
    for i, (u, v) in enumerate(edges):
        outgoing.setdefault(u, []).append(i)
        incoming.setdefault(v, []).append(i)

    def toward(i, end):
        pts = out.routes[i]
        if pts:
            return pts[0][0] if end == "src" else pts[-1][0]
        other = edges[i][1] if end == "src" else edges[i][0]
        x, _, w, _ = out.boxes[other]
        return x + w / 2
    starts, ends = {}, {}
    for k, ids in outgoing.items():
        x, y, w, h = out.boxes[k]
        ids = sorted(ids, key=lambda i: toward(i, "src"))
        n = len(ids)
        for j, i in enumerate(ids):
            starts[i] = (x + w / 2 + (j - (n - 1) / 2) * min(14.0, w * 0.6 / max(n - 1, 1)), y + h)
    for k, ids in incoming.items():
        x, y, w, h = out.boxes[k]
        ids = sorted(ids, key=lambda i: toward(i, "dst"))
        n = len(ids)
        for j, i in enumerate(ids):
            ends[i] = (x + w * (j + 1) / (n + 1), y)
    for i in range(len(edges)):
        out.routes[i] = [starts[i]] + out.routes[i] + [ends[i]]
