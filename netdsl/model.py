"""Model: a parsed, expanded and shape-checked network, the object users hold.

    m = netdsl.load("resnet18")       # zoo name, .net path
    m.graph, m.output_shapes, m.summary()
    y = m(x)                          # runs on the C kernels
    m.state_dict(); m.load_state_dict(d); m.save_weights("w.npz")

Weights start deterministic (He-normal / zeros, BatchNorm identity, seed 0)
until real ones are loaded; the runtime is built on first call.
"""
from __future__ import annotations

import gc
import numbers
import os
import threading

import numpy as _np

from .analysis.infer import analyze, totals
from .errors import NetDSLError, Source
from .graph import Graph
from .passes import DEFAULT_LEVEL, LEVELS

# The front end (lark) is imported inside parse(): a compiled bundle (.netc)
# loads and runs without it.

_prepare_inputs = None      # runtime.session.prepare_inputs, imported on the first call
_F32 = _np.dtype(_np.float32)


def _fast_input_spec(graph):
    """(graph, input name, shape, ndim with the batch) for a one-input graph, else (graph, None, ...):
    what Model.__call__ checks a plain float32 array against without prepare_inputs."""
    if len(graph.inputs) != 1:
        return graph, None, None, None
    shape = tuple(graph[graph.inputs[0]].shape)
    return graph, graph.inputs[0], shape, len(shape) + 1


def _import_prepare():
    global _prepare_inputs
    from .runtime.session import prepare_inputs
    _prepare_inputs = prepare_inputs
    return prepare_inputs


ZOO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zoo")


