"""int8 post-training quantization (issue 13, part 2): `netdsl quantize`, docs/QUANTIZE.md.

    numerics   the int8 arithmetic in numpy: the oracle for the C kernels
    observers  calibration: minmax, percentile, entropy (TensorRT's KL)
    data       calibration inputs from digits / .npz / .npy / a folder of images
    pack       nd_qconv params and the packed weight blob
    model      quantize(), QuantizedModel, QSession, the per-layer report
    bundle     int8 bundles (.netc with int8 tensors)
"""
from .model import QuantizedModel, QuantReport, quantize

__all__ = ["quantize", "QuantizedModel", "QuantReport"]
