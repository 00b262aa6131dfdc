"""tn-export: turn a generator into ONNX, ORT and Core ML files, each validated against PyTorch."""
