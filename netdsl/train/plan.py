"""One training step as one plan: forward, loss, backward and the optimizer's update (issue 10).

    layout = build(graph, batches=[64, 17], loss=get_loss("cross_entropy"), optimizer=SGD(...))
    layout.plans[64].steps     # the step's kernel calls, in order, with arena offsets

The graph is the checked, unoptimized one: BatchNorm is not folded (it trains on batch
statistics), nothing is fused (the backward rules need each op's own output), Dropout runs
its seeded mask. Every op's gradient rule comes from netdsl/train/registry.py; the ops with
a training forward (BatchNorm, Dropout, StochasticPool) use it, every other op its
inference kernel (netdsl/runtime/kparams).

The arena (floats, each region 16-aligned so the vector kernels see aligned rows):

    params | grads | optimizer state (0-2 regions shaped like params) | buffers (BN running
    stats) | targets | loss block | grad-norm slot | planned: activations, saved tensors,
    gradients of activations (for the largest batch; the other batch sizes reuse it)

Parameters, gradients and optimizer state are each ONE region in the same order (the
state_dict order), so the optimizer and gradient clipping are one kernel each over a whole
region, and a layer's forward reads its weights in place (its `w` points into the arena).
The loss block is [d_output (n·K) | loss | correct]: the loss kernel writes the gradient of
the mean loss there, which is the output node's incoming gradient.

Planned memory: every forward tensor lives from the step that writes it to the last step
that reads it — forward or backward — so what the backward pass needs is kept and nothing
else; every activation gradient from its first write to its last read. Placement is the
inference planner's best fit (netdsl/runtime/plan.place). A tensor read by several layers
gets one gradient buffer per reader and an Add step that sums them (a rule writes its
gradient whole, never accumulates). No in-place and no concat elision: the backward rules
read forward inputs that in-place would overwrite.

After the loss and again after the backward pass a guard (csrc/kernels/train_step.c)
stops the plan when the loss or a gradient is NaN or inf, before the optimizer runs: the
parameters stay those of the last good step and the session finds the first bad layer.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import ops
from ..errors import NetDSLError
from ..runtime.executor import PlanError
from ..runtime.kparams import KernelCall, builder
from ..runtime.plan import Buffer, checked_prod, place
from .registry import backward_rule, train_forward_rule

ALIGN = 16
MAX_ADD = 128           # inputs one Add kernel sums (csrc/kernels/merge.h)


def _al(f):
    return -(-int(f) // ALIGN) * ALIGN


@dataclass
class TStep:
    """One kernel call of the training step. Offsets are arena floats; `w`/`bias` are
    (offset, floats) slices of the arena, or None."""
    call: KernelCall
    out: int
    ins: list
    out_floats: int
    in_floats: list
    w: tuple | None = None
    bias: tuple | None = None
    node: str = ""
    kind: str = "forward"          # forward | loss | guard | sum | backward | clip | optim
    span: object = None
    seeded: bool = False


@dataclass
class StepPlan:
    """The steps for one batch size (offsets inside the shared arena)."""
    n: int
    steps: list
    planned_floats: int            # the planned part (after the fixed regions)
    lower_bound_floats: int
    tensor: dict                   # node -> (offset, floats) of its forward output (last run)
    input_offs: dict               # input name -> offset
    forward_steps: int             # steps[:forward_steps] are the forward pass
    grad: dict = field(default_factory=dict)   # node -> (offset, floats) of its output's gradient
    # (valid right after that node's backward steps read it; the planner reuses the memory later)


@dataclass
class Layout:
    graph: object
    output: str                    # the node the loss reads (logits for cross-entropy)
    out_shape: tuple
    loss: object
    optimizer: object
    clip: float | None
    params: dict                   # state-dict name -> (offset, shape), trainable parameters
    buffers: dict                  # state-dict name -> (offset, shape), BN running stats
    params_off: int = 0
    params_floats: int = 0
    trained_floats: int = 0        # the first trained_floats of params: those the loss reaches
    grads_off: int = 0
    state_offs: list = field(default_factory=list)
    buffers_off: int = 0
    buffers_floats: int = 0
    targets_off: int = 0
    targets_floats: int = 0
    loss_off: int = 0
    norm_off: int = 0
    fixed_floats: int = 0
    plans: dict = field(default_factory=dict)    # batch -> StepPlan
    arena_floats: int = 0

    def memory(self, n) -> dict:
        """Bytes by region for batch n (the training arena, next to the inference one)."""
        p = self.plans[n]
        k = len(self.state_offs)
        return {"params_bytes": 4 * self.params_floats, "grads_bytes": 4 * self.params_floats,
                "optimizer_state_bytes": 4 * k * self.params_floats,
                "buffers_bytes": 4 * self.buffers_floats,
                "activations_bytes": 4 * p.planned_floats,
                "activations_lower_bound_bytes": 4 * p.lower_bound_floats,
                "arena_bytes": 4 * self.arena_floats}


def training_graph(graph):
    """The graph training runs: a copy where a layer written with a fused residual
    (`Conv(..., residual=true)`) becomes the conv then `<layer>.add` (conv + shortcut), and a
    layer written with a fused activation (`FC(10, act=sigmoid)`) is followed by the
    standalone activation `<layer>.<act>`, so that each op's own gradient rule applies. The
    layer keeps its name (and so its parameters' names). A graph with neither is returned
    as it is."""
    from ..ops import activations
    todo = [nd.name for nd in graph.nodes()
            if nd.attrs.get("act", activations.NONE) != activations.NONE or nd.attrs.get("residual")]
    if not todo:
        return graph
    g = graph.copy()

    def insert_after(name, new, op, attrs, extra_input=None):
        """A node `new` reading `name` (slot 0) and `extra_input` (slot 1) that takes over
        every reader of `name` and any output naming it."""
        nd = g[name]
        readers = [(v, d["slot"]) for _, v, d in g.g.out_edges(name, data=True)]
        node = g.add(new, op, attrs, nd.span, scope=nd.scope)
        node.shape, node.order = tuple(nd.shape), nd.order
        for v, slot in readers:
            g.g.remove_edge(name, v)
            g.connect(new, v, slot)
        g.connect(name, new, 0)
        if extra_input is not None:
            g.connect(extra_input, new, 1)
        for k, v in list(g.outputs.items()):
            if v == name:
                g.outputs[k] = new
        return new

    for name in todo:
        nd = g[name]
        act = nd.attrs.get("act", activations.NONE)
        last = name
        if nd.attrs.get("residual"):
            shortcut = g.preds(name)[1]
            g.g.remove_edge(shortcut, name)
            nd.attrs["residual"] = False
            spec = ops.get("Add")
            last = insert_after(name, f"{name}.add", "Add",
                                spec.resolve(spec.bind((), {}), [tuple(nd.shape)] * 2), shortcut)
        if act != activations.NONE:
            entry = activations.get(act)
            spec = ops.get(entry.op)
            insert_after(last, f"{name}.{entry.name}", entry.op,
                         spec.resolve(spec.bind((), dict(entry.fixed)), [tuple(nd.shape)]))
            nd.attrs["act"] = activations.NONE
    return g


def loss_output(graph, loss, output=None):
    """The node the loss reads and its shape. Cross-entropy takes logits: a network that
    ends in Softmax/LogSoftmax over the channels trains on that layer's input (the fused
    softmax cross-entropy is the stable form of exactly that)."""
    outs = dict(graph.outputs)
    if output is None:
        if len(outs) != 1:
            raise NetDSLError(f"this network has outputs {', '.join(outs)}: choose the one to train "
                              f"with output=NAME (--output NAME)")
        output = next(iter(outs))
    if output not in outs:
        raise NetDSLError(f"no output named {output!r}; the network's outputs are {', '.join(outs)}")
    node = graph[outs[output]]
    if loss.name == "cross_entropy" and node.op in ("Softmax", "LogSoftmax") and \
            node.attrs.get("axis", 1) in (1, -len(node.shape)):
        node = graph[graph.preds(node.name)[0]]
    loss.check(tuple(node.shape))
    return node.name


def _trainable_nodes(graph, out):
    """Nodes the output depends on, in topological order."""
    need = {out}
    stack = [out]
    while stack:
        for p in graph.preds(stack.pop()):
            if p not in need:
                need.add(p)
                stack.append(p)
    return [nd for nd in graph.nodes() if nd.name in need]


def build(graph, batches, loss, optimizer, clip=None, output=None) -> Layout:
    """The training layout for these batch sizes (the largest first sets the arena)."""
    batches = sorted({int(b) for b in batches}, reverse=True)
    for b in batches:
        if b < 1:
            raise NetDSLError(f"batch size must be a positive integer, got {b}")
    graph = training_graph(graph)
    out = loss_output(graph, loss, output)
    nodes = _trainable_nodes(graph, out)
    lay = Layout(graph, out, tuple(graph[out].shape), loss, optimizer, clip, {}, {})

    # fixed regions: parameters (all of the model's, state-dict order) and buffers
    # the parameters the loss reaches first: the optimizer, clipping and the gradient guard run
    # over those only (a layer of another output, GoogLeNet's aux heads, is not decayed)
    off = 0
    reached = {nd.name for nd in nodes}
    for first in (True, False):
        for nd in graph.nodes():
            if (nd.name in reached) != first:
                continue
            for p, shape in nd.params.items():
                lay.params[f"{nd.name}.{p}"] = (off, tuple(shape))
                off += math.prod(shape)
        if first:
            lay.trained_floats = off
    lay.params_floats = off
    if lay.trained_floats == 0:
        raise NetDSLError(f"nothing to train: {out} depends on no layer with parameters",
                          graph[out].span, "training learns the weights of Conv, FC, BatchNorm, PReLU, ... "
                          "layers; this network has none on the way to its output")
    cursor = 0
    lay.params_off = cursor
    cursor += _al(lay.params_floats)
    lay.grads_off = cursor
    cursor += _al(lay.params_floats)
    for _ in range(int(optimizer.state_regions)):
        lay.state_offs.append(cursor)
        cursor += _al(lay.params_floats)
    lay.buffers_off = cursor
    off = 0
    for nd in graph.nodes():
        for p, shape in nd.buffers.items():
            lay.buffers[f"{nd.name}.{p}"] = (cursor + off, tuple(shape))
            off += math.prod(shape)
    lay.buffers_floats = off
    cursor += _al(off)
    nmax = batches[0]
    lay.targets_off = cursor
    lay.targets_floats = int(loss.target_floats(lay.out_shape, nmax))
    cursor += _al(lay.targets_floats)
    lay.loss_off = cursor
    cursor += _al(nmax * math.prod(lay.out_shape) + 2)
    lay.norm_off = cursor
    cursor += ALIGN
    for name, (o, shape) in list(lay.params.items()):
        lay.params[name] = (lay.params_off + o, shape)
    lay.fixed_floats = cursor

    for n in batches:
        lay.plans[n] = _plan_batch(lay, nodes, n)
    lay.arena_floats = lay.fixed_floats + max(p.planned_floats for p in lay.plans.values())
    return lay


def _located(e, nd):
    if isinstance(e, PlanError):
        return e.located(f"layer {nd.name}", nd.span)
    return e


def _param_block(lay, nd):
    """(offset, floats) of a node's trainable parameters (contiguous, OpSpec.params order)."""
    if not nd.params:
        return None
    first = next(iter(nd.params))
    o = lay.params[f"{nd.name}.{first}"][0]
    return o, sum(math.prod(s) for s in nd.params.values())


