"""Optimizers, learning-rate schedules and gradient clipping, run as C kernels in the plan.

    opt = SGD(0.05, momentum=0.9, weight_decay=5e-4, schedule=Cosine(total_steps=10000))
    call = opt.call(count)            # one kernel over the whole parameter region
    call.fields.update(opt.step_fields(step))      # before optimizer step `step` (0-based)
    clip = clip_call(count, max_norm=1.0)          # out = the norm; scales the grads in place

Arena layout the kernels assume (the planner's, docs/TRAINING.md): the trainable
parameters are ONE flat region of `count` floats, mirrored by the gradient region and by
`state_regions` state regions (SGD with momentum: the momentum buffer; Adam / AdamW:
exp_avg, exp_avg_sq), all zero at the start. The kernel's out = params (updated in place),
ins = (grads, state0[, state1]) (the state updated in place through the input pointers).

Semantics are torch.optim's (SGD: momentum buffer = the first gradient, dampening,
nesterov, weight decay added to the gradient; Adam: the same decay, bias correction;
AdamW: decoupled decay p *= 1 - lr wd), in float32; csrc/kernels/train_optim.c says how
close to torch. Schedules give the learning rate of optimizer step t (0-based) the way a
torch.optim.lr_scheduler does after t calls of scheduler.step(). state_dict() holds the
hyperparameters and the schedule as JSON-able values (the moments are arena regions: the
checkpoint stores those). Deliberately not here: parameter groups (one set of
hyperparameters for every parameter, so no weight-decay exemption for biases and norms),
amsgrad, maximize, schedules that read the loss (ReduceLROnPlateau).
"""
from __future__ import annotations

import bisect
import inspect
import math

from ..errors import NetDSLError, did_you_mean
from ..runtime.executor import check_int64
from ..runtime.kparams import KernelCall


def _num(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _check(ok: bool, message: str, hint: str | None = None):
    if not ok:
        raise NetDSLError(message, hint=hint)


# ---------------------------------------------------------------------------------------
# Schedules


class Schedule:
    """The learning rate of each optimizer step: lr(base_lr, step) with step 0-based."""
    name = ""

    def lr(self, base_lr: float, step: int) -> float:
        raise NotImplementedError

    def options(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        """{"name": ..., options...}, JSON-able; schedule_from_state rebuilds it."""
        return {"name": self.name, **self.options()}

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v.describe() if isinstance(v, Schedule) else _num(v)}"
                         for k, v in self.options().items())
        return f"{self.name}({opts})"

    def __repr__(self):
        return self.describe()

    def __eq__(self, other):
        return type(other) is type(self) and other.options() == self.options()


class Constant(Schedule):
    """The base learning rate at every step."""
    name = "constant"

    def lr(self, base_lr, step):
        return float(base_lr)


