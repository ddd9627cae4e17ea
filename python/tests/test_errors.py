"""Every bad argument surfaces as a TokenmathError carrying the C ABI's status and text;
outputs the caller owns are untouched."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

import tokenmath as tm
from tokenmath import _native


def _x(rows=3, vocab=5):
    return np.arange(rows * vocab, dtype=np.float32).reshape(rows, vocab) / 7


def _raises(name, fn, *a, **k):
    with pytest.raises(tm.TokenmathError) as e:
        fn(*a, **k)
    err = e.value
    assert err.name == name, str(err)
    assert err.status == tm.STATUSES[name]
    assert err.text == _native.status_str(err.status) and err.text in str(err)
    return err


def test_status_table_is_the_c_abis():
    assert tm.STATUSES["TKM_STATUS_OK"] == 0
    assert tm.STATUSES["TKM_STATUS_INTERNAL_PANIC"] == 255
    assert _native.status_str(6) == "unsupported dtype"
    assert _native.status_str(12345) == "unknown status"
    e = tm.TokenmathError(12345, "f")
    assert e.name == "unknown" and "unknown status" in str(e)


def test_logits_argument_errors():
    x = _x()
    t = np.array([0, 1, 2], np.int32)
    _raises("TKM_STATUS_BAD_DTYPE", tm.logits_fwd, x.astype(np.float64), t)
    _raises("TKM_STATUS_BAD_DTYPE", tm.logits_fwd, x, t.astype(np.int64))
    _raises("TKM_STATUS_BAD_TENSOR", tm.logits_fwd, x.reshape(-1), None)
    _raises("TKM_STATUS_BAD_TENSOR", tm.logits_fwd, x.reshape(1, 3, 5), None)
    _raises("TKM_STATUS_BAD_STRIDE", tm.logits_fwd, _x(3, 10)[:, ::2], t)
    _raises("TKM_STATUS_LENGTH_MISMATCH", tm.logits_fwd, x, t[:2])
    _raises("TKM_STATUS_LABEL_OUT_OF_RANGE", tm.logits_fwd, x, np.array([0, 5, 1], np.int32))
    _raises("TKM_STATUS_INVALID_TEMPERATURE", tm.logits_fwd, x, t, 0.0)
    _raises("TKM_STATUS_INVALID_TEMPERATURE", tm.logits_fwd, x, t, float("nan"))
    _raises("TKM_STATUS_EMPTY_VOCAB", tm.logits_fwd, np.zeros((2, 0), np.float32), None)
    s = tm.logits_fwd(x, t)
    e = _raises("TKM_STATUS_LENGTH_MISMATCH", tm.logits_bwd, x, s, t, g_logp=np.ones(2, np.float32))
    assert e.function == "tkm_dl_logits_bwd"


def test_failed_inplace_leaves_logits_untouched():
    x = _x()
    t = np.array([0, 1, 2], np.int32)
    s = tm.logits_fwd(x, t)
    before = x.copy()
    _raises("TKM_STATUS_LENGTH_MISMATCH", tm.logits_bwd_inplace, x, s, t, g_logp=np.ones(4, np.float32))
    _raises("TKM_STATUS_LABEL_OUT_OF_RANGE", tm.logits_fwd_bwd_inplace, x, np.array([0, 9, 1], np.int32))
    np.testing.assert_array_equal(x, before)
    ro = x.copy()
    ro.flags.writeable = False
    e = _raises("TKM_STATUS_BAD_TENSOR", tm.logits_bwd_inplace, ro, s, t, g_logp=np.ones(3, np.float32))
    assert "read-only" in e.detail


def test_raw_pointer_calls_check_like_the_dl_calls():
    r = np.array([1, 0, 1, 1], np.float32)
    e = _raises("TKM_STATUS_BAD_DTYPE", tm.grpo_advantage, r.astype(np.float64), group_size=2)
    assert "`rewards`" in e.detail and "float32" in e.detail
    _raises("TKM_STATUS_BAD_DTYPE", tm.grpo_advantage, r, np.array([0, 0, 1, 1]))  # int64 labels
    _raises("TKM_STATUS_LENGTH_MISMATCH", tm.grpo_advantage, r, np.array([0, 0, 1], np.uint32))
    _raises("TKM_STATUS_INVALID_ARGUMENT", tm.grpo_advantage, r)  # neither ids nor size
    _raises("TKM_STATUS_INVALID_ARGUMENT", tm.grpo_advantage, r, np.zeros(4, np.uint32), 2)  # both
    _raises("TKM_STATUS_NON_FINITE", tm.grpo_advantage, np.array([1, np.inf, 0, 1], np.float32), group_size=2)
    _raises("TKM_STATUS_BAD_TENSOR", tm.grpo_advantage, r.reshape(2, 2), group_size=2)
    lp = np.zeros((2, 6), np.float32)
    m = np.ones((2, 6), np.uint8)
    _raises("TKM_STATUS_BAD_STRIDE", tm.ppo_clip_loss, np.zeros((2, 12), np.float32)[:, ::2], lp, lp, m)
    _raises("TKM_STATUS_LENGTH_MISMATCH", tm.ppo_clip_loss, lp, np.zeros((2, 5), np.float32), lp, m)
    _raises("TKM_STATUS_BAD_DTYPE", tm.ppo_clip_loss, lp, lp, lp, m.astype(np.int32))
    _raises("TKM_STATUS_INVALID_ARGUMENT", tm.ppo_clip_loss, lp, lp, lp, m, eps_low=-1.0)
    with pytest.raises(ValueError, match="token-mean"):
        tm.agg_loss(lp, m, "token_mean")


def test_not_a_tensor():
    with pytest.raises(TypeError):
        tm.logits_fwd([[1.0, 2.0]])


# --- a DLPack producer on a CUDA device (no GPU needed: the tensor is never read) ---

class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p), ("deleter", ctypes.c_void_p)]


class FakeCudaTensor:
    """Exports a legacy "dltensor" capsule that claims kDLCUDA memory (device 0). Its
    `stream` argument is recorded: the package must pass the caller's stream (1 = the
    legacy default stream, since this framework is unknown)."""

    def __init__(self, shape, code=2, bits=32):
        self.shape = tuple(shape)
        self._backing = np.zeros(int(np.prod(shape)) or 1, np.float32)
        self._shape = (ctypes.c_int64 * len(shape))(*shape)
        self._m = _DLManagedTensor()
        t = self._m.dl_tensor
        t.data, t.device, t.ndim = self._backing.ctypes.data, _DLDevice(2, 0), len(shape)
        t.dtype, t.shape, t.strides, t.byte_offset = _DLDataType(code, bits, 1), self._shape, None, 0
        self.streams = []

    def __dlpack_device__(self):
        return (2, 0)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        self.streams.append(stream)
        new = ctypes.pythonapi.PyCapsule_New
        new.restype, new.argtypes = ctypes.py_object, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
        return new(ctypes.addressof(self._m), b"dltensor", None)


def test_cuda_tensor_is_a_clean_error_until_the_cuda_path_exists():
    x = FakeCudaTensor((3, 5))
    with pytest.raises(tm.TokenmathError) as e:
        tm.logits_fwd(x, None)
    # Without a CUDA launch path in the C ABI: UNSUPPORTED_DEVICE; with it (no GPU here or
    # a CPU output): its own device statuses.
    assert e.value.name in {"TKM_STATUS_UNSUPPORTED_DEVICE", "TKM_STATUS_CUDA_UNAVAILABLE", "TKM_STATUS_DEVICE_MISMATCH"}
    assert x.streams and x.streams[0] == 1  # the legacy default stream, as DLPack spells it
    # The raw-pointer calls take CPU memory only.
    r = FakeCudaTensor((4,))
    e2 = pytest.raises(tm.TokenmathError, tm.grpo_advantage, r, group_size=2).value
    assert e2.name == "TKM_STATUS_UNSUPPORTED_DEVICE" and "device type 2" in e2.detail
