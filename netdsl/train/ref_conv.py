"""Float64 numpy oracles of the backward pass of the layers with weights: Conv, ConvTranspose,
Local and FC (@grad_ref, netdsl/train/registry.py).

Each takes (a, xs, params, y, dy) with xs batched NCHW (FC: (N, ...)), params {name: array}
in PyTorch layout like OpSpec.reference's w, and returns ([dx0], {"weight": dW, "bias": db}).
They are written from the forward formula, tap by tap, for clarity: the same strided window
view the forward references use (ops/geometry.py windows), its gradient scattered back one
kernel tap at a time. They never call the C kernels; the kernels are tested against them
(tests/train/test_conv_kernels.py) and they against finite differences of OpSpec.reference
and torch.autograd (tests/train/test_conv_grad.py).

Not covered: a fused activation (the training graph is unoptimized: act is "none"); a
fused residual input gets dy itself (d(conv + r)/dr = 1).
"""
from __future__ import annotations

import numpy as np

from ..ops.geometry import dilated, pad_nchw, windows
from .registry import grad_ref


def _no_act(a, op):
    if a.get("act", "none") != "none":
        raise NotImplementedError(f"{op}: the gradient oracle takes no fused activation "
                                  f"(act={a['act']!r}); the training graph is unfused")


def _scatter_taps(dwin, shape, kernel, stride, dilation):
    """The adjoint of geometry.windows: dwin (N, C, OH, OW, KH, KW) summed back into a
    zero (N, C, H, W) array (H, W of the padded input), window tap (i, j) of output (oy, ox)
    landing on (oy*sh + i*dh, ox*sw + j*dw)."""
    n, c, oh, ow, kh, kw = dwin.shape
    (sh, sw), (dh, dw) = stride, dilation
    out = np.zeros(shape, dwin.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw] += dwin[..., i, j]
    return out


def _crop(xp, pads):
    t, l, b, r = pads
    h, w = xp.shape[2:]
    return xp[:, :, t:h - b, l:w - r]


@grad_ref("Conv")
def conv(a, xs, params, y, dy):
    """Conv: dx = col2im(W^T dy), dW = dy . im2col(x)^T summed over the batch, db = sum dy."""
    _no_act(a, "Conv")
    x, weight = xs[0], params["weight"]
    g, oc = a["groups"], a["out_channels"]
    xp = pad_nchw(x, a["pad"])
    cg, og = x.shape[1] // g, oc // g
    dxp = np.zeros(xp.shape, np.result_type(x, dy, weight))
    dw = np.zeros(weight.shape, dxp.dtype)
    for gi in range(g):
        win = windows(xp[:, gi * cg:(gi + 1) * cg], a["kernel"], a["stride"], a["dilation"])
        win = win[:, :, :dy.shape[2], :dy.shape[3]]
        dyg = dy[:, gi * og:(gi + 1) * og]
        wg = weight[gi * og:(gi + 1) * og]
        dw[gi * og:(gi + 1) * og] = np.einsum("nohw,nchwij->ocij", dyg, win, optimize=True)
        dwin = np.einsum("nohw,ocij->nchwij", dyg, wg, optimize=True)
        dxp[:, gi * cg:(gi + 1) * cg] = _scatter_taps(dwin, (x.shape[0], cg, *xp.shape[2:]),
                                                      a["kernel"], a["stride"], a["dilation"])
    grads = {"weight": dw}
    if a["bias"]:
        grads["bias"] = dy.sum(axis=(0, 2, 3))
    dxs = [_crop(dxp, a["pad"])]
    if a.get("residual"):
        dxs.append(dy.copy())
    return dxs, grads


@grad_ref("ConvTranspose")
def conv_transpose(a, xs, params, y, dy):
    """ConvTranspose is the adjoint of Conv: dx is a Conv of dy (the cropped border padded
    back), dW pairs x with the windows of that padded dy, db = sum dy."""
    _no_act(a, "ConvTranspose")
    x, weight = xs[0], params["weight"]          # weight (C, OC/g, KH, KW)
    n, c, h, w = x.shape
    g, oc = a["groups"], a["out_channels"]
    cg, og = c // g, oc // g
    (sh, sw), (oph, opw) = a["stride"], a["output_padding"]
    keh, kew = dilated(a["kernel"], a["dilation"])
    full_h, full_w = (h - 1) * sh + keh + oph, (w - 1) * sw + kew + opw
    t, l, b, r = a["pad"]
    full = np.zeros((n, oc, full_h, full_w), dy.dtype)
    full[:, :, t:full_h - b, l:full_w - r] = dy   # what the crop dropped gets no gradient
    dx = np.zeros(x.shape, np.result_type(x, dy, weight))
    dw = np.zeros(weight.shape, dx.dtype)
    for gi in range(g):
        win = windows(full[:, gi * og:(gi + 1) * og], a["kernel"], a["stride"], a["dilation"])[:, :, :h, :w]
        xg, wg = x[:, gi * cg:(gi + 1) * cg], weight[gi * cg:(gi + 1) * cg]
        dx[:, gi * cg:(gi + 1) * cg] = np.einsum("nohwij,coij->nchw", win, wg, optimize=True)
        dw[gi * cg:(gi + 1) * cg] = np.einsum("nchw,nohwij->coij", xg, win, optimize=True)
    grads = {"weight": dw}
    if a["bias"]:
        grads["bias"] = dy.sum(axis=(0, 2, 3))
    return [dx], grads


@grad_ref("Local")
def local(a, xs, params, y, dy):
    """Local: per position p, dW[p] = dy[:, :, p]^T . patches[:, p] and dpatches = dy[:, :, p] . W[p],
    scattered back into x like Conv's dx; db = sum of dy over the batch, per position."""
    x, weight = xs[0], params["weight"]          # weight (P, OC, C*KH*KW)
    xp = pad_nchw(x, a["pad"])
    n, c = x.shape[:2]
    oc, oh, ow = dy.shape[1:]
    kh, kw = a["kernel"]
    win = windows(xp, a["kernel"], a["stride"], a["dilation"])[:, :, :oh, :ow]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh * ow, c * kh * kw)
    dyp = dy.reshape(n, oc, oh * ow)
    dw = np.einsum("nop,npk->pok", dyp, cols, optimize=True)
    dcols = np.einsum("nop,pok->npk", dyp, weight, optimize=True)
    dwin = dcols.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 1, 2, 4, 5)
    dxp = _scatter_taps(dwin, xp.shape, a["kernel"], a["stride"], a["dilation"])
    grads = {"weight": dw}
    if a["bias"]:
        grads["bias"] = dy.sum(axis=0)
    return [_crop(dxp, a["pad"])], grads


@grad_ref("FC")
def fc(a, xs, params, y, dy):
    """FC on the flattened input: dx = dy . W (reshaped like x), dW = dy^T . x, db = sum dy."""
    _no_act(a, "FC")
    x = xs[0]
    x2 = x.reshape(x.shape[0], -1)
    weight = params["weight"]
    grads = {"weight": dy.T @ x2}
    if a["bias"]:
        grads["bias"] = dy.sum(axis=0)
    return [(dy @ weight).reshape(x.shape)], grads
