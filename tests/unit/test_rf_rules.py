"""The analysis's theoretical receptive field and jump through fused residuals and SE blocks.

Oracles: the same network as written (no fused residual), and the same network without its
squeeze-and-excitation branch (a per-channel rescaling cannot change how far apart the map's
pixels are, nor how far the main path sees)."""
import netdsl
from netdsl.analysis import infer
from netdsl.passes import optimize


def test_a_fused_residual_gets_the_window_of_its_conv_only():
    m = netdsl.load("resnet18")
    g, _, _ = optimize(m.graph, m.weights, 3)
    fused = [n for n in g.topo() if g[n].attrs.get("residual")]
    assert fused, "no fused residual at -O3"
    for n in g.topo():      # a fused node computes conv + residual: its own value is the Add's
        if n in m.graph and n not in fused:
            assert g[n].rf == m.graph[n].rf and g[n].jump == m.graph[n].jump, n


def test_a_squeeze_excitation_branch_keeps_the_main_paths_jump():
    se = "[ _ | GAP - Conv(2, 1) - ReLU - Conv(8, 1) - Sigmoid ] - Mul - "
    a = netdsl.parse(f"input x: 3x32x32\nConv(8, 3, stride=2, pad=1) - {se}c:Conv(8, 3, stride=2, pad=1)")
    b = netdsl.parse("input x: 3x32x32\nConv(8, 3, stride=2, pad=1) - c:Conv(8, 3, stride=2, pad=1)")
    assert a.graph["c"].jump == b.graph["c"].jump == (4, 4)
    # the GAP branch reaches the whole 32x32 input: the Mul sees at least that far
    mul = [n for n in a.graph.topo() if a.graph[n].op == "Mul"][0]
    assert a.graph[mul].rf[0] >= 32 and a.graph["c"].rf[0] >= a.graph[mul].rf[0]
