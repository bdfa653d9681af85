"""Darknet import: a `.cfg` (and optionally its `.weights`) as a `.net` file and a state dict.

    [net] width=416 height=416 channels=3        input x: 3x416x416 (mean=(0, 0, 0), std=(1, 1, 1))
    [convolutional] filters=16 size=3 ...   ->   conv0:Conv(16, 3, pad=1, bias=false) - bn0:BN - LeakyReLU(0.1)
    [route] layers=-1,8                          [ _ | leaky8 ] - Concat
    [yolo] mask=3,4,5 anchors=...                YoloDecode(80, anchors=(81, 82, ...), input=416x416)

How a cfg is read: one section per Darknet layer, numbered from 0 after [net] as Darknet
numbers them (the labels carry that number: conv13, bn13, pool11, up19, yolo23), keys checked
against what each section takes. `[route]`/`[shortcut]` indices (negative: relative, else
absolute) become references to the label of the layer they name, never indices. Every problem
(an unknown section or key, a missing or bad value, an index out of range, sizes that do not
fit) is a located diagnostic, `file.cfg:line:col` with the line and a caret, and all of them
are reported at once.

Darknet's own arithmetic is reproduced where it differs from PyTorch's:
- `[maxpool]` pads `padding` (default size-1) cells in total, `padding // 2` at the top/left
  and the rest at the bottom/right, out = (h + padding - size) // stride + 1: a 2x2 pool with
  stride 1 keeps the size (padding one row/column at the bottom/right), a stride-2 pool on an
  odd size rounds up. Written as MaxPool(k, stride=s, pad=(top, left, bottom, right)).
- `leaky` is slope 0.1 (LeakyReLU(0.1)); BN is BatchNorm with eps 1e-5 (AlexeyAB's darknet;
  pjreddie's adds 1e-6 to the square root instead: the difference is below float precision for
  trained variances).
- `[yolo]` / `[region]` become YoloDecode / RegionDecode (netdsl/ops/detect.py): the decoded
  boxes, one row per box; non-maximum suppression runs after the network (netdsl/runtime/detect.py).

What this does not do: [reorg], [local], [crop], [sam], [scale_channels], XNOR/binary convs,
deformable or anti-aliased convs, `weights_type` shortcuts; each is a located error naming the
section. Training keys (learning rate, augmentation, loss settings) are accepted and ignored.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field

from ..errors import ErrorSink, Source, Span, did_you_mean
from .common import Imported, InteropError
from .netwriter import Layer, Net, write

ALIASES = {"network": "net", "conv": "convolutional", "max": "maxpool", "avg": "avgpool",
           "conn": "connected", "soft": "softmax"}
UNSUPPORTED = {"reorg", "reorg3d", "local", "crop", "sam", "scale_channels", "deconvolutional",
               "rnn", "lstm", "gru", "crnn", "conv_lstm", "normalization", "batchnorm",
               "implicit_add", "implicit_mul", "gaussian_yolo", "contrastive", "empty", "silence",
               "detection", "l2norm", "logistic", "activation"}

# Keys that change only training (Darknet reads them, the forward pass does not use them).
_TRAIN_NET = {
    "batch", "subdivisions", "momentum", "decay", "angle", "saturation", "exposure", "hue",
    "learning_rate", "burn_in", "max_batches", "policy", "steps", "scales", "step", "gamma",
    "power", "max_crop", "min_crop", "aspect", "flip", "mosaic", "mixup", "cutmix", "blur",
    "letter_box", "label_smooth_eps", "track", "time_steps", "augment_speed", "sequential",
    "adam", "B1", "B2", "eps", "loss_scale", "dynamic_minibatch", "optimized_memory",
    "workspace_size_limit_MB", "max_chart_loss", "ema_alpha", "gaussian_noise", "mosaic_bound",
    "contrastive", "unsupervised", "attention", "adversarial_lr", "num_sigmas_reject_badlabels",
    "equidistant_point", "inputs", "max", "center", "rate", "clip", "wait_stream", "try_fix_nan",
    "use_cuda_graph", "flip", "random", "burnin_update", "train_only_bn", "show_receptive_field",
    "bflops"}
_TRAIN_LAYER = {"stopbackward", "dontload", "dontloadscales", "learning_rate", "train",
                "dontsave", "stop_backward", "onlyforward", "max_delta", "truth_thresh",
                "ignore_thresh", "jitter", "random", "resize", "iou_thresh", "iou_normalizer",
                "cls_normalizer", "obj_normalizer", "iou_loss", "nms_kind", "beta_nms",
                "counters_per_class", "label_smooth_eps", "focal_loss", "objectness_smooth",
                "rescore", "object_scale", "noobject_scale", "class_scale", "coord_scale",
                "bias_match", "absolute", "thresh", "map", "tree", "log", "sqrt", "max_boxes",
                "embedding_layer", "track_history_size", "sim_thresh", "dets_for_track",
                "dets_for_show", "track_ciou_norm", "show_details", "temperature_train",
                "noloss", "spatial", "type", "scale_wh"}

_ACTS = {"linear": None, "leaky": ("LeakyReLU", (0.1,)), "relu": ("ReLU", ()),
         "mish": ("Mish", ()), "swish": ("SiLU", ()), "logistic": ("Sigmoid", ()),
         "tanh": ("Tanh", ())}


@dataclass
class Opt:
    key: str
    value: str
    line: int
    key_col: int
    val_col: int


@dataclass
class Section:
    kind: str                   # canonical name (aliases resolved)
    written: str                # as written
    line: int
    col: int
    opts: dict = field(default_factory=dict)
    used: set = field(default_factory=set)


@dataclass
class WeightField:
    """One array of a layer in the .weights file, in file order: written to state[f"{names[layer]}.{param}"]."""
    layer: str
    param: str
    shape: tuple


@dataclass
class WeightBlock:
    """The arrays of one Darknet layer, in the order the .weights file holds them."""
    index: int
    what: str                       # "conv 13", for messages
    fields: list = field(default_factory=list)
    transpose_fc: bool = False      # a connected layer (its matrix is transposed in old files)


# ---------------------------------------------------------------- the ini-like text

def parse_sections(text: str, src: Source, sink: ErrorSink) -> list[Section]:
    """Sections with their keys, positions kept. Comments: lines starting with # or ;, and a
    trailing # comment. Darknet strips all whitespace; so do we (around keys and values)."""
    sections: list[Section] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        body = raw.split("#", 1)[0] if not raw.lstrip().startswith(";") else ""
        s = body.strip()
        if not s:
            continue
        col = raw.index(s[0]) + 1
        if s.startswith("["):
            if not s.endswith("]"):
                sink.add(f"section header '{s}' has no closing ']'", Span(src, lineno, col, col + len(s)),
                         hint="write it as [convolutional]")
                continue
            name = s[1:-1].strip().lower()
            sections.append(Section(ALIASES.get(name, name), name, lineno, col))
            continue
        if "=" not in s:
            sink.add(f"expected key=value, got '{s}'", Span(src, lineno, col, col + len(s)),
                     hint="each line of a section is key=value, e.g. filters=64")
            continue
        key, _, value = s.partition("=")
        vcol = raw.index("=", col - 1) + 2
        while vcol <= len(raw) and raw[vcol - 1] in " \t":
            vcol += 1
        key, value = key.strip(), re.sub(r"\s+", "", value)
        if not sections:
            sink.add(f"'{key}' comes before any [section]", Span(src, lineno, col, col + len(key)),
                     hint="a Darknet cfg starts with [net]")
            continue
        if not value:
            sink.add(f"'{key}' has no value", Span(src, lineno, col, col + len(s)),
                     hint=f"write {key}=<value>")
            continue
        if key in sections[-1].opts:
            sink.add(f"'{key}' is set twice in this [{sections[-1].written}]", Span(src, lineno, col, col + len(key)),
                     hint="Darknet would use the first value; delete one of them")
            continue
        sections[-1].opts[key] = Opt(key, value, lineno, col, vcol)
    return sections


