"""Training: the backward graph, losses, optimizers, data and augmentation (issue 10).

The pieces, one module each: registry.py (how an op declares its gradient: the backward
kernels it needs and its float64 numpy oracle), bwd_*.py / ref_*.py (per op family),
plan.py + session.py (one training step as one Program: forward, loss, backward,
optimizer update in one C call), optim.py, data.py, augment.py. docs/TRAINING.md.
"""
