"""Model runtimes behind the `Detector` / `Embedder` protocols: ONNX (insightface's
onnxruntime, OpenCV's YuNet), facenet-pytorch, dlib. A backend imports only the
lower floors of `workbench.faces` (types, pack, align, runtime, weights), never
another backend; `workbench.faces.registry` opens them by name."""