class _Reader:
    """Typed access to one section's keys; each problem goes to the sink with the key's span."""

    def __init__(self, sec: Section, src: Source, sink: ErrorSink):
        self.sec, self.src, self.sink = sec, src, sink

    def span(self, key=None, item=None):
        o = self.sec.opts.get(key) if key else None
        if o is None:
            n = len(self.sec.written) + 2
            return Span(self.src, self.sec.line, self.sec.col, self.sec.col + n)
        if item is not None:                         # one comma-separated item of the value
            raw = self.src.line(o.line)
            pos, start = 0, o.val_col - 1
            parts = raw[start:].split("#", 1)[0].split(",")
            for i, p in enumerate(parts):
                if i == item:
                    lead = len(p) - len(p.lstrip())
                    c = start + pos + lead + 1
                    return Span(self.src, o.line, c, c + len(p.strip()))
                pos += len(p) + 1
        return Span(self.src, o.line, o.val_col, o.val_col + len(o.value))

    def has(self, key):
        return key in self.sec.opts

    def _get(self, key, default, conv, what):
        self.sec.used.add(key)
        o = self.sec.opts.get(key)
        if o is None:
            if default is _REQ:
                self.sink.add(f"[{self.sec.written}] needs '{key}' ({what})", self.span(),
                              hint=f"add a line {key}=<{what}> to this section")
            return None if default is _REQ else default
        try:
            return conv(o.value)
        except ValueError:
            self.sink.add(f"'{key}' must be {what}, got '{o.value}'", self.span(key),
                          hint=f"write e.g. {key}={_EXAMPLES.get(what, '1')}")
            return None if default is _REQ else default

    def int(self, key, default=None, minimum=None):
        v = self._get(key, _REQ if default is None else default, int, "an integer")
        if v is not None and minimum is not None and v < minimum:
            self.sink.add(f"'{key}' must be at least {minimum}, got {v}", self.span(key),
                          hint=f"write {key}={max(minimum, 1)} or more")
            return default if default is not None else minimum
        return v

    def float(self, key, default):
        return self._get(key, default, float, "a number")

    def str(self, key, default):
        return self._get(key, default, lambda s: s.lower(), "a word")

    def ints(self, key, default=None):
        return self._get(key, _REQ if default is None else default,
                         lambda s: [int(x) for x in s.split(",") if x != ""], "integers separated by commas")

    def floats(self, key, default=None):
        return self._get(key, _REQ if default is None else default,
                         lambda s: [float(x) for x in s.split(",") if x != ""], "numbers separated by commas")

    def error(self, message, key=None, hint=None, item=None):
        self.sink.add(message, self.span(key, item), hint=hint)

    def finish(self, known, unsupported=()):
        """Keys nobody read: training keys are fine, a feature netdsl lacks or a typo is an error."""
        train = _TRAIN_NET if self.sec.kind == "net" else _TRAIN_LAYER
        for key, o in self.sec.opts.items():
            if key in self.sec.used or key in known or key in train:
                continue
            sp = Span(self.src, o.line, o.key_col, o.key_col + len(key))
            if key in unsupported:
                self.sink.add(f"[{self.sec.written}] '{key}={o.value}' is not supported by netdsl", sp,
                              hint=unsupported[key] if isinstance(unsupported, dict) else
                              "remove the key, or convert the layer by hand")
            else:
                hint = did_you_mean(key, sorted(set(known) | self.sec.used))
                self.sink.add(f"[{self.sec.written}] has no key '{key}'", sp,
                              hint=hint or f"its keys are: {', '.join(sorted(set(known) | self.sec.used))}")


