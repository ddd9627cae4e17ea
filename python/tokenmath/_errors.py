"""`TokenmathError`: every non-OK `tkm_status` of the C ABI, as a Python exception."""

from __future__ import annotations

from typing import Optional

from . import _native

#: Status name → code, from the C ABI's own list (`tokenmath-ffi`'s `ALL_STATUSES`).
STATUSES: dict[str, int] = dict(_native.STATUSES)
_NAMES: dict[int, str] = {code: name for name, code in STATUSES.items()}


class TokenmathError(Exception):
    """A call of the C ABI returned a status other than `TKM_STATUS_OK`.

    Nothing was written to the outputs (the C ABI writes outputs only on success; the
    outputs a failing Python call allocated are discarded).

    Attributes:
        status: the `tkm_status` code (an `int`; `STATUSES` maps names to codes).
        name: the status' name, e.g. `"TKM_STATUS_BAD_DTYPE"` (`"unknown"` for a code this
            package does not know).
        text: `tkm_status_str(status)`, the C ABI's description.
        function: the C function that failed, e.g. `"tkm_dl_logits_fwd"`.
        detail: what the Python layer knows beyond the code (which argument, which shape),
            or `None`.
    """

    status: int
    name: str
    text: str
    function: str
    detail: Optional[str]

    def __init__(self, status: int, function: str, detail: Optional[str] = None) -> None:
        self.status = int(status)
        self.name = _NAMES.get(self.status, "unknown")
        self.text = _native.status_str(self.status)
        self.function = function
        self.detail = detail
        msg = f"{function}: {self.text} ({self.name} = {self.status})"
        if detail:
            msg += f": {detail}"
        super().__init__(msg)

    def __reduce__(self):  # picklable (multiprocessing data loaders)
        return (type(self), (self.status, self.function, self.detail))


# Shown as `tokenmath.TokenmathError` in tracebacks (it is re-exported there).
TokenmathError.__module__ = "tokenmath"
