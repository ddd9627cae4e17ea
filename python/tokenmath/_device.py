"""Device plumbing of the Python layer, in one place: which framework a tensor belongs to,
the CUDA stream to hand to `__dlpack__(stream=...)`, and allocation of outputs with the
caller's framework on the caller's device.

Contract (see README.md): inputs are consumed through DLPack without a copy; outputs are
allocated here by the framework of the call's first tensor (`numpy.empty`,
`torch.empty(device=x.device)`, `cupy.empty` on x's device) and written by the C ABI in
place, so results are tensors of the caller's framework, also without a copy. For CUDA
tensors the stream is the framework's current stream on the tensor's device
(`torch.cuda.current_stream(device)`, `cupy.cuda.get_current_stream()`): the producer
orders its pending work before it, and (once the C ABI's CUDA launch path exists) the
kernels are enqueued on it, as any op of that framework would be.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence

# DLPack device types with a stream (kDLCUDA, kDLCUDAManaged).
_CUDA_TYPES = (2, 13)


def framework(x: Any) -> str:
    """The top-level module of `x`'s type (`"numpy"`, `"torch"`, `"cupy"`, ...)."""
    return type(x).__module__.split(".", 1)[0]


def arg(x: Any) -> Any:
    """A tensor argument as handed to the native module: torch tensors that require grad
    are detached (torch refuses to export them; these calls are outside autograd)."""
    if x is None:
        return None
    if not hasattr(x, "__dlpack__"):
        raise TypeError(f"tokenmath takes DLPack tensors (objects with __dlpack__: NumPy, PyTorch, CuPy, ...), not {type(x).__name__}")
    if framework(x) == "torch" and getattr(x, "requires_grad", False):
        return x.detach()
    return x


def stream_of(x: Any) -> Optional[int]:
    """The caller's current CUDA stream for a CUDA tensor `x` (an integer `cudaStream_t`,
    0 = the legacy default stream), or None for memory without streams."""
    dev = getattr(x, "__dlpack_device__", None)
    if dev is None:
        return None
    dev_type, dev_id = dev()
    if int(dev_type) not in _CUDA_TYPES:
        return None
    fw = framework(x)
    if fw == "torch":
        import torch

        return int(torch.cuda.current_stream(x.device).cuda_stream)
    if fw == "cupy":
        import cupy

        with cupy.cuda.Device(int(dev_id)):
            return int(cupy.cuda.get_current_stream().ptr)
    return 0


def empty(like: Any, shape: Sequence[int], dtype: str) -> Any:
    """An uninitialised array of `shape` and `dtype` (`"float32"`, `"uint8"`) in `like`'s
    framework and on its device; NumPy for any other framework."""
    fw = framework(like)
    shape = tuple(int(s) for s in shape)
    if fw == "torch":
        import torch

        return torch.empty(shape, dtype=getattr(torch, dtype), device=like.device)
    if fw == "cupy":
        import cupy

        with cupy.cuda.Device(like.device.id):
            return cupy.empty(shape, dtype=dtype)
    import numpy

    return numpy.empty(shape, dtype=dtype)


def empty_like(x: Any) -> Any:
    """An uninitialised, contiguous array of `x`'s shape, dtype, framework and device."""
    fw = framework(x)
    if fw == "torch":
        import torch

        return torch.empty(tuple(x.shape), dtype=x.dtype, device=x.device)
    if fw == "cupy":
        import cupy

        with cupy.cuda.Device(x.device.id):
            return cupy.empty(x.shape, dtype=x.dtype)
    import numpy

    return numpy.empty(x.shape, dtype=x.dtype)


def rows_of(x: Any) -> int:
    """The first extent of a 2-D tensor (the C ABI validates the rest)."""
    shape = tuple(x.shape)
    return int(shape[0]) if shape else 0