class Step(Schedule):
    """base * gamma^(step // step_size): torch.optim.lr_scheduler.StepLR."""
    name = "step"

    def __init__(self, step_size: int, gamma: float = 0.1):
        _check(int(step_size) == step_size and step_size >= 1, f"Step schedule: step_size={step_size!r} "
               f"must be a whole number of optimizer steps >= 1")
        _check(gamma >= 0, f"Step schedule: gamma={gamma!r} must be >= 0")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def lr(self, base_lr, step):
        return float(base_lr) * self.gamma ** (int(step) // self.step_size)

    def options(self):
        return {"step_size": self.step_size, "gamma": self.gamma}


class MultiStep(Schedule):
    """base * gamma^(number of milestones <= step): torch.optim.lr_scheduler.MultiStepLR."""
    name = "multistep"

    def __init__(self, milestones, gamma: float = 0.1):
        ms = [int(m) for m in milestones]
        _check(ms == sorted(ms) and all(m >= 0 for m in ms),
               f"MultiStep schedule: milestones {list(milestones)!r} must be increasing step numbers >= 0")
        _check(gamma >= 0, f"MultiStep schedule: gamma={gamma!r} must be >= 0")
        self.milestones, self.gamma = ms, float(gamma)

    def lr(self, base_lr, step):
        return float(base_lr) * self.gamma ** bisect.bisect_right(self.milestones, int(step))

    def options(self):
        return {"milestones": list(self.milestones), "gamma": self.gamma}


class Cosine(Schedule):
    """min_lr + (base - min_lr)(1 + cos(pi step / total_steps)) / 2: torch's CosineAnnealingLR
    with T_max = total_steps, eta_min = min_lr. Past total_steps it stays at min_lr (torch's
    would climb back up: the cosine is periodic there)."""
    name = "cosine"

    def __init__(self, total_steps: int, min_lr: float = 0.0):
        _check(int(total_steps) == total_steps and total_steps >= 1,
               f"Cosine schedule: total_steps={total_steps!r} must be a whole number >= 1",
               "the number of optimizer steps of the run: epochs x batches per epoch")
        _check(min_lr >= 0, f"Cosine schedule: min_lr={min_lr!r} must be >= 0")
        self.total_steps, self.min_lr = int(total_steps), float(min_lr)

    def lr(self, base_lr, step):
        t = min(int(step), self.total_steps)
        return self.min_lr + (float(base_lr) - self.min_lr) * (1 + math.cos(math.pi * t / self.total_steps)) / 2

    def options(self):
        return {"total_steps": self.total_steps, "min_lr": self.min_lr}


class Warmup(Schedule):
    """Linear warm-up over `steps` steps, base (step + 1) / steps (the first step already
    moves; torch's LinearLR(start_factor=1/steps, total_iters=steps-1)), then `then` from
    its own step 0 (torch's SequentialLR with milestones=[steps])."""
    name = "warmup"

    def __init__(self, steps: int, then: Schedule | None = None):
        _check(int(steps) == steps and steps >= 0, f"Warmup schedule: steps={steps!r} must be a whole number >= 0")
        _check(then is None or isinstance(then, Schedule),
               f"Warmup schedule: then={then!r} must be a Schedule (Constant(), Cosine(...), ...)")
        self.steps, self.then = int(steps), then if then is not None else Constant()

    def lr(self, base_lr, step):
        step = int(step)
        if step < self.steps:
            return float(base_lr) * (step + 1) / self.steps
        return self.then.lr(base_lr, step - self.steps)

    def options(self):
        return {"steps": self.steps, "then": self.then}

    def state_dict(self):
        return {"name": self.name, "steps": self.steps, "then": self.then.state_dict()}


SCHEDULES = {c.name: c for c in (Constant, Step, MultiStep, Cosine, Warmup)}
_SCHEDULE_ALIASES = {"none": "constant", "const": "constant", "steplr": "step", "multisteplr": "multistep",
                     "multi_step": "multistep", "cos": "cosine", "cosineannealing": "cosine"}


def _schedule_class(name):
    key = str(name).strip().lower().replace("-", "_")
    key = _SCHEDULE_ALIASES.get(key, key)
    if key not in SCHEDULES:
        raise NetDSLError(f"unknown learning-rate schedule {name!r}",
                          hint=did_you_mean(key, list(SCHEDULES) + list(_SCHEDULE_ALIASES))
                          or f"the schedules: {', '.join(SCHEDULES)}")
    return SCHEDULES[key]


def _build(cls, what, kw):
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    extra = [k for k in kw if k not in allowed]
    if extra:
        raise NetDSLError(f"{what} takes {', '.join(allowed) or 'no options'}; got {', '.join(extra)}",
                          hint=did_you_mean(extra[0], allowed) if allowed else None)
    try:
        return cls(**kw)
    except TypeError as e:              # a required option missing
        raise NetDSLError(f"{what}: {e}", hint=f"it takes {', '.join(allowed)}") from None


def schedule_from_name(name: str, total_steps: int | None = None, warmup: int = 0, **kw) -> Schedule:
    """A schedule by name for the CLI: "constant", "step" (step_size, gamma), "multistep"
    (milestones, gamma), "cosine" (over total_steps, min_lr); warmup > 0 puts a linear
    warm-up of that many steps first (the cosine then spans the rest of total_steps)."""
    cls = _schedule_class(name)
    warmup = int(warmup or 0)
    if cls is Cosine:
        _check(total_steps is not None, "the cosine schedule needs total_steps (the optimizer steps of the run)")
        _check(total_steps > warmup, f"cosine schedule: total_steps={total_steps} must be more than "
               f"warmup={warmup}")
        kw["total_steps"] = int(total_steps) - warmup
    if cls is Warmup:
        _check(not kw, f"schedule 'warmup' takes no options here; got {', '.join(kw)}", "pass warmup=N instead")
        return Warmup(warmup)
    sched = _build(cls, f"schedule {cls.name}", kw)
    return Warmup(warmup, sched) if warmup > 0 else sched


def schedule_from_state(d: dict | None) -> Schedule | None:
    """The schedule a Schedule.state_dict() describes (None stays None)."""
    if d is None:
        return None
    d = dict(d)
    cls = _schedule_class(d.pop("name", ""))
    if cls is Warmup:
        return Warmup(d["steps"], schedule_from_state(d.get("then")))
    return _build(cls, f"schedule {cls.name}", d)


# ---------------------------------------------------------------------------------------
# Optimizers


class Optimizer:
    """Base: a learning rate, an optional schedule, and one C kernel over the parameter region."""
    name = ""
    title = ""
    defaults: dict = {}

    def __init__(self, lr: float, schedule: Schedule | None = None):
        self.lr = float(lr)
        self.schedule = schedule
        self._validate()

    # the hyperparameters, in constructor order (lr included, schedule not)
    def hyper(self) -> dict:
        raise NotImplementedError

    def _validate(self):
        _check(math.isfinite(self.lr) and self.lr >= 0, f"{self.title}: lr={self.lr!r} must be >= 0",
               "a learning rate such as 0.1 (SGD) or 1e-3 (Adam)")
        _check(self.schedule is None or isinstance(self.schedule, Schedule),
               f"{self.title}: schedule={self.schedule!r} must be a Schedule (Cosine(...), Step(...), ...) or None")

    @property
    def state_regions(self) -> int:
        """Parameter-sized state regions this optimizer keeps in the arena."""
        raise NotImplementedError

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based)."""
        return self.schedule.lr(self.lr, step) if self.schedule is not None else self.lr

    def step_fields(self, step: int) -> dict:
        """The kernel's fields to set before optimizer step `step` (0-based): its learning rate
        and the 1-based update count (momentum start, Adam's bias correction)."""
        _check(int(step) >= 0, f"{self.title}: optimizer step {step} < 0")
        return {"lr": self.lr_at(step), "step": int(step) + 1}

    def call(self, count: int) -> KernelCall:
        raise NotImplementedError

    def state_dict(self) -> dict:
        """The hyperparameters and the schedule, JSON-able (lists, floats, None)."""
        d = {"name": self.name}
        d.update({k: list(v) if isinstance(v, tuple) else v for k, v in self.hyper().items()})
        d["schedule"] = self.schedule.state_dict() if self.schedule is not None else None
        return d

    def load_state_dict(self, d: dict) -> None:
        """Set the hyperparameters and schedule from a state_dict() of the same optimizer."""
        d = dict(d)
        name = d.pop("name", self.name)
        _check(name == self.name, f"{self.title}.load_state_dict: the state is of optimizer {name!r}",
               f"build it with from_state({{'name': {name!r}, ...}}) instead")
        schedule = schedule_from_state(d.pop("schedule", None))
        known = self.hyper()
        extra = [k for k in d if k not in known]
        _check(not extra, f"{self.title}.load_state_dict: unknown fields {', '.join(extra)}")
        old = (dict(self.__dict__))
        for k, v in d.items():
            setattr(self, k, tuple(float(x) for x in v) if isinstance(v, (list, tuple)) else type(known[k])(v))
        self.schedule = schedule
        try:
            self._validate()
        except NetDSLError:
            self.__dict__.update(old)
            raise

    def describe(self) -> str:
        """'SGD(lr=0.05, momentum=0.9)': lr and the hyperparameters that differ from the defaults."""
        parts = []
        for k, v in self.hyper().items():
            if k != "lr" and self.defaults.get(k) == v:
                continue
            parts.append(f"{k}=({', '.join(_num(x) for x in v)})" if isinstance(v, tuple) else f"{k}={_num(v)}")
        if self.schedule is not None and self.schedule.name != "constant":
            parts.append(f"schedule={self.schedule.describe()}")
        return f"{self.title}({', '.join(parts)})"

    def __repr__(self):
        return self.describe()


class SGD(Optimizer):
    """torch.optim.SGD: momentum (buffer = the first gradient), dampening, nesterov, weight decay."""
    name, title = "sgd", "SGD"
    defaults = {"momentum": 0.0, "dampening": 0.0, "nesterov": False, "weight_decay": 0.0}

    def __init__(self, lr: float, momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, schedule: Schedule | None = None):
        self.momentum, self.dampening = float(momentum), float(dampening)
        self.nesterov, self.weight_decay = bool(nesterov), float(weight_decay)
        super().__init__(lr, schedule)

    def hyper(self):
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _validate(self):
        super()._validate()
        _check(self.momentum >= 0, f"SGD: momentum={self.momentum!r} must be >= 0")
        _check(0 <= self.dampening <= 1, f"SGD: dampening={self.dampening!r} must be in [0, 1]")
        _check(self.weight_decay >= 0, f"SGD: weight_decay={self.weight_decay!r} must be >= 0")
        _check(not self.nesterov or (self.momentum > 0 and self.dampening == 0),
               "SGD: nesterov momentum requires a momentum > 0 and zero dampening", "e.g. momentum=0.9")

    @property
    def state_regions(self):
        return 1 if self.momentum != 0 else 0

    def call(self, count):
        return KernelCall("nd_sgd_step_f32", "nd_sgd_params",
                          dict(count=check_int64("SGD parameters", count), step=1, lr=self.lr_at(0),
                               momentum=self.momentum, dampening=self.dampening,
                               weight_decay=self.weight_decay, nesterov=int(self.nesterov)),
                          weights=(None, None))


class Adam(Optimizer):
    """torch.optim.Adam: weight decay added to the gradient (L2), bias-corrected moments."""
    name, title = "adam", "Adam"
    defaults = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    decoupled = 0

    def __init__(self, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float | None = None, schedule: Schedule | None = None):
        self.betas = tuple(float(b) for b in betas)
        self.eps = float(eps)
        self.weight_decay = float(self.defaults["weight_decay"] if weight_decay is None else weight_decay)
        super().__init__(lr, schedule)

    def hyper(self):
        return {"lr": self.lr, "betas": self.betas, "eps": self.eps, "weight_decay": self.weight_decay}

    def _validate(self):
        super()._validate()
        _check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
               f"{self.title}: betas={self.betas!r} must be two numbers in [0, 1)", "the usual (0.9, 0.999)")
        _check(self.eps >= 0, f"{self.title}: eps={self.eps!r} must be >= 0")
        _check(self.weight_decay >= 0, f"{self.title}: weight_decay={self.weight_decay!r} must be >= 0")

    @property
    def state_regions(self):
        return 2

    def call(self, count):
        return KernelCall("nd_adam_step_f32", "nd_adam_params",
                          dict(count=check_int64(f"{self.title} parameters", count), step=1,
                               lr=self.lr_at(0), beta1=self.betas[0], beta2=self.betas[1], eps=self.eps,
                               weight_decay=self.weight_decay, decoupled=self.decoupled),
                          weights=(None, None))


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay (p *= 1 - lr wd each step)."""
    name, title = "adamw", "AdamW"
    defaults = {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
    decoupled = 1


OPTIMIZERS = {c.name: c for c in (SGD, Adam, AdamW)}


def from_name(name, **kw) -> Optimizer:
    """The optimizer "sgd" | "adam" | "adamw" (any case) built with kw; an Optimizer passes through."""
    if isinstance(name, Optimizer):
        _check(not kw, f"from_name: options {', '.join(kw)} given with a ready optimizer {name.describe()}")
        return name
    key = str(name).strip().lower()
    if key not in OPTIMIZERS:
        raise NetDSLError(f"unknown optimizer {name!r}",
                          hint=did_you_mean(key, list(OPTIMIZERS)) or f"the optimizers: {', '.join(OPTIMIZERS)}")
    return _build(OPTIMIZERS[key], f"optimizer {OPTIMIZERS[key].title}", kw)


def from_state(d: dict) -> Optimizer:
    """The optimizer a state_dict() describes (a checkpoint's)."""
    d = dict(d)
    name = d.get("name", "")
    opt = from_name(name, **{k: v for k, v in d.items() if k in ("lr",)})
    opt.load_state_dict(d)
    return opt


def clip_call(count: int, max_norm: float) -> KernelCall:
    """Gradient-norm clipping over the gradient region, torch.nn.utils.clip_grad_norm_:
    out = 1 float (the L2 norm before clipping, summed in double), ins = (grads,), which are
    scaled in place by min(1, max_norm / (norm + 1e-6))."""
    max_norm = float(max_norm)
    _check(math.isfinite(max_norm) and max_norm > 0, f"gradient clipping: max_norm={max_norm!r} must be > 0",
           "e.g. 1.0 or 5.0; leave clipping off rather than set 0")
    return KernelCall("nd_clip_grad_norm_f32", "nd_clip_grad_norm_params",
                      dict(count=check_int64("gradient region", count), max_norm=max_norm), weights=(None, None))
