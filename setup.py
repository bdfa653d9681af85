"""netdsl: a small language and compiler for convolutional neural networks."""
from setuptools import find_packages, setup

setup(
    name="netdsl",
    version="0.1.0",
    description="Write a CNN the way the lecture does (Conv-ReLU-Pool-FC-SM); check, optimize and run it.",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["netdsl", "netdsl.*"]) + ["netdsl.grammars"],
    package_dir={"netdsl.grammars": "grammars"},
    package_data={"netdsl.zoo": ["*.net"], "netdsl.stdlib": ["*.net"], "netdsl.grammars": ["*.lark"],
                  "netdsl.viz": ["report_assets/*.js", "report_assets/*.css"]},
    install_requires=["cffi>=1.15", "numpy>=1.22", "networkx>=2.8", "lark>=1.1"],
    setup_requires=["cffi>=1.15"],
    cffi_modules=["netdsl/runtime/_build.py:ffi"],
    extras_require={
        "test": ["pytest>=7", "hypothesis>=6", "Pillow>=9", "safetensors>=0.4", "onnx>=1.14", "onnxruntime>=1.16"],
        "image": ["Pillow>=9"],
        "train": ["Pillow>=9", "safetensors>=0.4"],     # the built-in digits, checkpoints
        "sklearn": ["scikit-learn>=1.0"],                # --data sklearn-digits
        "safetensors": ["safetensors>=0.4"],
        "onnx": ["onnx>=1.14"],
        "ray": ["ray[data]>=2.9", "Pillow>=9"],          # netdsl batch --engine ray (pyarrow comes with it)
    },
    entry_points={"console_scripts": ["netdsl=netdsl.cli:main"]},
    zip_safe=False,
)
