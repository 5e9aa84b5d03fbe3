"""Model backends: in-process (demo, scikit-learn, callable, ONNX) and upstream HTTP."""