class Model:
    MAX_THREADS = 1024      # OpenMP threads per call: more is a typo, not a setting

    def __init__(self, graph: Graph, name: str = "model", path: str | None = None, threads: int | None = None):
        self.graph = graph
        self.name = name
        self.path = path
        self._weights = None
        self._session = None
        # Weight changes and session builds are ordered by _lock and _generation: every
        # weight change bumps the generation, and a session built from an older generation
        # is never installed, so the last write wins whatever the threads do (issue 7).
        self._lock = threading.RLock()
        self._build_lock = threading.Lock()     # one build at a time (they are large)
        self._generation = 0
        self._session_generation = -1
        self._weights_loaded = False    # True once weights were loaded (not the seed-0 init)
        self._arena_bytes = {}          # batch size -> planned arena bytes (memory checks)
        self._threads = threads
        self._fast_input = None     # _fast_input_spec(graph), made on the first call
        self.opt_level = 0          # optimization level the graph was compiled at
        self.run_level = DEFAULT_LEVEL       # passes applied (on a copy) before running
        self.bundle = None          # a loaded .netc bundle's header (netdsl/bundle.py)
        self._features_cache = None     # (generation, layer names, Session) of the last features() call

    # -- weights
    @property
    def weights(self) -> dict:
        with self._lock:
            if self._weights is None:
                from .runtime.reference import init_weights
                from .runtime.memory import check_weights_fit
                check_weights_fit(self.graph)          # before allocating them
                self._weights = init_weights(self.graph, seed=0)
            return self._weights

    @property
    def weights_loaded(self) -> bool:
        """False while the weights are still the deterministic initialization (seed 0)."""
        return self._weights_loaded

    def _set_weights(self, new: dict):
        with self._lock:
            self._weights = new
            self._weights_loaded = True
            self._generation += 1
            self._session = None

    def state_dict(self) -> dict:
        """Ordered name -> array (copies), PyTorch names and layouts, in source order."""
        return {k: v.copy() for k, v in self.weights.items()}

    def load_state_dict(self, d: dict, strict: bool = True):
        """Replace the weights; every name, shape and dtype is checked, all problems reported at once.
        With strict=False, missing entries keep their current values and unknown ones are ignored."""
        from .runtime.weights import check_state_dict
        d = {k: v for k, v in d.items() if not k.endswith(".num_batches_tracked")}
        checked = check_state_dict(self.graph, d, strict=strict)
        with self._lock:
            new = dict(self.weights)
            new.update(checked)
            self._set_weights(new)

    def save_weights(self, path: str):
        """Write the weights to .npz or .safetensors."""
        from .runtime import weights
        weights.save(path, self.weights)

    def load_weights(self, source, strict: bool = True):
        """Load weights from a .npz/.safetensors path or a state dict."""
        if isinstance(source, dict):
            self.load_state_dict(source, strict=strict)
            return
        from .runtime import weights
        d = weights.load(source, expected=weights.expected(self.graph), strict=strict)
        self.load_state_dict(d, strict=strict)

    # -- running
    @property
    def threads(self):
        return self._threads

    @threads.setter
    def threads(self, t):
        if t is not None and (isinstance(t, bool) or not isinstance(t, numbers.Integral) or t < 1):
            raise NetDSLError(f"threads must be a positive integer, got {t!r}")
        if t is not None and t > self.MAX_THREADS:
            raise NetDSLError(f"threads = {t} is more than the {self.MAX_THREADS} netdsl accepts",
                              hint=f"this machine has {os.cpu_count()} cores; leave threads unset to use them all")
        with self._lock:
            self._threads = t
            if self._session is not None:
                self._session.threads = t

    def session(self):
        """The runtime for this model: the graph optimized at `run_level` (a copy; `graph`
        and `state_dict()` keep the source names), lowered and bound to the C kernels."""
        while True:
            with self._lock:
                if self._session is not None and self._session_generation == self._generation:
                    return self._session
            with self._build_lock:
                with self._lock:       # another thread may have built it meanwhile
                    if self._session is not None and self._session_generation == self._generation:
                        return self._session
                    gen, graph, weights = self._generation, self.graph, self.weights
                sess = self._build_session(graph, weights)
                with self._lock:
                    if gen == self._generation:
                        sess.threads = self._threads
                        self._session, self._session_generation = sess, gen
                        return sess
            # the weights changed while we built: build again from the new ones

    def _build_session(self, graph, weights):
        from .runtime.session import Session
        if self.run_level > self.opt_level:
            from .passes import optimize
            graph, weights, _ = optimize(graph, weights, level=self.run_level)
        return Session(graph, weights, self._threads)

    def check_memory(self, batch: int, extra: int = 0):
        """Raise a located NetDSLError when the weights and the arena for `batch` (plus `extra`
        bytes) do not fit in the memory available (NETDSL_MEMORY_LIMIT, else MemAvailable)."""
        from .runtime.memory import arena_bytes, check_fits
        if batch not in self._arena_bytes:
            self._arena_bytes[batch] = arena_bytes(self.graph, batch)
        check_fits(self.graph, batch, weights_allocated=self._weights is not None, extra=extra,
                   arena=self._arena_bytes[batch])

    def _check_batch(self, n, copies):
        """Before converting the inputs: a new batch size (or any input copy) must fit."""
        if n not in self._arena_bytes or copies:
            self.check_memory(n, extra=copies)

    def __call__(self, x):
        """Run the network: x is a float32 array [N, C, H, W] (or {input name: array}).
        One output -> an array; several -> {output name: array}."""
        fast = self._fast_input
        if fast is None or fast[0] is not self.graph:
            fast = self._fast_input = _fast_input_spec(self.graph)
        if (fast[1] is not None and type(x) is _np.ndarray and x.dtype is _F32 and x.ndim == fast[3]
                and x.shape[1:] == fast[2] and x.shape[0] >= 1 and x.flags.c_contiguous):
            n = x.shape[0]                  # the common call: nothing to convert or copy
            if n not in self._arena_bytes:
                self.check_memory(n)
            inputs = {fast[1]: x}
        else:
            inputs = (_prepare_inputs or _import_prepare())(self.graph, x, self._check_batch)
        out = self.session().run(inputs)
        return next(iter(out.values())) if len(out) == 1 else out

    # -- training (issue 10)
    def fit(self, x=None, y=None, **kw):
        """Train the network in place: a compiled step (forward, loss, backward, optimizer) per
        batch; returns the History (one row per epoch). x: uint8 images [N, C, H, W] (normalized
        as the input line says) or float arrays in the input's form, or a netdsl.train.data
        Dataset; y: labels. Keywords: epochs, batch, optimizer (netdsl.optim.SGD(...) or a
        name), lr, loss, label_smoothing, augment ("crop,flip" or an Augment), validation
        ((x, y), a Dataset or a fraction), clip, seed, threads, progress, out, resume, curves.
        See docs/TRAINING.md."""
        from .train.fit import fit
        return fit(self, x, y, **kw)

    def evaluate(self, x, y=None, loss="cross_entropy", batch=256) -> dict:
        """{"loss", "accuracy", "n"} on (x, y) through the ordinary inference path."""
        from .train.fit import evaluate
        return evaluate(self, x, y, loss=loss, batch=batch)

    # -- feature maps (issue 12)
    def feature_layers(self, layers=None) -> list:
        """The layer names `features` returns: `layers` checked (an unknown name is a NetDSLError
        with "did you mean"), or by default one per stage (stage_layers)."""
        if layers is None:
            return stage_layers(self.graph)
        if isinstance(layers, str):
            layers = [s.strip() for s in layers.split(",") if s.strip()]
        names = list(dict.fromkeys(layers))
        if not names:
            raise NetDSLError("no layers asked for", hint="name one or more layers, e.g. "
                              + ", ".join(stage_layers(self.graph)[:2]))
        for name in names:
            if name not in self.graph:
                from .errors import did_you_mean
                known = [nd.name for nd in self.graph.nodes()]
                hint = did_you_mean(name, known) or f"`netdsl summary {self.path or self.name}` lists the layers"
                if self.bundle is not None:
                    hint += (f"; a compiled bundle holds the graph optimized at -O{self.opt_level}, where fused "
                             "and folded layers are gone: ask the .net source for those")
                raise NetDSLError(f"{self.name} has no layer {name!r}", hint=hint)
        return names

    def features(self, x, layers=None) -> dict:
        """The activations of `layers` (default: the last layer of every stage, stage_layers) for
        input x, as {layer name: float32 array [N, *shape]}, computed in one run: the layers are
        made the outputs of a copy of the graph before it is optimized, so no pass fuses or folds
        them away (a fused ReLU's value is its Conv's output, which is the same number) and the
        planner keeps their buffers to the end; everything after them is not computed."""
        names = self.feature_layers(layers)
        inputs = (_prepare_inputs or _import_prepare())(self.graph, x, self._check_batch)
        computed = tuple(n for n in names if n not in self.graph.inputs)
        out = self._feature_session(computed).run(inputs) if computed else {}
        return {n: (inputs[n].copy() if n in self.graph.inputs else out[n]) for n in names}

    def _feature_session(self, names: tuple):
        with self._lock:
            cached = self._features_cache
            if cached is not None and cached[:2] == (self._generation, names):
                cached[2].threads = self._threads
                return cached[2]
            gen, graph, weights = self._generation, self.graph.copy(), self.weights
        graph.outputs = {n: n for n in names}
        if self.run_level > self.opt_level:
            from .passes import optimize
            graph, weights, _ = optimize(graph, weights, level=self.run_level)
        from .runtime.session import Session
        sess = Session(graph, weights, self._threads)
        with self._lock:
            if gen == self._generation:
                self._features_cache = (gen, names, sess)
        return sess

    def reference(self, x):
        """Run the numpy reference executor (slow; the oracle for tests)."""
        from .runtime.reference import run_reference
        from .runtime.session import prepare_inputs
        out = run_reference(self.graph, self.weights, prepare_inputs(self.graph, x))
        return next(iter(out.values())) if len(out) == 1 else out

    @property
    def input_shapes(self) -> dict:
        return {n: self.graph[n].shape for n in self.graph.inputs}

    @property
    def output_shapes(self) -> dict:
        return {k: self.graph[v].shape for k, v in self.graph.outputs.items()}

    @property
    def output_shape(self):
        shapes = list(self.output_shapes.values())
        return shapes[0] if len(shapes) == 1 else self.output_shapes

    def totals(self) -> dict:
        return totals(self.graph)

    @property
    def total_params(self) -> int:
        return self.totals()["total_params"]

    def memory(self, n: int = 1) -> dict:
        """The arena plan at batch n for the graph as it runs (optimized at `run_level`)."""
        from .compiler import memory
        return memory(self.graph, self.run_level, self.opt_level, n)

    def summary(self, depth=None):
        from .analysis.report import summary_text
        return summary_text(self, depth, self.memory())

    def summary_dict(self, depth=None):
        from .analysis.report import summary_dict
        return summary_dict(self, depth, self.memory())

    def explain(self):
        from .analysis.report import explain_text
        return explain_text(self)

    def to_onnx(self, path: str, opset: int | None = None, dynamic_batch: bool = True,
                batch: int | None = None):
        """Write the network with its weights as an ONNX file (needs the `onnx` extra): the
        graph as written (`graph`, BatchNorm kept, fused `act=` as separate nodes), node
        names = layer names, initializers = state-dict keys, batch dimension `N` unless
        dynamic_batch=False (batch 1) or `batch` fixes it. Checked with onnx.checker before
        it is written; returns the onnx.ModelProto. docs/INTEROP.md."""
        from .interop import onnx_export
        return onnx_export.export(self.graph, self.weights, path, opset=opset, dynamic_batch=dynamic_batch,
                                  batch=batch, name=self.name,
                                  source=os.path.basename(self.path) if self.path else None)

    def __repr__(self):
        t = self.totals()
        return f"<netdsl.Model {self.name}: {len(self.graph)} layers, {t['total_params']:,} params>"


