"""TrainSession: runs the training step of netdsl/train/plan.py, one C call per step.

    s = TrainSession(graph, weights, get_loss("cross_entropy"), SGD(lr=0.05, momentum=0.9),
                     batches=[64, 17], threads=2, seed=0)
    loss, correct = s.step(x, y)          # x float32 [n, *input], y labels / targets
    s.weights()                           # name -> array: trained parameters and BN buffers

One arena holds everything (plan.py): the session copies the model's weights in once, and
every step copies a batch and its targets in, sets the step's fields (learning rate, step
count, the dropout / stochastic-pool seeds) in the C params structs, makes one C call and
reads two floats back (the loss and the number correct). The forward kernels read their
weights from the arena, where the optimizer updates them, so nothing is copied between
steps.

A non-finite loss or gradient stops the C plan at its guard, before the optimizer: the
weights stay those of the last good step, and `step` raises NonFiniteError naming the
step and the first layer whose output went non-finite (found by rerunning the forward
pass layer by layer on the same batch).
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import NetDSLError
from ..runtime import lib as _lib
from ..runtime.executor import KernelError, Program, Step
from .plan import build

MASK64 = 2**64 - 1


class NonFiniteError(NetDSLError):
    """The loss or a gradient went NaN/inf; the weights are those before this step."""

    def __init__(self, message, span=None, hint=None, step=None, layer=None):
        super().__init__(message, span, hint)
        self.step, self.layer = step, layer


def _seed(base, step, index):
    z = (base * 0x9E3779B97F4A7C15 + step * 0xBF58476D1CE4E5B9 + index * 0x94D049BB133111EB) & MASK64
    z ^= z >> 31
    return z


class TrainSession:
    def __init__(self, graph, weights: dict, loss, optimizer, batches, clip=None, threads=None,
                 seed=0, output=None):
        self.graph = graph
        self.loss, self.optimizer = loss, optimizer
        self.threads = threads
        self.seed = int(seed)
        self.step_count = 0                  # optimizer steps taken
        self.layout = lay = build(graph, batches, loss, optimizer, clip=clip, output=output)
        self.arena = np.zeros(max(lay.arena_floats, 1), np.float32)
        for name, (off, shape) in lay.params.items():
            self.arena[off:off + math.prod(shape)] = np.asarray(weights[name], np.float32).ravel()
        for name, (off, shape) in lay.buffers.items():
            self.arena[off:off + math.prod(shape)] = np.asarray(weights[name], np.float32).ravel()
        self._buffers_before = np.empty(lay.buffers_floats, np.float32)
        self._progs = {}
        for n, sp in lay.plans.items():
            self._progs[n] = self._program(sp)

    # -- building
    def _view(self, sl):
        return None if sl is None else self.arena[sl[0]:sl[0] + sl[1]]

    def _program(self, sp):
        ffi = _lib.ffi
        steps = [Step(t.call, t.out, t.ins, self._view(t.w), self._view(t.bias), 0, t.out_floats,
                      t.in_floats, t.node or t.kind, span=t.span) for t in sp.steps]
        prog = Program(steps, self.layout.arena_floats, prepack=False)
        ws = prog.new_ws() if prog.ws_floats else None
        bound = prog.bind(self.arena, ws)
        structs = [ffi.cast(f"{t.call.struct} *", prog.records[i].params) for i, t in enumerate(sp.steps)]
        seeded = [i for i, t in enumerate(sp.steps) if t.seeded]
        opt = [i for i, t in enumerate(sp.steps) if t.kind == "optim"]
        guards = {i: t.node for i, t in enumerate(sp.steps) if t.kind == "guard"}
        return {"plan": sp, "prog": prog, "ws": ws, "bound": bound, "structs": structs,
                "seeded": seeded, "opt": opt[0] if opt else None, "guards": guards, "single": None}

    # -- state
    def weights(self) -> dict:
        """Copies of the trained parameters and buffers, state-dict names and shapes."""
        out = {}
        lay = self.layout
        for table in (lay.params, lay.buffers):
            for name, (off, shape) in table.items():
                out[name] = self.arena[off:off + math.prod(shape)].reshape(shape).copy()
        order = [k for nd in self.graph.nodes() for k in
                 [f"{nd.name}.{p}" for p in list(nd.params) + list(nd.buffers)]]
        return {k: out[k] for k in order if k in out}

    def gradients(self) -> dict:
        """Copies of the last step's parameter gradients (state-dict names and shapes)."""
        lay = self.layout
        d = lay.grads_off - lay.params_off
        return {name: self.arena[off + d:off + d + math.prod(shape)].reshape(shape).copy()
                for name, (off, shape) in lay.params.items()}

    def optimizer_state(self) -> dict:
        """The optimizer's state regions as arrays (momentum / Adam moments) and the step count."""
        lay = self.layout
        P = lay.params_floats
        return {"step": self.step_count,
                "regions": [self.arena[o:o + P].copy() for o in lay.state_offs]}

    def load_optimizer_state(self, state: dict):
        lay = self.layout
        P = lay.params_floats
        regions = state.get("regions", [])
        if len(regions) != len(lay.state_offs) or any(np.asarray(r).size != P for r in regions):
            raise NetDSLError("the checkpoint's optimizer state does not match this optimizer and model",
                              hint="resume with the optimizer the checkpoint was written with")
        for o, r in zip(lay.state_offs, regions):
            self.arena[o:o + P] = np.asarray(r, np.float32).ravel()
        self.step_count = int(state.get("step", 0))

    def memory(self, n=None) -> dict:
        n = n or max(self.layout.plans)
        return self.layout.memory(n)

    @property
    def grad_norm(self) -> float:
        """The gradient norm before clipping of the last step (when clipping is on)."""
        return float(self.arena[self.layout.norm_off])

    # -- running
    def _set_fields(self, p):
        for i in p["seeded"]:
            p["structs"][i].seed = _seed(self.seed, self.step_count, i)
        if p["opt"] is not None:
            s = p["structs"][p["opt"]]
            for k, v in self.optimizer.step_fields(self.step_count).items():
                setattr(s, k, v)

    def _copy_in(self, p, x, y):
        sp = p["plan"]
        lay = self.layout
        n = sp.n
        if isinstance(x, dict):
            xs = x
        else:
            if len(sp.input_offs) != 1:
                raise NetDSLError(f"this network has inputs {', '.join(sp.input_offs)}: pass a dict")
            xs = {next(iter(sp.input_offs)): x}
        for name, off in sp.input_offs.items():
            a = xs[name]
            want = (n, *self.graph[name].shape)
            if tuple(a.shape) != want:
                raise NetDSLError(f"input {name!r} batch has shape {list(a.shape)}; the plan expects {list(want)}")
            self.arena[off:off + a.size] = a.reshape(-1)
        t = self.loss.prepare_targets(y, lay.out_shape, n)
        self.arena[lay.targets_off:lay.targets_off + t.size] = t

    def step(self, x, y):
        """One training step on a batch: returns (mean loss, number correct)."""
        n = (next(iter(x.values())) if isinstance(x, dict) else x).shape[0]
        p = self._progs.get(n)
        if p is None:
            raise NetDSLError(f"no training plan for batch size {n} (planned: {sorted(self._progs)})")
        self._copy_in(p, x, y)
        self._set_fields(p)
        lay = self.layout
        bufs = slice(lay.buffers_off, lay.buffers_off + lay.buffers_floats)
        self._buffers_before[...] = self.arena[bufs]       # BN running stats move in the forward pass
        try:
            p["bound"].run(self._threads_arg())
        except KernelError as e:
            self.arena[bufs] = self._buffers_before
            if e.status == 3 and e.index in p["guards"]:
                self._nonfinite(p, p["guards"][e.index])
            raise
        self.step_count += 1
        return self.last_loss(n)

    def last_loss(self, n):
        lay = self.layout
        k = n * math.prod(lay.out_shape)
        return float(self.arena[lay.loss_off + k]), int(round(float(self.arena[lay.loss_off + k + 1])))

    def _threads_arg(self):
        return int(self.threads) if self.threads else 0

    def _nonfinite(self, p, what):
        """Rerun the forward pass layer by layer on the batch still in the arena; raise
        NonFiniteError naming the first layer whose output is not finite."""
        sp = p["plan"]
        lay = self.layout
        saved_buffers = self.arena[lay.buffers_off:lay.buffers_off + lay.buffers_floats].copy()
        bad, bad_span = None, None
        for name, off in sp.input_offs.items():
            if not np.isfinite(self.arena[off:off + sp.n * math.prod(self.graph[name].shape)]).all():
                raise NonFiniteError(f"the input batch of step {self.step_count + 1} holds NaN or inf "
                                     f"(input {name})", None, "check the data (np.isfinite(x).all())",
                                     step=self.step_count + 1, layer=name)
        ffi = _lib.ffi
        try:
            for i in range(sp.forward_steps):
                st = sp.steps[i]
                single = Program([p["prog"].steps[i]], lay.arena_floats, prepack=False)
                # the same seeds as the failed step
                if st.seeded:
                    ffi.cast(f"{st.call.struct} *", single.records[0].params).seed = \
                        _seed(self.seed, self.step_count, i)
                single.run(self.arena, single.new_ws() if single.ws_floats else None, self._threads_arg())
                y = self.arena[st.out:st.out + st.out_floats]
                if not np.isfinite(y).all():
                    bad, bad_span = st.node, st.span
                    break
        finally:
            self.arena[lay.buffers_off:lay.buffers_off + lay.buffers_floats] = saved_buffers
        where = f"at step {self.step_count + 1}"
        if what == "loss":
            msg = f"the loss is not finite {where}"
        else:
            msg = f"a gradient is not finite {where} (the loss was finite)"
        if bad is not None:
            msg += f": the first layer whose output is not finite is {bad}"
            hint = "lower the learning rate, clip gradients (--clip 1.0), or check the inputs for NaN"
        else:
            msg += ": every layer's output is finite, so the " + \
                ("loss itself overflowed" if what == "loss" else "backward pass overflowed")
            hint = "lower the learning rate or clip gradients (--clip 1.0)"
        raise NonFiniteError(msg, bad_span, hint, step=self.step_count + 1, layer=bad)
