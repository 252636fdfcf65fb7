"""The export stage and what runs on its output: writing ONNX / TorchScript / safetensors and the
model card, loading an export with ONNX Runtime alone, and the apps (sample, reconstruct, ...)."""
