"""netdsl.optim: the optimizers and learning-rate schedules a training run takes.

    import netdsl.optim as optim
    opt = optim.SGD(0.05, momentum=0.9, weight_decay=5e-4,
                    schedule=optim.Warmup(500, optim.Cosine(total_steps=20000)))
    opt = optim.AdamW(1e-3)

The user-facing names of netdsl/train/optim.py (where they are implemented and documented:
torch.optim semantics, run as C kernels inside the training plan); nothing is defined here.
"""
from .train.optim import (SGD, Adam, AdamW, Constant, Cosine, MultiStep, Optimizer, Schedule, Step, Warmup,
                          clip_call, from_name, from_state, schedule_from_name, schedule_from_state)

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "Schedule", "Constant", "Step", "MultiStep", "Cosine", "Warmup",
           "from_name", "from_state", "schedule_from_name", "schedule_from_state", "clip_call"]
