"""Using a trained model: classify, explain (Grad-CAM), export (ONNX, int8)."""
