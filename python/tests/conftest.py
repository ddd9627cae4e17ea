"""Shared helpers of the Python tests: seeded data, NaN-poisoned comparisons, and the C ABI
loaded with ctypes (`TOKENMATH_LIB`, set by python/run-tests.sh) as the second oracle."""

from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261204)


def bits(a) -> np.ndarray:
    """The float32 bit patterns (for bitwise comparison, NaN payloads included)."""
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32)).view(np.uint32)


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Naive f64 log-softmax along the last axis (max-shifted)."""
    z = z.astype(np.float64)
    m = z.max(axis=-1, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=-1, keepdims=True))


class CAbi:
    """`libtokenmath.so` through ctypes: the raw-pointer entry points, called on the same
    NumPy buffers, so the Python package's results can be compared bit for bit with the
    C ABI's own (a separately built copy of it: the cdylib, not the extension module)."""

    class LogitsInput(ctypes.Structure):
        _fields_ = [
            ("struct_size", ctypes.c_size_t),
            ("dtype", ctypes.c_uint32),
            ("logits", ctypes.c_void_p),
            ("rows", ctypes.c_size_t),
            ("vocab", ctypes.c_size_t),
            ("row_stride", ctypes.c_size_t),
            ("targets", ctypes.c_void_p),
            ("row_mask", ctypes.c_void_p),
            ("temperature", ctypes.c_float),
            ("temperatures", ctypes.c_void_p),
        ]

    def __init__(self, path: str) -> None:
        self.lib = ctypes.CDLL(path)
        for name in (
            "tkm_logits_input_init",
            "tkm_logits_fwd",
            "tkm_logits_bwd",
            "tkm_grpo_advantage",
            "tkm_ppo_clip_loss",
            "tkm_gae",
            "tkm_fp_root",
        ):
            getattr(self.lib, name).restype = ctypes.c_uint32
        self.lib.tkm_logits_bwd.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_void_p] + [ctypes.c_size_t] * 3 + [
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_float,
        ] + [ctypes.c_void_p] * 7 + [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t]
        self.lib.tkm_gae.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_size_t] * 2 + [ctypes.c_float] * 2 + [
            ctypes.c_uint32,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]

    @staticmethod
    def ptr(a) -> ctypes.c_void_p:
        return ctypes.c_void_p(None if a is None else a.ctypes.data)

    def logits_fwd(self, x: np.ndarray, targets: np.ndarray, temperature: float):
        inp = self.LogitsInput()
        assert self.lib.tkm_logits_input_init(ctypes.byref(inp)) == 0
        inp.logits, inp.rows, inp.vocab, inp.row_stride = x.ctypes.data, x.shape[0], x.shape[1], x.strides[0] // 4
        inp.targets, inp.temperature = targets.ctypes.data, temperature
        outs = [np.full(x.shape[0], np.nan, np.float32) for _ in range(5)]
        st = self.lib.tkm_logits_fwd(None, ctypes.byref(inp), *[self.ptr(o) for o in outs], None)
        assert st == 0
        return outs  # lse, entropy, logp, max, log_sum

    def logits_bwd(self, x, targets, temperature, mx, ls, ent, g_logp, g_entropy):
        dx = np.full(x.shape, np.nan, np.float32)
        p = self.ptr
        st = self.lib.tkm_logits_bwd(
            None, 1, p(x), x.shape[0], x.shape[1], x.shape[1], p(targets), None, temperature, None,
            p(mx), p(ls), p(ent), p(g_logp), p(g_entropy), None, 1, p(dx), x.shape[1],
        )  # fmt: skip
        assert st == 0
        return dx

    def grpo(self, r: np.ndarray, group_size: int) -> np.ndarray:
        out = np.full(r.shape, np.nan, np.float32)
        st = self.lib.tkm_grpo_advantage(self.ptr(r), ctypes.c_size_t(r.size), None, ctypes.c_size_t(group_size), None, self.ptr(out))
        assert st == 0
        return out

    def ppo(self, logp, old, adv, mask):
        loss, d = np.full(logp.shape, np.nan, np.float32), np.full(logp.shape, np.nan, np.float32)
        p = self.ptr
        rows, cols = (ctypes.c_size_t(s) for s in logp.shape)
        st = self.lib.tkm_ppo_clip_loss(None, p(logp), p(old), p(adv), p(mask), None, rows, cols, None, p(loss), p(d), None)
        assert st == 0
        return loss, d

    def gae(self, r, v, mask, gamma, lam):
        adv, ret = np.full(r.shape, np.nan, np.float32), np.full(r.shape, np.nan, np.float32)
        p = self.ptr
        st = self.lib.tkm_gae(p(r), p(v), p(mask), r.shape[0], r.shape[1], gamma, lam, 0, p(adv), p(ret))
        assert st == 0
        return adv, ret

    def root(self, leaves: bytes) -> bytes:
        out = ctypes.create_string_buffer(32)
        buf = ctypes.create_string_buffer(leaves, len(leaves))
        st = self.lib.tkm_fp_root(buf, ctypes.c_size_t(len(leaves) // 32), out)
        assert st == 0
        return out.raw


@pytest.fixture(scope="session")
def cabi() -> CAbi:
    path = os.environ.get("TOKENMATH_LIB")
    if not path or not os.path.exists(path):
        pytest.skip("TOKENMATH_LIB (libtokenmath.so, built by python/run-tests.sh) not set")
    return CAbi(path)