_REQ = object()
_EXAMPLES = {"an integer": "3", "a number": "0.5", "a word": "leaky",
             "integers separated by commas": "-1,8", "numbers separated by commas": "10,14,23,27"}


# ---------------------------------------------------------------- the network

@dataclass
class Parsed:
    """A cfg as a netwriter Net, the weight layout in .weights order, and facts for the header."""
    net: Net
    blocks: list
    input_shape: tuple
    n_layers: int


def parse_cfg(text: str, path: str = "model.cfg") -> Parsed:
    """Parse a Darknet .cfg into a Net (raises InteropError with every problem located)."""
    src = Source(os.path.basename(path) if path else "model.cfg", text)
    sink = ErrorSink()
    sections = parse_sections(text, src, sink)
    if not sections:
        sink.add("the file has no [net] section and no layers", Span(src, 1, 1, 2),
                 hint="a Darknet cfg starts with [net] (width=, height=, channels=) and lists its layers")
        raise InteropError(sink.diagnostics)
    b = _Builder(src, sink)
    first = sections[0]
    if first.kind != "net":
        sink.add(f"the first section is [{first.written}], not [net]",
                 Span(src, first.line, first.col, first.col + len(first.written) + 2),
                 hint="a Darknet cfg starts with [net] giving width=, height= and channels=")
        layers = sections
    else:
        b.net_section(first)
        layers = sections[1:]
    for i, sec in enumerate(layers):
        if sec.kind == "net":
            sink.add("a second [net] section", Span(src, sec.line, sec.col, sec.col + len(sec.written) + 2),
                     hint="[net] comes once, first")
            b.skip(i)
            continue
        fn = getattr(b, "sec_" + sec.kind, None)
        if fn is None:
            sp = Span(src, sec.line, sec.col, sec.col + len(sec.written) + 2)
            if sec.kind in UNSUPPORTED:
                sink.add(f"Darknet's [{sec.written}] layer is not supported by netdsl", sp,
                         hint="netdsl imports [net], [convolutional], [maxpool], [avgpool], [route], "
                              "[shortcut], [upsample], [yolo], [region], [dropout], [softmax], [connected]")
            else:
                hint = did_you_mean(sec.written, sorted(n[4:] for n in dir(b) if n.startswith("sec_")))
                sink.add(f"unknown section [{sec.written}]", sp,
                         hint=hint or "netdsl imports [net], [convolutional], [maxpool], [avgpool], "
                                      "[route], [shortcut], [upsample], [yolo], [region], [dropout], "
                                      "[softmax], [connected]")
            b.skip(i)
            continue
        b.index = i
        fn(_Reader(sec, src, sink))
    if sink:
        raise InteropError(sink.diagnostics)
    heads = b.heads or [b.out[-1]]
    b.net.outputs = heads
    return Parsed(b.net, b.blocks, b.input_shape, len(layers))


