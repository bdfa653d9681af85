"""Random valid `.net` networks that use every registered op and every merge.

A network is built as a small tree (tree.py: statements of chains; a chain holds layers,
groups repeated `*n`, branch sets `[ a | b ] - Merge`, block calls) while its shapes are
tracked, so almost every text is valid; `generate()` still parses each one with
`netdsl.parse` and skips (and counts) the rare invalid one. The tree, not only the text, is
kept: the shrinker in `check.py` deletes layers, branches and statements from it and
re-renders, so a failing case becomes a short file a person can read.

Everything is drawn from one `random.Random(seed)`: a seed names a network for good (for one
version of this file). `EMITTERS` maps every op name the generator can write to the method
that writes it; tests/e2e/test_generated.py fails when a registered op is missing from it or
never appears in the generated corpus.

What it deliberately does not do: make networks large (inputs have 1..12 channels and
1..17 pixels a side, maps stay within 24 pixels and mostly 48 channels — up to 40 per layer
in one network of eight, past the kernels' vector widths — so the numpy reference stays
fast), or write invalid text on purpose (that is tests/unit/test_fuzz.py's job).
"""
from __future__ import annotations

import random

from ..ops.geometry import same_pads, window_out
from .tree import Branches, Group, Invalid, Layer, Net, Ref, Stmt, apply, mutations, replay  # noqa: F401

MAX_HW = 24
MAX_C = 16
ACTS = ("relu", "leakyrelu", "sigmoid", "tanh", "relu6", "hardsigmoid", "hardswish", "silu", "gelu", "mish")
# the words that write each activation as a layer (the fused `act` of the table, or a form it does not fuse)
ACT_WORDS = {"relu": ["ReLU"], "leakyrelu": ["LeakyReLU", "LeakyReLU(0.2)", "LeakyReLU(slope=0.01)"],
             "sigmoid": ["Sigmoid"], "tanh": ["Tanh"],
             "relu6": ["ReLU6", "ReLU6", "Clip(0, 6)", "Hardtanh(0, 6)"],
             "hardsigmoid": ["HardSigmoid", "HardSigmoid(alpha=0.2)"], "hardswish": ["HardSwish"],
             "silu": ["SiLU", "Swish"], "gelu": ["GELU", "GELU(approximate=tanh)"], "mish": ["Mish"]}


# ---------------------------------------------------------------- shape rules

def _conv_hw(h, w, k, s, pads, d=(1, 1)):
    t, l, b, r = pads
    oh = window_out(h, (k[0] - 1) * d[0] + 1, s[0], t, b)
    ow = window_out(w, (k[1] - 1) * d[1] + 1, s[1], l, r)
    if oh <= 0 or ow <= 0:
        raise Invalid
    return oh, ow


def _pads(pad, hw, k_eff, s):
    if pad == "same":
        t, b = same_pads(hw[0], k_eff[0], s[0])
        l, r = same_pads(hw[1], k_eff[1], s[1])
        return (t, l, b, r)
    if isinstance(pad, int):
        return (pad, pad, pad, pad)
    if len(pad) == 2:
        return (pad[0], pad[1], pad[0], pad[1])
    return tuple(pad)


def _fmt_pair(p):
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


def _fmt_pad(pad):
    if isinstance(pad, (str, int)):
        return str(pad)
    return "(" + ", ".join(map(str, pad)) + ")"


def _is_map(s):
    return len(s) == 3


def _need(cond):
    if not cond:
        raise Invalid


# ---------------------------------------------------------------- the generator

