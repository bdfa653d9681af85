"""What the front end agrees to expand (docs/LANGUAGE.md, Limits). Read as `limits.NAME`
at the moment of the check, so a test may lower one with mock.patch.object(limits, ...)."""
MAX_LAYERS = 100_000        # layers in one expanded network; block instances alike
MAX_MERGE_INPUTS = 128      # inputs of one Concat / Add / Mul (the merge kernels' fixed bound)
MAX_UNROLL = 1_000_000      # repeat iterations in all, also of repeats that build nothing (`_*n`)
MAX_REPEAT = 100_000        # one repeat count
