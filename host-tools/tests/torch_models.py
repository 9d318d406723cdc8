"""Exports torchvision models with random weights to ONNX and runs them in onnxruntime.

usage: torch_models.py OUTDIR NAME...

For each NAME (a torchvision.models constructor, e.g. resnet18) writes OUTDIR/NAME.onnx
(input `data`, output `prob`, 1x3x224x224, opset 17, the TorchScript exporter), the input
OUTDIR/NAME.in0.npy and onnxruntime's output OUTDIR/NAME.out0.npy. Exit code 3 when torch,
torchvision, onnx or onnxruntime is not installed (the caller then skips).
"""
import sys

try:
    import numpy as np
    import onnxruntime as ort
    import torch
    import torchvision
except ImportError as e:
    print(f"torch_models.py: {e}", file=sys.stderr)
    sys.exit(3)


def main():
    outdir, *names = sys.argv[1:]
    torch.manual_seed(0)
    for name in names:
        model = getattr(torchvision.models, name)(weights=None).eval()
        x = torch.randn(1, 3, 224, 224)
        path = f"{outdir}/{name}.onnx"
        torch.onnx.export(model, (x,), path, input_names=["data"], output_names=["prob"],
                          opset_version=17, dynamo=False)
        np.save(f"{outdir}/{name}.in0.npy", x.numpy())
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        np.save(f"{outdir}/{name}.out0.npy", sess.run(None, {"data": x.numpy()})[0])
        print(f"{name} in=data out=prob")


main()