STAGE_RATIO = 1.5      # a map this much smaller or larger than its stage's first one starts a new stage


def stage_layers(graph) -> list:
    """One layer per stage. The feature maps (C x H x W, more than 1x1, views and no-ops left
    out) that lead to the first output, in execution order, fall into stages: a new one starts
    where the spatial size changes by STAGE_RATIO or more from the stage's first map, i.e. at
    every pool, stride or upsampling, while an unpadded conv's few pixels (U-Net's 572 -> 570)
    do not. Each stage gives its last map that every path from the input goes through (a ResNet
    stage's last block output, not the first conv of the next block), else its last map. Side
    heads (GoogLeNet's aux classifiers) are not on that path; nor is a squeeze-excitation's
    1x1 branch, which is no map."""
    import networkx as nx

    from . import ops
    if not graph.outputs:
        return []
    main = graph.outputs[next(iter(graph.outputs))]
    keep = nx.ancestors(graph.g, main) | {main}
    through = set()                 # layers on every path from the input to the main output
    if len(graph.inputs) == 1:
        idom = nx.immediate_dominators(graph.g, graph.inputs[0])
        n = main
        while n in idom and n not in through:
            through.add(n)
            n = idom[n]
    runs = []                       # [(h, w) of the stage's first map, [maps]]
    for nd in graph.nodes():
        if nd.op == "Input" or nd.name not in keep or nd.shape is None or len(nd.shape) != 3 \
                or nd.shape[1] * nd.shape[2] <= 1 or "no_op" in ops.get(nd.op).flags:
            continue
        h, w = nd.shape[1:]
        if runs:
            h0, w0 = runs[-1][0]
            if max(h0 / h, h / h0, w0 / w, w / w0) < STAGE_RATIO:
                runs[-1][1].append(nd.name)
                continue
        runs.append([(h, w), [nd.name]])
    return [([m for m in maps if m in through] or maps)[-1] for _, maps in runs]