class Generator:
    """Draws one network from `random.Random(seed)`; `net()` returns the tree."""

    def __init__(self, seed: int, size: int | None = None):
        self.seed = seed
        self.r = random.Random(seed)
        self.size = size if size is not None else self.r.randint(5, 18)   # top-level layers, about
        self.labels: dict[str, tuple] = {}      # label or input -> shape, usable as a reference
        self.blocks: dict[str, str] = {}
        self.block_rules: dict[str, object] = {}
        self.n_label = 0
        self.depth = 0
        self.cur_name = None        # the label or input naming the tensor flowing in now, if any
        self.wide = self.r.random() < 0.125
        # a network-wide activation palette: one network in five uses no ReLU at all
        self.acts = list(ACTS) if self.r.random() >= 0.2 else [a for a in ACTS if a != "relu"]

    # -- small draws
    def chance(self, p):
        return self.r.random() < p

    def pick(self, seq):
        return self.r.choice(list(seq))

    def pick_epilogue(self, op):
        """One of the palette's activations that `op` can fuse (its spec's `epilogues`)."""
        from .. import ops
        return self.pick([a for a in self.acts if a in ops.get(op).epilogues])

    def act_word(self):
        return self.pick(ACT_WORDS[self.pick(self.acts)])

    def act_kw(self, allowed=ACTS, p=0.35):
        """', act=…' (or nothing)."""
        if self.chance(p):
            options = [a for a in allowed if a in self.acts]
            if options:
                return f", act={self.pick(options)}"
        if self.chance(0.1):
            return ", act=none"
        return ""

    def width(self, usual):
        """An output channel count: 1..usual, or in a 'wide' network (one in eight) sometimes
        up to 40, past the vector widths (8, 16) and GEMM tiles of the kernels' main loops."""
        if self.wide and self.chance(0.4):
            return self.r.randint(usual + 1, 40)
        return self.r.randint(1, usual)

    def new_label(self):
        self.n_label += 1
        return f"n{self.n_label}"

    def distinct(self, branches):
        """A merge may not get one tensor twice: keep one plain `_`, copy the others through
        an Identity or a Dropout (which -O1 removes: the passes then see the repeat), and never
        name the branch input or one label twice."""
        seen_empty, names = False, set()
        out = []
        for b in branches:
            if not b:
                if seen_empty:
                    b = [Layer(self.pick(["Identity", "Dropout"]), _same)]
                seen_empty = True
            elif len(b) == 1 and isinstance(b[0], Ref):
                _need(b[0].name not in names and b[0].name != self.cur_name)
                names.add(b[0].name)
            out.append(b)
        return out

    # -- emitters: shape -> (item, new shape) or None when the op does not fit here
    def e_conv(self, s):
        if not _is_map(s):
            return None
        c, h, w = s
        groups = 1
        oc = self.width(12)
        if c > 1 and self.chance(0.2):
            divs = [g for g in range(2, c + 1) if c % g == 0]
            groups = self.pick(divs)
            oc = groups * self.r.randint(1, max(1, 12 // groups))
        k = self.pick([(1, 1), (2, 2), (3, 3), (3, 3), (1, 3), (3, 1), (5, 5)])
        st = (1, 1) if self.chance(0.75) else self.pick([(2, 2), (1, 2), (2, 1)])
        d = (1, 1) if self.chance(0.85) else (2, 2)
        pad = self.pick([0, 1, "same", "same", (1, 0), (0, 1, 1, 2), "valid"])
        ke = ((k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1)
        pads = (0, 0, 0, 0) if pad == "valid" else _pads(pad, (h, w), ke, st)
        oh, ow = _conv_hw(h, w, k, st, pads, d)
        args = [str(oc), _fmt_pair(k)]
        if st != (1, 1):
            args.append(f"stride={_fmt_pair(st)}" if st[0] == st[1] else f"stride=({st[0]}, {st[1]})")
        if pad != 0 or self.chance(0.2):
            args.append(f"pad={_fmt_pad(pad)}")
        if d != (1, 1):
            args.append(f"dilation={d[0]}")
        if groups > 1:
            args.append(f"groups={groups}")
        if self.chance(0.3):
            args.append("bias=false")
        text = f"Conv({', '.join(args)}{self.act_kw()})"
        return Layer(text, _window_rule(oc, k, st, pad, d, groups)), (oc, oh, ow)

    def _fixed(self, s_in, s_out):
        """The shape rule of a layer whose text only fits the input it was drawn for (a fixed
        Crop or Reshape size, …): that input gives s_out, any other is Invalid. (Conv, Local
        and the pools have general rules instead, so groups of them can be repeated.)"""
        def rule(s):
            _need(tuple(s) == tuple(s_in))
            return s_out
        return rule

    def e_local(self, s):
        if not _is_map(s):
            return None
        c, h, w = s
        oc = self.r.randint(1, 6)
        k = self.pick([(1, 1), (2, 2), (3, 3), (2, 3)])
        st = self.pick([(1, 1), (1, 1), (2, 2)])
        pad = self.pick([0, 0, 1, "same"])
        pads = _pads(pad, (h, w), k, st)
        oh, ow = _conv_hw(h, w, k, st, pads)
        args = [str(oc), _fmt_pair(k)]
        if st != (1, 1):
            args.append(f"stride={st[0]}")
        if pad != 0:
            args.append(f"pad={_fmt_pad(pad)}")
        if self.chance(0.3):
            args.append("bias=false")
        return Layer(f"Local({', '.join(args)})", _window_rule(oc, k, st, pad)), (oc, oh, ow)

    def e_deconv(self, s):
        if not _is_map(s):
            return None
        c, h, w = s
        groups = 1
        oc = self.r.randint(1, 10)
        if c > 1 and self.chance(0.2):
            groups = self.pick([g for g in range(2, c + 1) if c % g == 0])
            oc = groups * self.r.randint(1, max(1, 10 // groups))
        k = self.pick([1, 2, 3, 4])
        st = self.pick([1, 1, 2, 2, 3]) if max(h, w) <= 10 else 1
        d = 1 if self.chance(0.85) else 2
        p = self.r.randint(0, max(0, (k - 1) // 2 + (st > 1)))
        op = self.r.randint(0, max(st, d) - 1) if self.chance(0.3) else 0
        oh = (h - 1) * st - 2 * p + d * (k - 1) + op + 1
        ow = (w - 1) * st - 2 * p + d * (k - 1) + op + 1
        _need(1 <= oh <= MAX_HW and 1 <= ow <= MAX_HW)
        name = self.pick(["Deconv", "ConvTranspose", "UpConv"])
        args = [str(oc), str(k)]
        if st != 1:
            args.append(f"stride={st}")
        if p:
            args.append(f"pad={p}")
        if op:
            args.append(f"output_padding={op}")
        if d != 1:
            args.append(f"dilation={d}")
        if groups > 1:
            args.append(f"groups={groups}")
        if self.chance(0.3):
            args.append("bias=false")
        out = (oc, oh, ow)
        return Layer(f"{name}({', '.join(args)}{self.act_kw()})", self._fixed(s, out)), out

    def e_fc(self, s):
        n = 1
        for v in s:
            n *= v
        if n > 800:
            return None
        f = self.width(12)
        name = self.pick(["FC", "FC", "Linear", "Dense"])
        bias = ", bias=false" if self.chance(0.25) else ""
        out = (f,)
        return Layer(f"{name}({f}{bias}{self.act_kw()})", self._fixed(s, out)), out

    def _pool(self, s, name):
        if not _is_map(s):
            return None
        c, h, w = s
        k = self.pick([(1, 1), (2, 2), (2, 2), (3, 3), (2, 3), (3, 2)])
        st = None if self.chance(0.5) else self.pick([(1, 1), (2, 2), (1, 2)])
        stv = st or k
        pad = self.pick([0, 0, 1, (0, 1), (1, 0, 0, 1), "same"])
        pads = _pads(pad, (h, w), k, stv)
        t, l, b, rr = pads
        _need(2 * max(t, b) <= k[0] and 2 * max(l, rr) <= k[1])
        ceil = self.chance(0.4)
        oh = window_out(h, k[0], stv[0], t, b, ceil)
        ow = window_out(w, k[1], stv[1], l, rr, ceil)
        _need(oh > 0 and ow > 0)
        args = [_fmt_pair(k)]
        if st is not None:
            args.append(f"stride={_fmt_pair(st)}" if st[0] == st[1] else f"stride=({st[0]}, {st[1]})")
        if pad != 0:
            args.append(f"pad={_fmt_pad(pad)}")
        if ceil:
            args.append("ceil_mode=true")
        if name == "AvgPool" and self.chance(0.5):
            args.append(f"count_include_pad={self.pick(['true', 'false'])}")
        return Layer(f"{name}({', '.join(args)})", _pool_rule(k, stv, pad, ceil)), (c, oh, ow)

    def e_maxpool(self, s):
        return self._pool(s, self.pick(["MaxPool", "Pool", "MaxPool"]))

    def e_minpool(self, s):
        return self._pool(s, "MinPool")

    def e_avgpool(self, s):
        return self._pool(s, "AvgPool")

    def e_stochasticpool(self, s):
        return self._pool(s, "StochasticPool")

    def e_gap(self, s):
        if not _is_map(s):
            return None
        out = (s[0], 1, 1)
        return Layer(self.pick(["GAP", "GlobalAvgPool"]), _gap_rule), out

    def e_gmp(self, s):
        if not _is_map(s):
            return None
        out = (s[0], 1, 1)
        return Layer(self.pick(["GMP", "GlobalMaxPool"]), _gap_rule), out

    def e_upsample(self, s):
        if not _is_map(s) or max(s[1:]) > 12:
            return None
        c, h, w = s
        how = self.r.random()
        mode = self.pick(["nearest", "bilinear"])
        extra = ""
        if mode == "bilinear":
            extra = ", mode=bilinear" + (", align_corners=true" if self.chance(0.4) else "")
        if how < 0.4:
            text, out = f"Upsample(2{extra})" if extra or self.chance(0.5) else "Upsample", (c, 2 * h, 2 * w)
        elif how < 0.6:
            text, out = f"Upsample(scale=2x1{extra})", (c, 2 * h, w)
        else:
            oh, ow = self.r.randint(h, min(MAX_HW, 2 * h + 1)), self.r.randint(w, min(MAX_HW, 2 * w + 1))
            text, out = f"Upsample(size={oh}x{ow}{extra})", (c, oh, ow)
        return Layer(text, self._fixed(s, out)), out

    def e_pad(self, s):
        if not _is_map(s) or max(s[1:]) > 20:
            return None
        c, h, w = s
        mode = self.pick(["constant", "reflect", "replicate"])
        p = self.pick([1, 2, (1, 0), (0, 1, 2, 1)])
        t, l, b, r = _pads(p, (h, w), (1, 1), (1, 1))
        if mode == "reflect":
            _need(max(t, b) < h and max(l, r) < w)
        extra = ""
        if mode != "constant":
            extra = f", mode={mode}"
        elif self.chance(0.4):
            extra = f", value={self.pick(['0.5', '-1.0', '2'])}"
        out = (c, h + t + b, w + l + r)
        return Layer(f"Pad({_fmt_pad(p)}{extra})", self._fixed(s, out)), out

    def e_crop(self, s):
        if not _is_map(s):
            return None
        c, h, w = s
        oh, ow = self.r.randint(1, h), self.r.randint(1, w)
        text = f"Crop({oh}x{ow})"
        if self.chance(0.4):
            text = f"Crop({oh}x{ow}, offset=({self.r.randint(0, h - oh)}, {self.r.randint(0, w - ow)}))"
        out = (c, oh, ow)
        return Layer(text, self._fixed(s, out)), out

    def e_flatten(self, s):
        if not _is_map(s):
            return None
        out = (s[0] * s[1] * s[2],)
        return Layer("Flatten", self._fixed(s, out)), out

    def e_reshape(self, s):
        n = 1
        for v in s:
            n *= v
        name = self.pick(["Reshape", "View"])
        if _is_map(s) and self.chance(0.5):
            out = (n,)
            text = f"{name}(-1)" if self.chance(0.5) else f"{name}(({n},))"
        else:
            divs = [d for d in range(1, n + 1) if n % d == 0]
            a = self.pick(divs)
            b = self.pick([d for d in divs if (n // a) % d == 0])
            out = (a, b, n // a // b)
            if max(out[1:]) > MAX_HW:
                out = (n, 1, 1)
            text = f"{name}({out[0]}x{out[1]}x{out[2]})" if self.chance(0.7) else f"{name}(({out[0]}, {out[1]}, -1))"
        return Layer(text, self._fixed(s, out)), out

    def e_bn(self, s):
        if len(s) not in (1, 3):
            return None
        name = self.pick(["BN", "BatchNorm", "BatchNorm2d"])
        args = []
        if self.chance(0.3):
            args.append(f"eps={self.pick(['0.001', '1e-5', '0.1'])}")
        if "relu" in self.acts and self.chance(0.2):
            args.append(f"act={'relu' if self.chance(0.6) else self.pick_epilogue('BatchNorm')}")
        text = f"{name}({', '.join(args)})" if args else name
        return Layer(text, _same_rank), s

    def e_lrn(self, s):
        if not _is_map(s):
            return None
        args = []
        if self.chance(0.6):
            args.append(str(self.r.randint(1, 5)))
        if self.chance(0.4):
            args.append(f"alpha={self.pick(['0.0001', '0.01', '1.0'])}")
        if self.chance(0.4):
            args.append(f"beta={self.pick(['0.75', '0.5', '1.0'])}")
        if self.chance(0.3):
            args.append(f"k={self.pick(['1.0', '2.0'])}")
        return Layer(f"LRN({', '.join(args)})" if args else "LRN", _same_rank), s

    def _act(self, s, which):
        if which.lower() not in self.acts:
            return None
        return Layer(self.pick(ACT_WORDS[which.lower()]), _same), s

    def e_relu(self, s):
        return self._act(s, "ReLU")

    def e_prelu(self, s):
        if len(s) not in (1, 3):
            return None
        return Layer(self.pick(["PReLU", "PReLU(1)", "PReLU(num_parameters=1)"]), _same_rank), s

    def e_leakyrelu(self, s):
        return self._act(s, "LeakyReLU")

    def e_sigmoid(self, s):
        return self._act(s, "Sigmoid")

    def e_tanh(self, s):
        return self._act(s, "Tanh")

    # the activations of exported models (netdsl/ops/clip.py, activation_more.py): the table's
    # words (ReLU6 also as Clip(0, 6) / Hardtanh(0, 6), fused as relu6), and bounds that never fuse
    def _act_more(self, s, name):
        return (Layer(self.pick(ACT_WORDS[name]), _same), s) if name in self.acts else None

    def e_relu6(self, s):
        return self._act_more(s, "relu6")

    def e_clip(self, s):
        return Layer(self.pick(["Clip(-1, 1)", "Clip(min=0)", "Clip(max=0.5)", "Clip(-0.5, 2)", "Clamp(0, 1)"]),
                     _same), s

    def e_hardtanh(self, s):
        return Layer(self.pick(["Hardtanh", "Hardtanh(-2, 0.5)", "HardTanh(min_val=0, max_val=1)"]), _same), s

    def e_hardsigmoid(self, s):
        return self._act_more(s, "hardsigmoid")

    def e_hardswish(self, s):
        return self._act_more(s, "hardswish")

    def e_silu(self, s):
        return self._act_more(s, "silu")

    def e_gelu(self, s):
        return self._act_more(s, "gelu")

    def e_mish(self, s):
        return self._act_more(s, "mish")

    def e_softmax(self, s):
        return Layer(self.pick(["Softmax", "SM", "SoftMax"]), _same), s

    def e_logsoftmax(self, s):
        return Layer("LogSoftmax", _same), s

    def e_dropout(self, s):
        return Layer(self.pick(["Dropout", "Dropout(0.2)", "Dropout(p=0.7)"]), _same), s

    def e_identity(self, s):
        return Layer(self.pick(["Identity", "Id"]), _same), s

    # merges: each returns a Branches item
    def e_concat(self, s):
        if self.depth >= 2:
            return None
        n = self.r.randint(2, 3)
        branches, shapes = [], []
        for _ in range(n):
            b, bs = self.branch(s, keep="hw")
            branches.append(b)
            shapes.append(bs)
        if sum(x[0] for x in shapes) > 3 * MAX_C:
            return None
        if _is_map(s):
            _need(len({x[1:] for x in shapes}) == 1 and all(_is_map(x) for x in shapes))
        else:
            _need(all(len(x) == 1 for x in shapes))
        out = (sum(x[0] for x in shapes), *shapes[0][1:])
        return Branches(self.distinct(branches), Layer(self.pick(["Concat", "Cat"]), _concat_rule)), out

    def e_add(self, s):
        if self.depth >= 2:
            return None
        n = self.r.randint(2, 3)
        branches = [self.branch(s, keep="shape")[0] for _ in range(n)]
        act = ""
        if "relu" in self.acts and self.chance(0.3):
            act = f"(act={'relu' if self.chance(0.6) else self.pick_epilogue('Add')})"
        name = self.pick(["Add", "Add", "Sum", "Residual"])
        return Branches(self.distinct(branches), Layer(name + act, _equal_rule)), s

    def e_mul(self, s):
        if self.depth >= 2:
            return None
        if _is_map(s) and s[1:] != (1, 1) and self.chance(0.5):
            # a per-channel operand, (C,1,1) or (C,) (squeeze-and-excitation), in either slot
            c = s[0]
            if self.chance(0.5):
                gate = [Layer("GAP", _gap_rule), Layer(f"Conv({c}, 1)", lambda x: (c, 1, 1))]
            else:
                gate = [Layer("GAP", _gap_rule), Layer(f"FC({c})", lambda x: (c,))]
            gate.append(Layer(self.pick(["Sigmoid", "Tanh"]), _same))
            branches = [[], gate] if self.chance(0.7) else [gate, []]
        else:
            branches = []
            for _ in range(self.r.randint(2, 3)):
                branches.append(self.branch(s, keep="shape")[0])
        return Branches(self.distinct(branches), Layer("Mul", _mul_rule)), s

    def e_crop2(self, s):
        """`[ big | small ] - Crop`: crop the first input to the second one's size (U-Net)."""
        if self.depth >= 2 or not _is_map(s):
            return None
        small, ss = self.branch(s, keep=None)
        _need(_is_map(ss) and ss[1] <= s[1] and ss[2] <= s[2])
        big = []
        refs = [k for k, v in self.labels.items() if _is_map(v) and v[1] >= ss[1] and v[2] >= ss[2]]
        if refs and self.chance(0.4):
            name = self.pick(refs)
            big = [Ref(name, self.labels[name])]
            bs = self.labels[name]
        else:
            bs = s
        out = (bs[0], ss[1], ss[2])
        return Branches(self.distinct([big, small]), Layer("Crop", _crop_rule)), out

    def e_conv_residual(self, s):
        """`[ _ | r ] - Conv(c, k, pad=same, residual=true)`: Conv's own fused residual input."""
        if self.depth >= 2 or not _is_map(s):
            return None
        c, h, w = s
        oc = self.r.randint(1, 10)
        k = self.pick([1, 3])
        rb, rs = self.branch(s, keep="hw")
        if rs[0] != oc:
            rb = rb + [Layer(f"Conv({oc}, 1)", lambda x: (oc, *x[1:]))]
        act = f", act={self.pick(self.acts)}" if self.chance(0.4) else ""
        out = (oc, h, w)
        return Branches(self.distinct([[], rb]), Layer(f"Conv({oc}, {k}, pad=same, residual=true{act})",
                                        lambda shapes: out)), out

    # -- structure
    def e_block(self, s):
        if not _is_map(s) or self.depth >= 2:
            return None
        kind = self.pick(["seq", "seq", "res", "se", "skip"])
        c, h, w = s
        if kind == "skip":
            refs = [k for k, v in self.labels.items() if _is_map(v) and v[1:] == s[1:]]
            if not refs or "Skip" not in self.blocks and len(self.blocks) > 3:
                return None
            self.blocks.setdefault("Skip", "block Skip(c, skip) {\n  [ Conv(c, 1) | skip ] - Concat\n}")
            name, cc = self.pick(refs), self.r.randint(1, 8)
            out = (cc + self.labels[name][0], h, w)
            return Layer(f"Skip({cc}, {name})", self._fixed(s, out)), out
        if kind == "res":
            self.blocks.setdefault("Act", f"default Act = {self.act_word()}")
            self.blocks.setdefault("Res", "block Res(c, stride=1) {\n"
                                   "  [ Conv(c, 3, stride=stride, pad=1, bias=false) - BN - Act\n"
                                   "    - Conv(c, 3, pad=1, bias=false) - BN\n"
                                   "  | Conv(c, 1, stride=stride, bias=false) - BN ] - Add - Act\n}")
            cc = self.r.randint(1, 10)
            stride = self.pick([1, 1, 2])
            out = (cc, (h - 1) // stride + 1, (w - 1) // stride + 1)
            if stride == 1:
                text = self.pick([f"Res({cc})", f"Res(c={cc})"])
                if self.chance(0.4):
                    n = self.r.randint(0, 2)
                    return Group([Layer(text, lambda x: (cc, *x[1:]))], n), (cc, h, w) if n else s
            else:
                text = self.pick([f"Res({cc}, 2)", f"Res({cc}, stride=2)"])
            return Layer(text, self._fixed(s, out)), out
        if kind == "se":
            gate = "Sigmoid"
            self.blocks.setdefault("SE", "block SE(c, r=2) {\n"
                                   f"  [ _ | GAP - Conv(r, 1) - {self.act_word()} - Conv(c, 1) - {gate} ] - Mul\n}}")
            r = self.r.randint(1, 4)
            text = f"SE({c})" if self.chance(0.5) else f"SE({c}, r={r})"
            return Layer(text, self._fixed(s, s)), s
        # seq: a random body of size-keeping pieces over a channel parameter c
        name = f"Seq{len([b for b in self.blocks if b.startswith('Seq')]) + 1}"
        if name not in self.blocks and len(self.blocks) >= 4:
            existing = [b for b in self.blocks if b.startswith("Seq")]
            if not existing:
                return None
            name = self.pick(existing)
        if name not in self.blocks:
            self.blocks[name], self.block_rules[name] = self.seq_block(name)
        rule = self.block_rules[name]
        cc = self.r.randint(1, 8)
        bn = self.pick(["true", "false"])
        text = self.pick([f"{name}({cc})", f"{name}({cc}, bn={bn})", f"{name}(c={cc}, bn={bn})"])
        out = rule((c, h, w), cc)
        if self.chance(0.4):
            n = self.r.randint(2, 3)
            _need(rule(out, cc) == out)
            return Group([Layer(text, lambda x: rule(x, cc))], n), out
        return Layer(text, lambda x: rule(x, cc)), out

    def seq_block(self, name):
        """A block `name(c, bn=true)` of 2..4 size-keeping pieces; returns (text, rule(shape, c))."""
        pieces, chans = [], []
        for _ in range(self.r.randint(2, 4)):
            kind = self.pick(["conv", "conv", "bn", "if", "act", "pool", "drop"])
            if kind == "conv":
                expr = self.pick(["c", "c", "c + 1", "2 * c", "c // 2 + 1"])
                k = self.pick([1, 2, 3])
                bias = ", bias=false" if self.chance(0.3) else ""
                pieces.append(f"Conv({expr}, {k}, pad=same{bias})")
                chans.append(expr)
            elif kind == "bn":
                pieces.append("BN")
            elif kind == "if":
                pieces.append(self.pick(["if bn { BN }", "if bn { BN } else { Identity }",
                                         f"if not bn {{ {self.act_word()} }}"]))
            elif kind == "act":
                pieces.append(self.act_word())
            elif kind == "pool":
                pieces.append("MaxPool(3, stride=1, pad=1)")
            else:
                pieces.append("Dropout")
        pieces.append("Conv(c, 1)")
        chans.append("c")
        text = f"block {name}(c, bn=true) {{\n  " + " - ".join(pieces) + "\n}"

        def rule(shape, c):
            _need(_is_map(shape))
            return (c, shape[1], shape[2])
        return text, rule

    def e_repeat(self, s):
        """`(group)*n` of a group that keeps its own output shape (and `*0`, which leaves it out)."""
        if self.depth >= 2:
            return None
        self.depth += 1
        saved = self.cur_name
        try:
            items, out = self.chain(s, self.r.randint(1, 3), keep=None)
        finally:
            self.depth -= 1
            self.cur_name = saved
        try:
            again = replay(items, out)
        except Invalid:
            again = None
        if again != out:
            if self.chance(0.1):
                return Group(items, 0), s
            return None
        n = self.r.randint(2, 3)
        return Group(items, n), out

    def e_skip(self, s):
        """`[ _ | label ] - Concat/Add` with an earlier layer of a matching size."""
        if self.depth >= 2:
            return None
        refs = [k for k, v in self.labels.items() if len(v) == len(s) and v[1:] == s[1:] and v[0] <= MAX_C]
        if not refs:
            return None
        name = self.pick(refs)
        ref = self.labels[name]
        if ref == s and self.chance(0.5):
            return Branches(self.distinct([[], [Ref(name, ref)]]), Layer("Add", _equal_rule)), s
        out = (s[0] + ref[0], *s[1:])
        return Branches(self.distinct([[], [Ref(name, ref)]]), Layer("Concat", _concat_rule)), out

    def branch(self, s, keep):
        """A branch body from s: [] (identity) or a short chain; `keep` = 'hw' keeps the
        spatial size (or the vector), 'shape' keeps the whole shape."""
        self.depth += 1
        saved = self.cur_name
        try:
            if self.chance(0.25):
                return [], s
            if keep == "shape" and self.chance(0.15):
                refs = [k for k, v in self.labels.items() if v == s]
                if refs:
                    name = self.pick(refs)
                    return [Ref(name, s)], s
            items, out = self.chain(s, self.r.randint(1, 3), keep="hw" if keep else None)
            if keep == "shape" and out != s:
                if _is_map(s):
                    items.append(Layer(f"Conv({s[0]}, 1)", lambda x, c=s[0]: (c, *x[1:])))
                else:
                    items.append(Layer(f"FC({s[0]})", lambda x, c=s[0]: (c,)))
            return items, s if keep == "shape" else out
        finally:
            self.depth -= 1
            self.cur_name = saved

    def chain(self, s, n, keep=None):
        items = []
        for _ in range(n):
            it, s2 = self.step(s, keep)
            if it is None:
                break
            items.append(it)
            self.cur_name = None
            s = s2
        return items, s

    def step(self, s, keep=None):
        """One item from shape s (None when nothing fits after some tries)."""
        names = list(EMITTERS)
        weights = [EMITTERS[n][1] for n in names]
        for _ in range(30):
            name = self.r.choices(names, weights)[0]
            try:
                got = getattr(self, EMITTERS[name][0])(s)
            except Invalid:
                continue
            if got is None:
                continue
            it, out = got
            try:
                if apply(it, s) != out:      # the item's own rule must agree with the emitter
                    continue
            except Invalid:
                continue
            if keep == "hw" and (len(out) != len(s) or out[1:] != s[1:]):
                continue
            if _is_map(out) and (max(out[1:]) > MAX_HW or out[0] > (96 if self.wide else 3 * MAX_C)):
                continue
            if len(out) == 1 and out[0] > 4000:
                continue
            return it, out
        return None, s

    # -- the whole network
    def net(self) -> Net:
        r = self.r
        c, h, w = r.randint(1, 12), r.randint(1, 17), r.randint(1, 17)
        if r.random() < 0.6:                     # mostly odd sizes
            h, w = h | 1, w | 1
        inputs = [("x", (c, h, w))]
        self.labels["x"] = (c, h, w)
        extra = None
        if self.chance(0.3):
            extra = ("v", (r.randint(1, 12),)) if self.chance(0.5) else ("y", (r.randint(1, 6), h, w))
            inputs.append(extra)
            self.labels[extra[0]] = extra[1]
        stmts, ends = [], []
        s, start = (c, h, w), "x"
        budget = self.size
        prev_label = None
        while budget > 0:
            n = r.randint(2, 6)
            self.cur_name = start or prev_label
            items, out = self.chain(s, min(n, budget))
            budget -= max(1, len(items))
            if not items:
                break
            for it in items:                     # labels for later references
                if self.chance(0.25) and not isinstance(it, Group):
                    it.label = self.new_label()
            stmt = Stmt(start, items)
            stmts.append(stmt)
            last = items[-1]
            if isinstance(last, Group):
                last = Layer(self.pick(["Identity", "Dropout"]), _same)
                items.append(last)
            if last.label is None:
                last.label = self.new_label()
            # record the labels just made with their shapes
            cur = s
            for it in items:
                cur = apply(it, cur)
                if getattr(it, "label", None):
                    self.labels[it.label] = cur
            ends.append(last.label)
            prev_label = last.label
            # next statement: continue, start from a label or input, or end
            choice = r.random()
            if choice < 0.35 and budget > 0:
                s, start = out, None
                ends.pop()
            elif budget > 0:
                start = self.pick(list(self.labels))
                s = self.labels[start]
        if extra and not any(st.start == extra[0] for st in stmts) and not self._refers(stmts, extra[0]):
            self.cur_name = extra[0]
            items, out = self.chain(extra[1], r.randint(1, 3))
            if items:
                last = items[-1]
                if isinstance(last, Group):
                    items.append(Layer("Identity", _same))
                    last = items[-1]
                last.label = last.label or self.new_label()
                stmts.append(Stmt(extra[0], items))
                ends.append(last.label)
        outputs = list(dict.fromkeys(ends))
        others = [k for k in self.labels if k not in outputs and k not in ("x", "v", "y")]
        for k in others:
            if self.chance(0.1):
                outputs.append(k)
        if self.chance(0.05):                    # an input may be an output too
            outputs.append(self.pick([name for name, _ in inputs]))
        return Net(inputs, dict(self.blocks), stmts, outputs or ends[-1:], seed=self.seed)

    def _refers(self, stmts, name):
        text = "\n".join(s.render() for s in stmts)
        return f"| {name} " in text or f"| {name}]" in text or f"[ {name} " in text


def _window_rule(oc, k, st, pad, d=(1, 1), groups=1):
    """Conv/Local output shape for any input map (channels divisible by groups)."""
    def rule(x):
        _need(_is_map(x) and x[0] % groups == 0)
        ke = ((k[0] - 1) * d[0] + 1, (k[1] - 1) * d[1] + 1)
        pads = (0, 0, 0, 0) if pad == "valid" else _pads(pad, x[1:], ke, st)
        return (oc, *_conv_hw(x[1], x[2], k, st, pads, d))
    return rule


def _pool_rule(k, st, pad, ceil):
    def rule(x):
        _need(_is_map(x))
        t, l, b, r = _pads(pad, x[1:], k, st)
        _need(2 * max(t, b) <= k[0] and 2 * max(l, r) <= k[1])
        oh, ow = window_out(x[1], k[0], st[0], t, b, ceil), window_out(x[2], k[1], st[1], l, r, ceil)
        _need(oh > 0 and ow > 0)
        return (x[0], oh, ow)
    return rule


def _same(s):
    return s


def _same_rank(s):
    _need(len(s) in (1, 3))
    return s


def _gap_rule(s):
    _need(_is_map(s))
    return (s[0], 1, 1)


def _concat_rule(shapes):
    _need(len({len(x) for x in shapes}) == 1 and len({tuple(x[1:]) for x in shapes}) == 1)
    return (sum(x[0] for x in shapes), *shapes[0][1:])


def _equal_rule(shapes):
    _need(len({tuple(x) for x in shapes}) == 1)
    return shapes[0]


def _mul_rule(shapes):
    full = [x for x in shapes if _is_map(x) and x[1:] != (1, 1)]
    if full:
        c = full[0][0]
        _need(all(x == full[0] or x in ((c, 1, 1), (c,)) for x in shapes))
        return full[0]
    return _equal_rule(shapes)


def _crop_rule(shapes):
    a, b = shapes
    _need(_is_map(a) and _is_map(b) and b[1] <= a[1] and b[2] <= a[2])
    return (a[0], b[1], b[2])


# Every op the generator writes: op name -> (method, weight). The merge ops and the
# structural items (blocks, repetition, skip connections) are drawn the same way.
EMITTERS = {
    "Conv": ("e_conv", 10), "Local": ("e_local", 2), "ConvTranspose": ("e_deconv", 3),
    "FC": ("e_fc", 2), "MaxPool": ("e_maxpool", 3), "MinPool": ("e_minpool", 1.5),
    "AvgPool": ("e_avgpool", 2), "StochasticPool": ("e_stochasticpool", 1.5),
    "GlobalAvgPool": ("e_gap", 1), "GlobalMaxPool": ("e_gmp", 1), "Upsample": ("e_upsample", 2),
    "Pad": ("e_pad", 3), "Crop": ("e_crop", 1.5), "Flatten": ("e_flatten", 1),
    "Reshape": ("e_reshape", 1.5), "BatchNorm": ("e_bn", 5), "LRN": ("e_lrn", 1.5),
    "ReLU": ("e_relu", 4), "LeakyReLU": ("e_leakyrelu", 2), "PReLU": ("e_prelu", 1.5), "Sigmoid": ("e_sigmoid", 2),
    "Tanh": ("e_tanh", 2), "Softmax": ("e_softmax", 1), "LogSoftmax": ("e_logsoftmax", 1),
    "Dropout": ("e_dropout", 1), "Identity": ("e_identity", 1),
    "ReLU6": ("e_relu6", 1.5), "Clip": ("e_clip", 1), "Hardtanh": ("e_hardtanh", 1),
    "HardSigmoid": ("e_hardsigmoid", 1), "HardSwish": ("e_hardswish", 1.5), "SiLU": ("e_silu", 1.5),
    "GELU": ("e_gelu", 1), "Mish": ("e_mish", 1),
    "Concat": ("e_concat", 4), "Add": ("e_add", 4), "Mul": ("e_mul", 3),
    "Crop(a, b)": ("e_crop2", 1.5), "Conv(residual=true)": ("e_conv_residual", 1.5),
    "block": ("e_block", 4), "repeat": ("e_repeat", 2), "skip": ("e_skip", 3),
}

# ops written by the generator outside EMITTERS' per-layer draws
WRITTEN_ELSEWHERE = {"Input": "every network's `input` lines"}


def known_ops():
    """Registered op names the generator can write."""
    return {k for k in EMITTERS if k[0].isupper() and "(" not in k} | set(WRITTEN_ELSEWHERE)


def generate_net(seed: int, size: int | None = None) -> Net:
    """The network tree for `seed` (not yet parsed)."""
    return Generator(seed, size).net()


def generate(seed: int, size: int | None = None, tries: int = 20):
    """The first valid network drawn from seed, seed + 1000003, …, as (text, Net, Model,
    skipped): its text, its tree (for the shrinker), the parsed Model, and how many invalid
    texts were skipped on the way (rare: tests/e2e/test_generated.py keeps it under 5%)."""
    import netdsl
    skipped = 0
    for i in range(tries):
        net = generate_net(seed + i * 1_000_003, size)
        text = net.render()
        try:
            model = netdsl.parse(text, f"gen{net.seed}.net")
        except netdsl.NetDSLError:
            skipped += 1
            continue
        return text, net, model, skipped
    raise RuntimeError(f"no valid network from seed {seed} in {tries} tries")
