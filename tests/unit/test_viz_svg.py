"""The built-in SVG drawing (netdsl/viz/svg.py, layout.py): it parses as XML, draws one box
per layer (or per collapsed block), every connection, no two boxes on top of each other, each
block frame around exactly its own boxes, the fused layers of an optimized graph marked; and
`netdsl graph -o x.svg` writes it where Graphviz is not installed. The expectations are worked
out from the graph itself (names, edges, block prefixes), not from the drawing code."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

import netdsl
from netdsl.cli import main
from netdsl.errors import NetDSLError
from netdsl.passes import optimize
from netdsl.viz.svg import to_svg

NS = "{http://www.w3.org/2000/svg}"
_MODELS = {}


def model(name):
    if name not in _MODELS:
        _MODELS[name] = netdsl.load(name)
    return _MODELS[name]


def parse(text):
    root = ET.fromstring(text)
    boxes, frames, edges = {}, {}, []
    for g in root.iter(NS + "g"):
        cls = (g.get("class") or "").split()
        if "node" in cls:
            r = g.find(NS + "rect")
            boxes[g.get("data-name")] = (tuple(float(r.get(k)) for k in ("x", "y", "width", "height")), g)
        elif "cluster" in cls:
            r = g.find(NS + "rect")
            frames[g.get("data-block")] = tuple(float(r.get(k)) for k in ("x", "y", "width", "height"))
        elif "edge" in cls:
            edges.append((g.get("data-src"), g.get("data-dst")))
    return root, boxes, frames, edges


def overlap(a, b):
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def inside(a, f):
    return f[0] <= a[0] and a[0] + a[2] <= f[0] + f[2] and f[1] <= a[1] and a[1] + a[3] <= f[1] + f[3]


def expected_box(name, blocks, depth):
    """The box a layer is drawn in: the block instance of nesting level `depth` whose name
    prefixes the layer's (level = how many block names prefix the block's own), else itself."""
    if depth is None:
        return name
    holders = sorted((b for b in blocks if name.startswith(b + ".")), key=len)
    return holders[depth - 1] if len(holders) >= depth else name


def check_geometry(graph, boxes, frames, depth):
    rects = [r for r, _ in boxes.values()]
    for i in range(len(rects)):
        for j in range(i + 1, len(rects)):
            assert not overlap(rects[i], rects[j]), (list(boxes)[i], list(boxes)[j])
    for b, f in frames.items():
        for name, (r, _) in boxes.items():
            if name.startswith(b + "."):
                assert inside(r, f), f"{name} is outside the frame of {b}"
            else:
                assert not overlap(r, f), f"{name} overlaps the frame of {b}, which does not hold it"


@pytest.mark.parametrize("name,depth", [("lenet5", None), ("resnet18", None), ("googlenet", None),
                                        ("unet", None), ("densenet121", 2), ("resnet50", 1),
                                        ("googlenet", 2), ("yolov2_tiny", None)])
def test_boxes_edges_frames(name, depth):
    g = model(name).graph
    root, boxes, frames, edges = parse(to_svg(g, name=name, depth=depth))
    assert root.tag == NS + "svg"
    want = {expected_box(n, g.blocks, depth) for n in g.topo()}
    assert set(boxes) == want and len(boxes) == len(want)
    want_edges = {(expected_box(u, g.blocks, depth), expected_box(v, g.blocks, depth)) for u, v in g.g.edges}
    want_edges = {e for e in want_edges if e[0] != e[1]} | {(n, o) for o, n in g.outputs.items()}
    assert set(edges) == want_edges and len(edges) == len(want_edges)
    # the open frames: every block instance whose level is below the depth
    assert set(frames) == {b for b in g.blocks
                           if depth is None or sum(b.startswith(o + ".") for o in g.blocks) < depth - 1}
    check_geometry(g, boxes, frames, depth)


def test_every_zoo_model_at_depth_1():
    for name in netdsl.zoo_names():
        g = model(name).graph
        _, boxes, frames, _ = parse(to_svg(g, name=name, depth=1))
        assert set(boxes) == {expected_box(n, g.blocks, 1) for n in g.topo()}, name
        assert not frames, name                     # depth 1: every top-level block is one box
        rects = [r for r, _ in boxes.values()]
        assert not any(overlap(a, b) for i, a in enumerate(rects) for b in rects[i + 1:]), name


def test_collapsed_block_sums_params():
    g = model("resnet50").graph
    _, boxes, _, _ = parse(to_svg(g, name="resnet50", depth=1))
    title = boxes["layer3"][1].find(NS + "title").text
    params = sum(g[n].n_params for n in g.topo() if n.startswith("layer3."))
    assert f"{params:,} params" in title and "BottleneckStage" in title


def test_optimized_marks_fused_layers():
    g0 = model("resnet18").graph
    g, _, report = optimize(g0, None, 3)
    from netdsl.viz.svg import fusion_badges
    _, boxes, _, _ = parse(to_svg(g, name="resnet18", badges=fusion_badges(g, report)))
    fused = {n for n, (_, el) in boxes.items() if "fused" in el.get("class").split()}
    # every Conv that read a BatchNorm has it folded in; every layer with an epilogue is marked
    bn_fed = {g0.preds(n)[0] for n in g0.topo() if g0[n].op == "BatchNorm"}
    epilogue = {n for n in g.topo() if g[n].attrs.get("act", "none") != "none" or g[n].attrs.get("residual")}
    assert bn_fed <= set(g.topo()) and fused == bn_fed | epilogue
    badges = [t.text for t in boxes["layer1.0.conv2"][1].iter(NS + "text")]
    assert {"+BN", "+Add", "+ReLU"} <= set(badges)
    assert "BatchNorm" not in {el.get("data-op") for _, el in boxes.values()}


def test_text_is_escaped():
    g = netdsl.parse("input x: 3x8x8\nConv(4, 3)-ReLU").graph
    root, boxes, _, _ = parse(to_svg(g, name='a<b & "c"', note="x < y"))
    assert root.find(NS + "text").text.startswith('a<b & "c"')


def test_bad_depth_and_too_big():
    g = model("resnet18").graph
    for bad in (0, -1):
        with pytest.raises(NetDSLError) as e:
            to_svg(g, depth=bad)
        assert "--depth must be a whole number from 1 up" in str(e.value) and "--depth 1" in str(e.value)
    with pytest.raises(NetDSLError) as e:
        to_svg(g, name="resnet18", max_boxes=40)
    text = str(e.value)
    assert "resnet18: 69 boxes are too many" in text and "--depth 2" in text and "--max-boxes 69" in text


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return rc, out, err


def test_cli_svg_without_graphviz(capsys, tmp_path, monkeypatch):
    import shutil
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda prog, *a, **k: None if prog == "dot" else real(prog, *a, **k))
    p = tmp_path / "r.svg"
    rc, out, err = run(capsys, "graph", "resnet18", "--optimized", "--depth", "2", "-o", str(p))
    assert rc == 0, err
    assert "Graphviz is not installed" in out and f"wrote {p}" in out
    _, boxes, frames, _ = parse(p.read_text())
    assert "layer1.0" in boxes and set(frames) == {"layer1", "layer2", "layer3", "layer4"}
    # too many layers for one box each: the blocks close as far as needed, and it says so
    rc, out, err = run(capsys, "graph", "densenet121", "-o", str(tmp_path / "d.svg"))
    assert rc == 0, err and "--depth 2" in out
    assert "--depth 2" in out and "427 layers" in out
    rc, out, err = run(capsys, "graph", "resnet18", "--depth", "0", "-o", str(tmp_path / "x.svg"))
    assert rc == 1 and "--depth must be a whole number from 1 up" in err
    rc, out, err = run(capsys, "graph", "resnet18", "--layout", "netdsl", "-o", str(tmp_path / "x.png"))
    assert rc == 1 and "writes SVG" in err and "x.svg" in err
    rc, out, err = run(capsys, "graph", "lenet5", "-o", str(tmp_path / "l.dot"))      # DOT as before
    assert rc == 0 and (tmp_path / "l.dot").read_text().startswith("digraph netdsl {")