def zoo_names() -> list[str]:
    return sorted(f[:-4] for f in os.listdir(ZOO) if f.endswith(".net"))


def parse(text: str, name: str = "<string>", path: str | None = None) -> Model:
    """Parse .net source text into a checked Model (raises NetDSLError)."""
    from .frontend.expand import expand_module
    from .frontend.parser import parse_source
    # The front end allocates many small objects and frees none until it is done;
    # the cyclic GC would rescan them again and again (quadratic on long chains).
    enabled = gc.isenabled()
    gc.disable()
    try:
        module = parse_source(Source(name, text))
        graph, diags = expand_module(module, path, partial=True)
        analyze(graph, diags)
    finally:
        if enabled:
            gc.enable()
    base = os.path.splitext(os.path.basename(name))[0] if name != "<string>" else "model"
    return Model(graph, base, path)


def resolve_path(path_or_name: str) -> str:
    if os.path.exists(path_or_name):
        return path_or_name
    zoo = os.path.join(ZOO, path_or_name.lower() + ".net")
    if os.sep not in path_or_name and not path_or_name.endswith(".net") and os.path.exists(zoo):
        return zoo
    from .errors import did_you_mean
    hint = did_you_mean(path_or_name, zoo_names())
    raise NetDSLError(f"no such file or zoo model: {path_or_name}",
                      hint=hint or f"zoo models: {', '.join(zoo_names())}")


def load_source(path_or_name: str, weights: str | dict | None = None, threads: int | None = None,
                opt: int = DEFAULT_LEVEL) -> Model:
    path = resolve_path(path_or_name)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise NetDSLError(f"cannot read {path}: {e}", hint="is it a .net text file?")
    shown = path if not path.startswith(ZOO) else os.path.join("zoo", os.path.basename(path))
    m = parse(text, shown, path)
    m.threads = threads
    if isinstance(opt, bool) or opt not in LEVELS:
        raise NetDSLError(f"opt must be 0, 1, 2 or 3, got {opt!r}")
    m.run_level = opt
    if weights is not None:
        m.load_weights(weights)
    return m


def load_bundle(path: str, weights: str | dict | None = None, threads: int | None = None) -> Model:
    """Open a compiled .netc bundle as a ready-to-run Model: the graph exactly as compiled
    (it runs at its own level, no further passes), its weights viewing the file's bytes."""
    from .bundle import read_file
    b = read_file(path)
    if "quant" in b.header:                 # an int8 bundle: netdsl.load -> netdsl.quant.bundle
        raise NetDSLError(f"{path} is an int8 bundle (netdsl quantize)",
                          hint="open it with netdsl.load, which returns a QuantizedModel")
    m = Model(b.graph, b.header["model"], path, threads=threads)
    m._weights = b.weights
    m._weights_loaded = b.header["weights"] == "loaded"     # else the seed-0 init, compiled
    m.opt_level = m.run_level = b.header["opt_level"]
    m.bundle = b.header
    if weights is not None:
        m.load_weights(weights)
    return m