def _buffer_block(lay, nd):
    if not nd.buffers:
        return None
    first = next(iter(nd.buffers))
    o = lay.buffers[f"{nd.name}.{first}"][0]
    return o, sum(math.prod(s) for s in nd.buffers.values())


def _plan_batch(lay, nodes, n) -> StepPlan:
    graph = lay.graph
    size = {nd.name: checked_prod((n, *nd.shape), nd.name, nd.span) for nd in nodes}
    buffers: list[Buffer] = []

    def new_buffer(floats, first):
        b = Buffer(len(buffers), _al(floats), first=first, last=first)
        buffers.append(b)
        return b

    # views (Flatten, Reshape, Identity; Dropout only where it has no training forward)
    view_of = {}
    for nd in nodes:
        spec = ops.get(nd.op)
        if "no_op" in spec.flags and train_forward_rule(nd.op) is None:
            view_of[nd.name] = graph.preds(nd.name)[0]

    def real(name):
        while name in view_of:
            name = view_of[name]
        return name

    requires = {}
    for nd in nodes:
        requires[nd.name] = bool(nd.params) or any(requires.get(p, False) for p in graph.preds(nd.name))

    steps: list[TStep] = []
    refs = []            # (step index, slot kind, key): resolved to offsets after placement
    tensor_buf: dict[str, Buffer] = {}       # real forward tensor -> its buffer
    y_floats: dict[str, int] = {}
    inputs = {}

    def read(buf, i):
        buf.last = max(buf.last, i)

    def bind_in(st, i, t, nd, preds, what, dy=None):
        """Step i reads token t (registry.py's names) of layer nd: record where, and extend the
        lifetime of the buffer it lives in. "y", "saved" and "dy" exist only in the backward pass."""
        if t.startswith("x"):
            src = tensor_buf[preds[int(t[1:])]]
            read(src, i)
            where, floats = ("buf", src.id, 0), size[preds[int(t[1:])]]
        elif t in ("y", "saved") and dy is not None:
            yb = tensor_buf[nd.name]
            read(yb, i)
            yf = y_floats[nd.name]
            where, floats = (("buf", yb.id, 0), yf) if t == "y" else (("buf", yb.id, yf), yb.floats - yf)
        elif t == "dy" and dy is not None:
            if dy[0] == "buf":
                read(buffers[dy[1]], i)
            where, floats = dy, size[nd.name]
        elif t in ("params", "buffers"):
            blk = (_param_block if t == "params" else _buffer_block)(lay, nd)
            where, floats = ("abs", blk[0], 0), blk[1]
        else:
            raise NetDSLError(f"the {what} of {nd.op} reads {t!r}, which the planner does not know")
        refs.append((i, "in", where))
        st.in_floats.append(floats)

    # -- forward
    for nd in nodes:
        if nd.op == "Input":
            b = new_buffer(size[nd.name], -1)
            tensor_buf[nd.name] = b
            inputs[nd.name] = b
            continue
        if nd.name in view_of:
            continue
        preds = [real(p) for p in graph.preds(nd.name)]
        in_shapes = [graph[p].shape for p in graph.preds(nd.name)]
        i = len(steps)
        tf_rule = train_forward_rule(nd.op)
        try:
            if tf_rule is not None:
                tf = tf_rule(nd.attrs, in_shapes, nd.shape, n)
                call, toks, w_tok, saved, seeded = tf.call, list(tf.ins), tf.w, int(tf.saved_floats), tf.seeded
            else:
                fn = builder(nd.op)
                if fn is None:
                    raise NetDSLError(f"{nd.op} cannot be trained: it has no C kernel (layer {nd.name})", nd.span)
                call = fn(nd.attrs, in_shapes, nd.shape, n)
                toks, w_tok, saved, seeded = [f"x{j}" for j in range(len(preds))], None, 0, False
                if call.extra.get("prepare_weights") is not None:
                    raise NetDSLError(f"{nd.op} has no training forward yet (layer {nd.name})", nd.span,
                                      "train a network without this layer")
        except PlanError as e:
            raise _located(e, nd) from None
        b = new_buffer(size[nd.name] + saved, i)
        tensor_buf[nd.name] = b
        y_floats[nd.name] = size[nd.name]
        st = TStep(call, 0, [], size[nd.name] + saved, [], node=nd.name, span=nd.span, seeded=seeded)
        for t in toks:
            bind_in(st, i, t, nd, preds, "training forward")
        refs.append((i, "out", ("buf", b.id, 0)))
        if w_tok == "params":
            st.w = _param_block(lay, nd)
        elif tf_rule is None:
            wname, bname = (tuple(call.weights) + (None, None))[:2]
            for which, pname in (("w", wname), ("bias", bname)):
                if pname and f"{nd.name}.{pname}" in lay.params:
                    o, shape = lay.params[f"{nd.name}.{pname}"]
                    setattr(st, which, (o, math.prod(shape)))
        steps.append(st)
    forward_steps = len(steps)

    # -- loss, then the guard on its value
    out = real(lay.output)
    k_out = n * math.prod(lay.out_shape)
    i = len(steps)
    lcall = lay.loss.call(lay.out_shape, n)
    st = TStep(lcall, lay.loss_off, [], k_out + 2, [size[lay.output], lay.loss.target_floats(lay.out_shape, n)],
               kind="loss", node=lay.output)
    read(tensor_buf[out], i)
    refs.append((i, "in", ("buf", tensor_buf[out].id, 0)))
    refs.append((i, "in", ("abs", lay.targets_off, 0)))
    steps.append(st)
    steps.append(_guard(lay.loss_off + k_out, 1, "loss"))

    # -- backward, in reverse topological order
    contrib: dict[str, list] = {out: [("abs", lay.loss_off, 0)]}
    dy_of = {}
    for nd in reversed(nodes):
        if nd.op == "Input" or nd.name in view_of or not requires[nd.name]:
            continue
        parts = contrib.pop(nd.name, [])
        if not parts:
            continue           # nothing downstream of this layer reaches the loss
        if len(parts) == 1:
            dy = parts[0]
        else:
            db = new_buffer(size[nd.name], len(steps))
            _emit_sum(steps, refs, parts, ("buf", db.id, 0), size[nd.name], nd, buffers)
            dy = ("buf", db.id, 0)
        dy_of[nd.name] = dy
        preds_raw = graph.preds(nd.name)
        preds = [real(p) for p in preds_raw]
        need = {f"dx{j}" for j, p in enumerate(preds) if requires.get(p, False)}
        if nd.params:
            need.add("dparams")
        if not need:
            continue
        rule = backward_rule(nd.op)
        if rule is None:
            raise NetDSLError(f"{nd.op} cannot be trained through: it has no gradient (layer {nd.name})",
                              nd.span, "train the layer before it (make that layer an output and pass "
                              "output=NAME / --output NAME)" if nd.op in ("YoloDecode", "RegionDecode")
                              else "netdsl/train/registry.py lists the ops that train")
        try:
            bwds = rule(nd.attrs, [graph[p].shape for p in preds_raw], nd.shape, n, need)
        except PlanError as e:
            raise _located(e, nd) from None
        got = {b.out for b in bwds}
        if got != need:
            raise NetDSLError(f"the gradient rule of {nd.op} wrote {sorted(got)}, the planner asked for "
                              f"{sorted(need)} (layer {nd.name}): a bug in netdsl", nd.span)
        for bw in bwds:
            i = len(steps)
            if bw.out == "dparams":
                blk = _param_block(lay, nd)
                goff = blk[0] - lay.params_off + lay.grads_off
                target, floats = ("abs", goff, 0), blk[1]
            else:
                j = int(bw.out[2:])
                floats = size[preds[j]]
                gb = new_buffer(floats, i)
                target = ("buf", gb.id, 0)
                contrib.setdefault(preds[j], []).append(target)
            if bw.out_floats is not None and bw.out == "dparams" and int(bw.out_floats) != floats:
                raise NetDSLError(f"the gradient rule of {nd.op} writes {bw.out_floats} parameter floats, "
                                  f"the layer has {floats} (layer {nd.name}): a bug in netdsl", nd.span)
            st = TStep(bw.call, 0, [], floats, [], node=nd.name, kind="backward", span=nd.span)
            refs.append((i, "out", target))
            for t in bw.ins:
                bind_in(st, i, t, nd, preds, "gradient rule", dy)
            if bw.w == "params":
                st.w = _param_block(lay, nd)
            steps.append(st)

    # -- gradient guard, clipping, optimizer
    P = lay.trained_floats
    if P:
        steps.append(_guard(lay.grads_off, P, "gradients"))
        if lay.clip:
            from .optim import clip_call
            steps.append(TStep(clip_call(P, float(lay.clip)), lay.norm_off, [lay.grads_off], 1, [P], kind="clip"))
        ins = [lay.grads_off] + list(lay.state_offs)
        steps.append(TStep(lay.optimizer.call(P), lay.params_off, ins, P, [P] * len(ins), kind="optim"))

    # -- placement and offsets
    for b in buffers:
        b.last = max(b.last, b.first)
        if b.first == -1:              # inputs: live from the start
            b.last = max(b.last, 0)
    planned = place(buffers) if buffers else 0
    base = lay.fixed_floats
    by_step: dict[int, list] = {}
    for i, kind, where in refs:
        by_step.setdefault(i, []).append((kind, where))
    for i, items in by_step.items():
        st = steps[i]
        for kind, (what, a, extra) in items:
            o = (base + buffers[a].offset + extra) if what == "buf" else a + extra
            if kind == "out":
                st.out = o
            else:
                st.ins.append(o)
    lower = _lower_bound(buffers)
    tensor = {name: (base + b.offset, y_floats.get(name, size.get(name, 0))) for name, b in tensor_buf.items()}
    for v in view_of:
        if v in size:
            tensor[v] = tensor[real(v)][0], size[v]
    grad = {name: ((base + buffers[a].offset + extra) if what == "buf" else a + extra, size[name])
            for name, (what, a, extra) in dy_of.items()}
    return StepPlan(n, steps, planned, lower, tensor,
                    {name: base + b.offset for name, b in inputs.items()}, forward_steps, grad)


