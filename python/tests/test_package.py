"""Packaging: the installed package is tested, torch is not imported by `import tokenmath`,
outputs belong to the caller's framework and alias nothing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

import tokenmath as tm


def test_import_does_not_need_torch():
    code = "import sys, tokenmath; assert 'torch' not in sys.modules; print(tokenmath.__file__)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert "site-packages" in out  # the installed wheel, not the source tree


def test_versions():
    assert tm.__version__ == tm.abi_version


def test_outputs_are_fresh_numpy_arrays():
    x = np.ones((2, 3), np.float32)
    s = tm.logits_fwd(x, None)
    assert s.logp is None
    assert isinstance(s.lse, np.ndarray) and s.lse.flags.writeable and s.lse.flags.c_contiguous
    assert not np.shares_memory(s.lse, s.entropy)
    np.testing.assert_allclose(s.lse, 1 + np.log(3.0), rtol=1e-6)
