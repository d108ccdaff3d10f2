"""edgecost: predict how long a neural network takes, and what it costs, on a device.

```python
import edgecost
edgecost.predict("model.onnx", device="local")      # Prediction(latency_ms, low_ms, high_ms, kernels, ...)
edgecost.measure("model.onnx", device="local")      # Measurement (real runs by the device agent, stored)
edgecost.profile(device="local", budget_minutes=10) # a profiling campaign, then a fitted profile
```
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "predict", "measure", "profile", "train", "Target", "Prediction", "Measurement"]


def __getattr__(name: str):
    # Lazy: `import edgecost` stays cheap; nothing here pulls in torch.
    if name in ("predict", "measure", "profile", "train"):
        from . import api

        return getattr(api, name)
    if name in ("Target", "Prediction", "Measurement"):
        from . import records

        return getattr(records, name)
    raise AttributeError(f"module 'edgecost' has no attribute {name!r}")
