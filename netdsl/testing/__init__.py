"""Generated-network testing: random valid `.net` texts that use every op and every merge
(`generate`), the property every one of them must satisfy (`check`: -O0 and -O3 on the C
runtime agree with the numpy reference on every ISA, batch by batch, with non-finite inputs,
and through a compiled bundle), a greedy shrinker that minimizes a failing text, and a soak
(`python -m netdsl.testing.soak --minutes 30`). Shipped with netdsl and importable without any
test-only dependency; docs/TESTING.md says how to use it."""
from .generate import EMITTERS, Generator, generate_net  # noqa: F401
