"""What CPU this is: its physical cores, its name and the int8 dot-product instructions ONNX Runtime can use.

Int8 scores depend on the CPU (the default model's real-dev macro-F1 read 0.862 on an AVX-512
VNNI Xeon and 0.847 on an AVX2 EPYC with the same thresholds; PyTorch's scores do not move), so
reports of int8 numbers record the machine that produced them.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
#: flags of x86 int8 dot-product units, fastest first (ONNX Runtime picks its kernels by them)
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")


def _blocks(cpuinfo: str) -> list[dict[str, str]]:
    """``/proc/cpuinfo`` text as one ``{field: value}`` per logical CPU."""
    out = []
    for block in cpuinfo.strip().split("\n\n"):
        pairs = (line.split(":", 1) for line in block.splitlines() if ":" in line)
        out.append({k.strip(): v.strip() for k, v in pairs})
    return out


def physical_cores() -> int:
    """Physical cores (intra-op threads beyond these only add contention)."""
    try:
        cores = {(b.get("physical id"), b.get("core id")) for b in _blocks(CPUINFO.read_text())}
        if cores and (None, None) not in cores:
            return len(cores)
    except OSError:
        pass
    return os.cpu_count() or 1


def describe(cpuinfo: str | None = None) -> dict[str, str]:
    """``{"cpu": model name, "int8_dot": best of INT8_FLAGS or "none (avx2)"/"none"}`` from ``cpuinfo``
    (default: this machine's ``/proc/cpuinfo``; elsewhere the platform's processor name)."""
    if cpuinfo is None:
        try:
            cpuinfo = CPUINFO.read_text()
        except OSError:
            return {"cpu": platform.processor() or "unknown", "int8_dot": "unknown"}
    fields = _blocks(cpuinfo)[0]
    flags = set(fields.get("flags", "").split())
    best = next((f for f in INT8_FLAGS if f in flags), "none (avx2)" if "avx2" in flags else "none")
    return {"cpu": fields.get("model name", platform.processor() or "unknown"), "int8_dot": best}