class _Builder:
    def __init__(self, src, sink):
        self.src, self.sink = src, sink
        self.net = Net()
        self.input_shape = (3, 416, 416)
        self.out: list = []          # darknet index -> netwriter value name (None: broken layer)
        self.shape: list = []        # darknet index -> (C, H, W) or (F,)
        self.blocks: list = []
        self.heads: list = []
        self.index = 0

    # -- helpers
    def prev(self):
        if not self.out:
            return "x", self.input_shape
        return self.out[-1], self.shape[-1]         # (None, None) after a broken layer

    def done(self, name, shape):
        self.out.append(name)
        self.shape.append(shape)

    def skip(self, i):
        """A section that could not be read: layers that read it are not checked against it
        (their keys still are), so one mistake is reported once."""
        self.done(None, None)

    def add(self, name, op, args=(), kwargs=None, inputs=(), label=None):
        self.net.add(Layer(name, op, tuple(args), dict(kwargs or {}), tuple(inputs), label=label))
        return name

    def act_name(self, r, default="linear"):
        """The section's activation, checked (None when it is not one netdsl has)."""
        a = r.str("activation", default)
        if a not in _ACTS:
            r.error(f"activation '{a}' is not supported by netdsl", "activation",
                    hint=did_you_mean(a, _ACTS) or f"netdsl imports {', '.join(_ACTS)}")
            return None
        return a

    def act(self, r, value, default="linear"):
        a = self.act_name(r, default)
        if a is None or _ACTS[a] is None:
            return value
        op, args = _ACTS[a]
        return self.add(f"{a}{self.index}", op, args, inputs=(value,))

    def need_map(self, r, shape, what):
        if shape is None:                            # after a broken layer: already reported
            return False
        if len(shape) == 2:
            r.error(f"[{r.sec.written}] needs a feature map as input, but {what} is the boxes of a "
                    f"detection layer", hint="a [yolo] or [region] layer ends a branch: start the next "
                                             "one with a [route]")
            return False
        if len(shape) != 3:
            r.error(f"[{r.sec.written}] needs a feature map as input, but {what} is a vector "
                    f"of {shape[0]} values", hint="a [connected] layer's output cannot feed a spatial layer")
            return False
        return True

    def ref(self, r, key, v, item):
        """Layer index v of a route/shortcut (negative: relative) -> absolute index or None."""
        i = self.index + v if v < 0 else v
        if not 0 <= i < self.index:
            rel = f"{v} from layer {self.index} is layer {i}" if v < 0 else f"layer {v}"
            r.error(f"[{r.sec.written}] {key}={v}: {rel}, but only layers 0..{self.index - 1} come before it",
                    key, item=item,
                    hint=(f"use a value from -1 to -{self.index} (relative) or 0 to {self.index - 1} (absolute)"
                          if self.index else "a route or shortcut cannot be the first layer"))
            return None
        if self.out[i] is None:
            return None
        return i

    # -- sections
    def net_section(self, sec):
        r = _Reader(sec, self.src, self.sink)
        w, h, c = r.int("width", None, 1), r.int("height", None, 1), r.int("channels", 3, 1)
        w, h = w or 416, h or 416                   # (reported when missing: Darknet needs both)
        self.input_shape = (c, h, w)
        self.net.add_input("x", self.input_shape, mean=(0,) * c, std=(1,) * c)
        r.finish({"width", "height", "channels"})

    def sec_convolutional(self, r):
        i = self.index
        x, s = self.prev()
        filters = r.int("filters", None, 1)
        size = r.int("size", 1, 1)
        stride = r.int("stride", 1, 1)
        pad = r.int("pad", 0, 0)
        padding = r.int("padding", 0, 0)
        if pad:
            padding = size // 2
        groups = r.int("groups", 1, 1)
        dilation = r.int("dilation", 1, 1)
        bn = r.int("batch_normalize", 0, 0)
        a_known = {"activation"}
        r.finish({"filters", "size", "stride", "pad", "padding", "groups", "batch_normalize",
                  "dilation"} | a_known,
                 {k: "netdsl has no such convolution; convert the layer by hand" for k in
                  ("binary", "xnor", "antialiasing", "deform", "share_index", "stride_x", "stride_y",
                   "flipped", "dot", "assisted_excitation", "coordconv", "bin_output", "sway",
                   "rotate", "stretch", "stretch_sway")})
        if filters is None or not self.need_map(r, s, "its input"):
            self.act_name(r, "logistic")
            self.skip(i)
            return
        c, h, w = s
        if c % groups or filters % groups:
            r.error(f"groups={groups} must divide the input channels ({c}) and filters ({filters})", "groups",
                    hint=f"the layer before makes {c} channels")
            self.act_name(r, "logistic")
            self.skip(i)
            return
        ke = (size - 1) * dilation + 1
        oh, ow = (h + 2 * padding - ke) // stride + 1, (w + 2 * padding - ke) // stride + 1
        if oh < 1 or ow < 1:
            r.error(f"a {size}x{size} conv with padding {padding} does not fit the {h}x{w} input", "size",
                    hint="the input is smaller than the kernel")
            self.act_name(r, "logistic")
            self.skip(i)
            return
        kw = {}
        if stride != 1:
            kw["stride"] = stride
        if padding:
            kw["pad"] = padding
        if dilation != 1:
            kw["dilation"] = dilation
        if groups != 1:
            kw["groups"] = groups
        if bn:
            kw["bias"] = False
        conv = self.add(f"conv{i}", "Conv", (filters, size), kw, (x,), label=f"conv{i}")
        blk = WeightBlock(i, f"conv {i}")
        wshape = (filters, c // groups, size, size)
        if bn:
            y = self.add(f"bn{i}", "BN", (), {}, (conv,), label=f"bn{i}")
            blk.fields = [WeightField(y, "bias", (filters,)), WeightField(y, "weight", (filters,)),
                          WeightField(y, "running_mean", (filters,)), WeightField(y, "running_var", (filters,)),
                          WeightField(conv, "weight", wshape)]
        else:
            y = conv
            blk.fields = [WeightField(conv, "bias", (filters,)), WeightField(conv, "weight", wshape)]
        self.blocks.append(blk)
        y = self.act(r, y, "logistic")
        self.done(y, (filters, oh, ow))

    def sec_maxpool(self, r):
        i = self.index
        x, s = self.prev()
        stride = r.int("stride", 1, 1)
        size = r.int("size", stride, 1)
        padding = r.int("padding", size - 1, 0)
        r.finish({"stride", "size", "padding"},
                 {k: "netdsl's MaxPool has no such mode" for k in
                  ("stride_x", "stride_y", "maxpool_depth", "out_channels", "antialiasing")})
        if not self.need_map(r, s, "its input"):
            self.skip(i)
            return
        c, h, w = s
        oh, ow = (h + padding - size) // stride + 1, (w + padding - size) // stride + 1
        if oh < 1 or ow < 1:
            r.error(f"a {size}x{size} max pool does not fit the {h}x{w} input", "size")
            self.skip(i)
            return
        lo = padding // 2
        # Darknet's window i covers rows lo_offset + i*stride ...; cells outside the input are skipped,
        # which is max-pooling over a -inf padding: top/left padding//2, bottom/right what the last
        # window needs.
        bh, bw = max(0, (oh - 1) * stride + size - h - lo), max(0, (ow - 1) * stride + size - w - lo)
        kw = {}
        if stride != size:
            kw["stride"] = stride
        if lo or bh or bw:
            kw["pad"] = (lo, lo, bh, bw)
        y = self.add(f"pool{i}", "MaxPool", (size,), kw, (x,))
        self.done(y, (c, oh, ow))

    def sec_avgpool(self, r):
        i = self.index
        x, s = self.prev()
        r.finish(set())
        if not self.need_map(r, s, "its input"):
            self.skip(i)
            return
        y = self.add(f"avg{i}", "GlobalAvgPool", (), {}, (x,))
        self.done(y, (s[0], 1, 1))

    def sec_dropout(self, r):
        x, s = self.prev()
        p = r.float("probability", 0.5)
        r.finish({"probability"}, {"dropblock": "netdsl runs inference only; remove the key",
                                   "dropblock_size_rel": "netdsl runs inference only; remove the key",
                                   "dropblock_size_abs": "netdsl runs inference only; remove the key"})
        if not 0 <= p < 1:
            r.error(f"'probability' must be in [0, 1), got {p}", "probability")
            p = 0.5
        if s is None:
            self.skip(self.index)
            return
        y = self.add(f"dropout{self.index}", "Dropout", (p,), {}, (x,))
        self.done(y, s)

    def sec_cost(self, r):                     # the training loss: an identity at inference
        r.finish({"type", "scale", "ratio", "noobject_scale", "thresh"})
        self.done(*self.prev())

    def sec_softmax(self, r):
        x, s = self.prev()
        groups = r.int("groups", 1, 1)
        t = r.float("temperature", 1.0)
        r.finish({"groups", "temperature"}, {"tree": "netdsl has no hierarchical softmax"})
        if groups != 1:
            r.error("softmax with groups is not supported by netdsl", "groups", hint="use groups=1")
        if t != 1.0:
            r.error("softmax with a temperature is not supported by netdsl", "temperature",
                    hint="use temperature=1")
        if s is None or len(s) == 2:
            if s is not None:
                r.error("[softmax] after a detection layer", hint="[yolo]/[region] already give probabilities")
            self.skip(self.index)
            return
        if len(s) == 3 and s[1:] != (1, 1):
            x = self.add(f"flatten{self.index}", "Flatten", (), {}, (x,))   # Darknet: one softmax over C·H·W
            s = (s[0] * s[1] * s[2],)
        y = self.add(f"softmax{self.index}", "Softmax", (), {}, (x,))
        self.done(y, s)

    def sec_connected(self, r):
        i = self.index
        x, s = self.prev()
        n = r.int("output", 1, 1)
        bn = r.int("batch_normalize", 0, 0)
        r.finish({"output", "batch_normalize", "activation"})
        if s is None or len(s) == 2:
            self.act_name(r, "logistic")
            if s is not None:
                r.error("[connected] after a detection layer", hint="start the next branch with a [route]")
            self.skip(i)
            return
        fan_in = 1
        for d in s:
            fan_in *= d
        kw = {"bias": False} if bn else {}
        fc = self.add(f"fc{i}", "FC", (n,), kw, (x,), label=f"fc{i}")
        blk = WeightBlock(i, f"connected {i}", transpose_fc=True)
        if bn:
            y = self.add(f"bn{i}", "BN", (), {}, (fc,), label=f"bn{i}")
            blk.fields = [WeightField(y, "bias", (n,)), WeightField(fc, "weight", (n, fan_in)),
                          WeightField(y, "weight", (n,)), WeightField(y, "running_mean", (n,)),
                          WeightField(y, "running_var", (n,))]
        else:
            y = fc
            blk.fields = [WeightField(fc, "bias", (n,)), WeightField(fc, "weight", (n, fan_in))]
        self.blocks.append(blk)
        y = self.act(r, y, "logistic")
        self.done(y, (n,))

    def sec_upsample(self, r):
        i = self.index
        x, s = self.prev()
        stride = r.int("stride", 2)
        scale = r.float("scale", 1.0)
        r.finish({"stride", "scale"})
        if stride is not None and stride < 1:
            r.error(f"[upsample] stride={stride} (Darknet's downsampling) is not supported", "stride",
                    hint="use a positive stride")
            self.skip(i)
            return
        if scale != 1.0:
            r.error("[upsample] scale (a multiplier on the values) is not supported", "scale",
                    hint="use scale=1")
        if not self.need_map(r, s, "its input"):
            self.skip(i)
            return
        y = self.add(f"up{i}", "Upsample", (stride,), {}, (x,))
        self.done(y, (s[0], s[1] * stride, s[2] * stride))

    def sec_route(self, r):
        i = self.index
        idx = r.ints("layers")
        groups = r.int("groups", 1, 1)
        gid = r.int("group_id", 0, 0)
        r.finish({"layers", "groups", "group_id"}, {"stopbackward": "remove the key"})
        if not idx:
            if idx is not None:
                r.error("[route] layers= lists no layer", "layers", hint="write e.g. layers=-1,8")
            self.skip(i)
            return
        if gid >= groups:
            r.error(f"group_id={gid} but groups={groups}: the groups are 0..{groups - 1}", "group_id")
            gid = 0
        srcs = []
        for k, v in enumerate(idx):
            j = self.ref(r, "layers", v, k)
            if j is not None:
                srcs.append((k, j))
        if len(srcs) != len(idx):
            self.skip(i)
            return
        vals, shapes = [], []
        for k, j in srcs:
            v, s = self.out[j], self.shape[j]
            if len(s) != 3:
                r.error(f"[route] layer {j} is a vector, not a feature map", "layers", item=k)
                self.skip(i)
                return
            if groups > 1:
                if s[0] % groups:
                    r.error(f"[route] groups={groups} does not divide layer {j}'s {s[0]} channels", "groups")
                    self.skip(i)
                    return
                cg = s[0] // groups
                v = self.add(f"slice{i}_{j}" if len(srcs) > 1 else f"slice{i}", "Slice",
                             (gid * cg, (gid + 1) * cg), {}, (v,))
                s = (cg,) + tuple(s[1:])
            vals.append(v)
            shapes.append(s)
        if any(sh[1:] != shapes[0][1:] for sh in shapes):
            desc = ", ".join(f"layer {j}: {sh[0]}x{sh[1]}x{sh[2]}" for (_, j), sh in zip(srcs, shapes))
            r.error(f"[route] concatenates maps of different sizes ({desc})", "layers",
                    hint="every routed layer must have the same height and width")
            self.skip(i)
            return
        if len(vals) == 1:
            self.done(vals[0], shapes[0])
            return
        y = self.add(f"route{i}", "Concat", (), {}, tuple(vals))
        self.done(y, (sum(sh[0] for sh in shapes),) + tuple(shapes[0][1:]))

    def sec_shortcut(self, r):
        i = self.index
        x, s = self.prev()
        idx = r.ints("from")
        r.finish({"from", "activation"},
                 {"weights_type": "netdsl has no weighted shortcut", "weights_normalization":
                  "netdsl has no weighted shortcut"})
        if not idx or s is None:
            self.act_name(r, "linear")
            self.skip(i)
            return
        vals = [x]
        for k, v in enumerate(idx):
            j = self.ref(r, "from", v, k)
            if j is None:
                self.act_name(r, "linear")
                self.skip(i)
                return
            if self.shape[j] != s:
                sj = "x".join(map(str, self.shape[j]))
                r.error(f"[shortcut] adds layer {j} ({sj}) to layer {i - 1} ({'x'.join(map(str, s))}): "
                        f"the shapes differ", "from", item=k,
                        hint="netdsl adds maps of equal shape only (Darknet would add the common channels)")
                self.act_name(r, "linear")
                self.skip(i)
                return
            vals.append(self.out[j])
        y = self.add(f"shortcut{i}", "Add", (), {}, tuple(vals))
        y = self.act(r, y)
        self.done(y, s)

    def _head_check(self, r, s, per, n, classes, what):
        if not self.need_map(r, s, "its input"):
            return False
        if s[0] != n * per:
            r.error(f"[{r.sec.written}] expects {n} x ({what}) = {n * per} channels, "
                    f"but layer {self.index - 1} makes {s[0]}",
                    hint=f"the [convolutional] before it should have filters={n * per}")
            return False
        return True

    def sec_yolo(self, r):
        i = self.index
        x, s = self.prev()
        classes = r.int("classes", 20, 1)
        num = r.int("num", 1, 1)
        anchors = r.floats("anchors", [])
        mask = r.ints("mask", [])
        sxy = r.float("scale_x_y", 1.0)
        new = r.int("new_coords", 0, 0)
        r.finish({"classes", "num", "anchors", "mask", "scale_x_y", "new_coords"})
        if new:
            r.error("[yolo] new_coords=1 (scaled-YOLOv4 box formulas) is not supported", "new_coords")
        if len(anchors) % 2 or len(anchors) < 2 * num:
            r.error(f"'anchors' must hold num={num} (w, h) pairs: {2 * num} numbers, got {len(anchors)}",
                    "anchors" if r.has("anchors") else None)
            self.skip(i)
            return
        mask = mask or list(range(num))
        for k, m in enumerate(mask):
            if not 0 <= m < num:
                r.error(f"mask {m} names no anchor: there are {num} (0..{num - 1})", "mask", item=k)
                self.skip(i)
                return
        if not self._head_check(r, s, classes + 5, len(mask), classes, f"5 + {classes} classes"):
            self.skip(i)
            return
        pairs = [anchors[2 * m + k] for m in mask for k in (0, 1)]
        kw = {"anchors": tuple(_num(a) for a in pairs), "image": tuple(self.input_shape[1:])}
        if sxy != 1.0:
            kw["scale_xy"] = sxy
        y = self.add(f"yolo{i}", "YoloDecode", (classes,), kw, (x,))
        self.heads.append(y)
        self.done(y, (len(mask) * s[1] * s[2], 5 + classes))

    def sec_region(self, r):
        i = self.index
        x, s = self.prev()
        classes = r.int("classes", 20, 1)
        num = r.int("num", 1, 1)
        coords = r.int("coords", 4, 1)
        anchors = r.floats("anchors", [])
        softmax = r.int("softmax", 0, 0)
        r.finish({"classes", "num", "coords", "anchors", "softmax"},
                 {"background": "netdsl's RegionDecode has no background class",
                  "tree": "netdsl has no hierarchical softmax (YOLO9000)"})
        if coords != 4:
            r.error(f"[region] coords={coords}: only 4 box coordinates are supported", "coords")
        if len(anchors) != 2 * num:
            r.error(f"'anchors' must hold num={num} (w, h) pairs: {2 * num} numbers, got {len(anchors)}",
                    "anchors" if r.has("anchors") else None)
            self.skip(i)
            return
        if not self._head_check(r, s, classes + 5, num, classes, f"5 + {classes} classes"):
            self.skip(i)
            return
        kw = {"anchors": tuple(_num(a) for a in anchors)}
        if not softmax:
            kw["softmax"] = False
        y = self.add(f"region{i}", "RegionDecode", (classes,), kw, (x,))
        self.heads.append(y)
        self.done(y, (num * s[1] * s[2], 5 + classes))


def _num(v: float):
    return int(v) if float(v).is_integer() else v


# ---------------------------------------------------------------- the importer

def import_darknet(path: str, weights: str | None = None, name: str | None = None) -> Imported:
    """Import a Darknet `.cfg` (and its `.weights`, when given) as `.net` text + state dict.

    Without weights the state dict is empty (the model gets netdsl's deterministic init)."""
    from . import darknet_weights
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError as e:
        raise InteropError(f"cannot read {path}: {e.strerror or e}",
                           hint="check the path of the .cfg file") from None
    base = os.path.splitext(os.path.basename(path))[0]
    name = name or base
    p = parse_cfg(text, path)
    p.net.name = name
    c, h, w = p.input_shape
    p.net.header = [f"{name}: imported from {os.path.basename(path)} (Darknet), {p.n_layers} layers, "
                    f"input {w}x{h}x{c}",
                    "labels carry Darknet's layer numbers" + next(
                        (f": {l.label} is layer {l.label[4:]} of the cfg" for l in p.net.layers if l.op == "Conv"), "")]
    state, notes = {}, []
    head = None
    if weights is not None:
        head, arrays = darknet_weights.read_weights(weights, p.blocks)
        p.net.header.append(f"weights: {os.path.basename(weights)} (format {head.major}.{head.minor}."
                            f"{head.revision}, seen {head.seen:,} images)")
    text_out, names = write(p.net)
    if weights is not None:
        state = {f"{names[layer]}.{param}": v for (layer, param), v in arrays.items()}
    n_weights = sum(_count(f.shape) for b in p.blocks for f in b.fields)
    notes.append(f"{p.n_layers} Darknet layers, {len(p.blocks)} with weights ({n_weights:,} floats in a .weights file)")
    return Imported(text=text_out, state=state, source=path, name=name, notes=notes)


def _count(shape):
    n = 1
    for d in shape:
        n *= d
    return n


def weight_layout(cfg_path: str):
    """(Parsed, {Layer.name: netdsl name}) for a cfg: what darknet_weights needs to write a file."""
    with open(cfg_path, encoding="utf-8", errors="replace") as f:
        p = parse_cfg(f.read(), cfg_path)
    _, names = write(p.net)
    return p, names


__all__ = ["import_darknet", "parse_cfg", "weight_layout", "Parsed", "WeightBlock", "WeightField"]
