"""Post-training static quantization of a Model: calibrate, rewrite, run, report.

    qm = netdsl.quant.quantize(model, "digits", method="entropy", skip=["conv1"])
    y = qm(x)                           # int8 Convs / FCs, everything else float32
    print(qm.report(x_held).table())    # per-layer error against float32, top-1 agreement
    qm.save("model.int8.netc")          # int8 weights + scales in a bundle (netdsl/quant/bundle.py)

The rewrite. The model's graph is optimized as it would run (-O3: BatchNorm folded into the
Convs, activations and residual sums fused), then every Conv (groups 1) and FC runs the int8
kernel (csrc/kernels/qconv.c) unless --skip names it or the kernel cannot take it
(depthwise and grouped Convs, K past 32768: `skipped` says why). Quantize / dequantize are
not separate steps: each int8 layer quantizes its float32 input as it packs it, with the
scale and zero point calibrated for that tensor (one per tensor: two layers reading the
same tensor share them), and its epilogue writes float32 (scale, bias, residual,
activation fused). So the tensors between layers, and every other op (pooling, concat,
softmax, depthwise convs), stay float32 and run the ordinary kernels; the plan, its memory
and its arena are the float32 model's.

Calibration runs the float32 model (the same optimized graph) on the calibration data with
every quantized layer's input made an output, batch by batch, and feeds each input tensor to
an Observer (netdsl/quant/observers.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import NetDSLError, did_you_mean
from ..model import Model
from ..runtime.session import Session
from . import numerics
from .observers import METHODS, Observer
from .pack import qconv_call, qconv_fields, quantizable

CAL_BATCH = 32


@dataclass
class QLayer:
    """One int8 layer: the calibrated input quantization and the int8 weights."""
    node: str
    op: str
    in_scale: float
    in_zero: int
    wq: np.ndarray              # int8, the layer's weight shape
    w_scale: np.ndarray         # float32 (OC,)
    bias: np.ndarray | None     # float32 (OC,) or None
    lo: float = 0.0             # the calibrated range (report)
    hi: float = 0.0


HANDOFFS = ("all", "exact", "none")


def uint8_handoffs(graph, qlayers, mode: str = "all") -> dict:
    """The int8 layers whose output stays uint8: {producer: (scale, zero)}. A tensor qualifies
    when it is an int8 layer's output, not a graph output, and every reader is an int8 layer
    reading it as its main input (slot 0) — or, with mode "all", as its residual (slot 1) —
    with at least one main-input reader (whose calibrated scale it takes: a tensor has one).
    Main inputs: the producer quantizes once, in its epilogue, what each reader would have
    quantized from float32 — the same bytes ("exact"). Residuals: the reader adds the
    dequantized uint8 value instead of the float32 one (ONNX Runtime's QLinearAdd does the
    same): a quarter of the traffic, one more rounding — and measured slower on ResNet-50
    (2026-12-04, one thread: 68 ms against 53 for "exact" and 63 for "none"; the uint8
    residual's epilogue costs more than the bytes it saves), so "exact" is the default."""
    if mode not in HANDOFFS:
        raise NetDSLError(f"unknown uint8 hand-off mode {mode!r}", hint=f"one of {', '.join(HANDOFFS)}")
    outs = set(graph.outputs.values())
    hand = {}
    if mode == "none":
        return hand
    for name in qlayers:
        readers = graph.succs(name)
        if name in outs or not readers:
            continue
        main, ok = [], True
        for r in readers:
            preds = graph.preds(r)
            if r not in qlayers or preds.count(name) != 1:
                ok = False
            elif preds[0] == name:
                main.append(r)
            elif not (mode == "all" and len(preds) == 2 and preds[1] == name):
                ok = False
        if ok and main:
            q = qlayers[main[0]]
            hand[name] = (q.in_scale, q.in_zero)
    return hand


class QSession(Session):
    """A Session whose plan runs the int8 kernel for the layers in `qlayers`; between int8
    layers the tensor is uint8 where uint8_handoffs(mode=handoff) allows."""

    def __init__(self, graph, weights, qlayers: dict, threads=None, handoff: str = "exact"):
        super().__init__(graph, weights, threads)
        self.qlayers = qlayers
        self._blobs = {}
        self.handoffs = uint8_handoffs(graph, qlayers, handoff)

    def _lower(self, n):
        from ..runtime.kparams.conv import act_code
        # the int8 kernels take a residual that may be uint8 (smaller than y): never y over it
        plan = super()._lower(n, not_in_place=frozenset(self.qlayers))
        for st in plan.steps:
            q = self.qlayers.get(st.node)
            if q is None:
                continue
            nd = self.graph[st.node]
            src = self.graph.preds(st.node)[0]
            in_shape = self.graph[src].shape
            f = qconv_fields(nd.op, nd.attrs, in_shape, nd.shape, n, q.in_scale, q.in_zero,
                             act=act_code(nd.attrs, nd.op), residual=bool(nd.attrs.get("residual")),
                             in_u8=src in self.handoffs, out_q=self.handoffs.get(st.node),
                             res_q=self.handoffs.get(self.graph.preds(st.node)[1]) if nd.attrs.get("residual") else None)
            key = (st.node, f["layout"])
            call, blob = qconv_call(f, q.wq, q.w_scale, q.bias, q.in_scale, q.in_zero, self._blobs.get(key))
            self._blobs[key] = blob                    # packed once per layout, shared by every batch size
            st.call = call
        return plan

    def _node_weights(self, node_name, call):
        if call.symbol == "nd_qconv_f32":
            return call.extra["prepare_weights"](None)
        return super()._node_weights(node_name, call)


def _with_outputs(graph, names):
    g = graph.copy()
    g.outputs = {n: n for n in names}
    return g


class QuantizedModel(Model):
    """A Model whose Convs and FCs run int8. The graph is the optimized one (it runs as it
    is, no further passes); `weights` holds int8 `<layer>.weight` and float32
    `<layer>.weight_scale` for the int8 layers, float32 for the rest."""

    def __init__(self, graph, weights, qlayers: dict, name="model", path=None, threads=None,
                 method="minmax", skipped=None):
        super().__init__(graph, name, path, threads)
        from ..passes import DEFAULT_LEVEL
        self._weights = weights
        self._weights_loaded = True
        self.opt_level = self.run_level = DEFAULT_LEVEL
        self.qlayers = qlayers
        self.method = method
        self.skipped = dict(skipped or {})

    def _build_session(self, graph, weights):
        return QSession(graph, weights, self.qlayers, self._threads)

    def _feature_session(self, names: tuple):
        return QSession(_with_outputs(self.graph, names), self.weights, self.qlayers, self._threads)

    def fit(self, *a, **kw):
        raise NetDSLError("an int8 model cannot be trained",
                          hint="train the float32 model (netdsl train), then quantize it again")

    def to_onnx(self, *a, **kw):
        raise NetDSLError("exporting an int8 model to ONNX is not supported",
                          hint="export the float32 model (netdsl export) and quantize it with ONNX Runtime")

    def report(self, x, batch: int = CAL_BATCH, threads=None) -> "QuantReport":
        """Every int8 layer's output against the float32 model's on inputs x (the errors
        accumulate through the network, as they do when it runs), and the top-1 agreement of
        the final output."""
        return layer_report(self, x, batch, threads)

    def save(self, path: str) -> None:
        """Write an int8 bundle (.netc) that netdsl.load reads back as a QuantizedModel."""
        from .bundle import write_quantized
        write_quantized(self, path)


def optimized(model):
    """The model's graph and weights as they run (the passes of its run level applied)."""
    graph, weights = model.graph, model.weights
    if model.run_level > model.opt_level:
        from ..passes import optimize
        graph, weights, _ = optimize(graph, weights, level=model.run_level)
    return graph, dict(weights)


def quantize(model, calibration, method: str = "minmax", skip=(), n: int | None = None,
             batch: int = CAL_BATCH, threads=None, percentile: float = 99.99) -> QuantizedModel:
    """Post-training static quantization of `model` (see the module docstring).
    calibration: 'digits', a .npz / .npy path, a folder of images, or an array (netdsl/quant/data.py);
    n: at most this many samples; skip: layer names (of the optimized graph) that stay float32."""
    from .data import calibration_inputs
    if isinstance(model, QuantizedModel):
        raise NetDSLError("this model is already quantized", hint="quantize the float32 model")
    if method not in METHODS:
        raise NetDSLError(f"unknown calibration method {method!r}",
                          hint=did_you_mean(method, METHODS) or f"choose one of {', '.join(METHODS)}")
    if isinstance(skip, str):
        skip = [s.strip() for s in skip.split(",") if s.strip()]
    graph, weights = optimized(model)
    x = calibration_inputs(calibration, graph, n)
    layers, skipped = [], {}
    for nd in graph.nodes():
        if nd.op not in ("Conv", "FC"):
            continue
        why = quantizable(nd.op, nd.attrs, graph[graph.preds(nd.name)[0]].shape)
        if why is None and nd.name in skip:
            why = "--skip"
        if why:
            skipped[nd.name] = why
        else:
            layers.append(nd.name)
    known = {nd.name for nd in graph.nodes() if nd.op in ("Conv", "FC")}
    for s in skip:
        if s not in known:
            hint = did_you_mean(s, sorted(known))
            raise NetDSLError(f"--skip {s}: {model.name} has no Conv or FC named {s!r} (after optimization)",
                              hint=hint or f"its Conv/FC layers: {', '.join(sorted(known)[:6])}, ...")
    # observe the inputs of the int8 layers on the float32 model
    tensors = list(dict.fromkeys(graph.preds(l)[0] for l in layers))
    obs = {t: Observer(method, percentile) for t in tensors}
    computed = [t for t in tensors if t not in graph.inputs]
    sess = Session(_with_outputs(graph, computed or list(graph.outputs.values())), weights, threads)
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        out = sess.run({graph.inputs[0]: xb}) if computed else {}
        for t in tensors:
            obs[t].observe(xb if t in graph.inputs else out[t])
    qlayers, qweights = {}, dict(weights)
    for l in layers:
        nd = graph[l]
        t = graph.preds(l)[0]
        try:
            lo, hi = obs[t].range()
            scale, zero = numerics.act_qparams(lo, hi)
        except ValueError as e:
            raise NetDSLError(f"calibration of {l}'s input {t}: {e}",
                              hint="the calibration data gives no finite values there") from None
        w = weights[f"{l}.weight"]
        wq, ws = numerics.weight_qparams(w)
        b = weights.get(f"{l}.bias")
        qlayers[l] = QLayer(l, nd.op, scale, zero, wq, ws, b, lo, hi)
        qweights[f"{l}.weight"] = wq
        qweights[f"{l}.weight_scale"] = ws
    qm = QuantizedModel(graph, qweights, qlayers, name=model.name, threads=threads or model.threads,
                        method=method, skipped=skipped)
    qm._float_originals = {f"{l}.weight": weights[f"{l}.weight"] for l in layers}
    return qm


@dataclass
class LayerError:
    layer: str
    op: str
    shape: tuple
    in_scale: float
    in_zero: int
    rel_error: float            # ||int8 - fp32|| / ||fp32|| of the layer's output
    max_abs: float


@dataclass
class QuantReport:
    rows: list
    skipped: dict
    agreement: float | None     # top-1 agreement of the first output, None if not a classifier
    output_rel_error: float
    n: int

    def table(self) -> str:
        head = f"{'layer':<28} {'op':<5} {'output':<14} {'in scale':>10} {'zero':>4} {'rel err':>9} {'max abs':>9}"
        lines = [head, "-" * len(head)]
        for r in self.rows:
            shape = "x".join(map(str, r.shape))
            lines.append(f"{r.layer[:28]:<28} {r.op:<5} {shape:<14} {r.in_scale:>10.4g} {r.in_zero:>4} "
                         f"{r.rel_error:>9.2%} {r.max_abs:>9.3g}")
        for name, why in self.skipped.items():
            lines.append(f"{name[:28]:<28} float32: {why}")
        lines.append(f"output: rel. error {self.output_rel_error:.2%} on {self.n} samples" +
                     (f", top-1 agreement with float32 {self.agreement:.2%}" if self.agreement is not None else ""))
        return "\n".join(lines)


def _rel(a, b):
    d = float(np.linalg.norm((a - b).ravel()))
    ref = float(np.linalg.norm(b.ravel()))
    return d / ref if ref > 0 else (0.0 if d == 0 else math.inf)


def layer_report(qm: QuantizedModel, x, batch=CAL_BATCH, threads=None) -> QuantReport:
    from .data import calibration_inputs
    g = qm.graph
    x = calibration_inputs(x, g)
    out_name, out_node = next(iter(g.outputs.items()))
    names = list(dict.fromkeys(list(qm.qlayers) + [out_node]))
    gg = _with_outputs(g, names)
    fp_weights = _float_weights(qm)
    f_sess = Session(gg, fp_weights, threads)
    q_sess = QSession(gg, qm.weights, qm.qlayers, threads)
    num = {k: 0.0 for k in names}
    den = {k: 0.0 for k in names}
    mx = {k: 0.0 for k in names}
    agree = 0
    fin = [0.0, 0.0]
    run_q = QSession(g, qm.weights, qm.qlayers, threads).run      # uint8 hand-offs as in qm(x)
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        fo = f_sess.run({g.inputs[0]: xb})
        qo = q_sess.run({g.inputs[0]: xb})
        for k in names:
            d = (qo[k].astype(np.float64) - fo[k])
            num[k] += float((d * d).sum())
            den[k] += float((fo[k].astype(np.float64) ** 2).sum())
            mx[k] = max(mx[k], float(np.abs(d).max()))
        fa, qa = fo[out_node], run_q({g.inputs[0]: xb})[out_name]     # the model as it runs
        d = qa.astype(np.float64) - fa
        fin[0] += float((d * d).sum())
        fin[1] += float((fa.astype(np.float64) ** 2).sum())
        if fa.ndim == 2 and fa.shape[1] > 1:
            agree += int((fa.argmax(1) == qa.argmax(1)).sum())
    rel = {k: (math.sqrt(num[k] / den[k]) if den[k] > 0 else 0.0) for k in names}
    rows = [LayerError(l, qm.qlayers[l].op, tuple(g[l].shape), qm.qlayers[l].in_scale, qm.qlayers[l].in_zero,
                       rel[l], mx[l]) for l in qm.qlayers]
    cls = g[out_node].shape and len(g[out_node].shape) == 1 and g[out_node].shape[0] > 1
    out_rel = math.sqrt(fin[0] / fin[1]) if fin[1] > 0 else 0.0
    return QuantReport(rows, qm.skipped, agree / len(x) if cls else None, out_rel, len(x))


def _float_weights(qm: QuantizedModel) -> dict:
    """float32 weights for the float32 reference run: the int8 layers' float32 originals when
    they were kept (a fresh quantization), else dequantized (a loaded int8 bundle, which has
    only the int8 weights: then the report measures the activations' quantization alone)."""
    w = dict(qm.weights)
    orig = getattr(qm, "_float_originals", None) or {}
    for l, q in qm.qlayers.items():
        key = f"{l}.weight"
        w[key] = orig.get(key, numerics.dequantize_weight(q.wq, q.w_scale))
        w.pop(f"{l}.weight_scale", None)
    return w
