"""Run one backward kernel or one training forward alone, on numpy arrays (tests, debugging).

    from netdsl.train.check import run_bwd, run_train_forward
    dx = run_bwd(bwd, {"x0": x, "y": y, "dy": dy, "params": w}, out_floats=x.size)
    y, saved, env = run_train_forward(tf, {"x0": x, "params": w, "buffers": rm_rv}, y_floats)

Each token of the rule's `ins` (and `w`) is looked up in `env`; every array gets its own
slot of one arena, as the training plan would give it, and the output slot is prefilled
with NaN so a kernel that skips a cell shows up. Arrays a kernel updates in place through
an input pointer ("buffers", optimizer state) come back in the returned env copy.
"""
from __future__ import annotations

import numpy as np

from ..runtime.executor import Program, Step

PAD = 16        # floats between slots (and 64-byte alignment of each)


def _layout(tokens, env, out_floats):
    offs, off = {}, 0
    out_off = off
    off += -(-(int(out_floats) + PAD) // PAD) * PAD
    for t in tokens:
        if t in offs:
            continue
        if t not in env:
            raise KeyError(f"the rule reads {t!r}; pass it in env (have: {', '.join(env)})")
        offs[t] = off
        off += -(-(np.asarray(env[t]).size + PAD) // PAD) * PAD
    return out_off, offs, off


def _run(call, ins, w_token, env, out_floats, threads=0, prefill=np.nan):
    tokens = list(ins) + ([w_token] if w_token else [])
    out_off, offs, total = _layout(tokens, env, out_floats)
    arrays = {t: np.ascontiguousarray(env[t], dtype=np.float32).ravel() for t in offs}
    step = Step(call, out_off, [offs[t] for t in ins], None, None,
                out_floats=int(out_floats), in_floats=[arrays[t].size for t in ins])
    prog = Program([step], total, prepack=False)
    arena = prog.new_arena()
    for t, o in offs.items():
        arena[o:o + arrays[t].size] = arrays[t]
    if w_token:     # the parameters live in the arena, as in a training plan
        o = offs[w_token]
        step.w = arena[o:o + arrays[w_token].size]
        prog = Program([step], total, prepack=False)
    arena[out_off:out_off + int(out_floats)] = prefill
    prog.run(arena, prog.new_ws(), threads)
    new_env = {t: arena[o:o + arrays[t].size].reshape(np.shape(env[t])).copy() for t, o in offs.items()}
    return arena[out_off:out_off + int(out_floats)].copy(), new_env


def run_bwd(bwd, env: dict, out_floats: int | None = None, threads: int = 0):
    """The flat gradient one Bwd writes (bwd.out_floats, or out_floats when the rule leaves it None)."""
    n = bwd.out_floats if bwd.out_floats is not None else out_floats
    if n is None:
        raise ValueError("pass out_floats: the rule writes the tensor's size")
    out, _ = _run(bwd.call, bwd.ins, bwd.w, env, n, threads)
    return out


def run_train_forward(tf, env: dict, y_floats: int, threads: int = 0):
    """(y flat, saved flat, env after the call) of one TrainForward."""
    out, new_env = _run(tf.call, tf.ins, tf.w, env, int(y_floats) + int(tf.saved_floats), threads)
    return out[:y_floats], out[y_floats:], new_env