def _guard(off, count, what):
    call = KernelCall("nd_finite_guard_f32", "nd_finite_guard_params", {"count": int(count)}, weights=(None, None))
    return TStep(call, off, [off], 1, [int(count)], kind="guard", node=what)


def _emit_sum(steps, refs, parts, target, floats, nd, buffers):
    """dy = the sum of the gradient contributions (>= 2): Add kernels of at most MAX_ADD
    inputs, the later ones adding into target (the Add kernel allows out == an input)."""
    chunks, rest = [parts[:MAX_ADD]], parts[MAX_ADD:]
    while rest:
        chunks.append([target] + rest[:MAX_ADD - 1])
        rest = rest[MAX_ADD - 1:]
    for chunk in chunks:
        i, k = len(steps), len(chunk)
        call = KernelCall("nd_add_f32", "nd_add_params",
                          dict(n=1, c=1, hw=int(floats), ninputs=k, act=0, bcast=[0] * k), weights=(None, None))
        steps.append(TStep(call, 0, [], floats, [floats] * k, node=nd.name, kind="sum", span=nd.span))
        refs.append((i, "out", target))
        for w in chunk:
            if w[0] == "buf":
                buffers[w[1]].last = max(buffers[w[1]].last, i)
            refs.append((i, "in", w))
        if target[0] == "buf":
            buffers[target[1]].last = max(buffers[target[1]].last, i)


def _lower_bound(buffers):
    delta: dict[int, int] = {}
    for b in buffers:
        delta[b.first] = delta.get(b.first, 0) + b.floats
        delta[b.last + 1] = delta.get(b.last + 1, 0) - b.floats
    best = live = 0
    for t in sorted(delta):
        live += delta[t]
        best = max(best, live)
    return best
