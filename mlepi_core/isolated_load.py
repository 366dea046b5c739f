"""Reading an untrusted structure file in a child process, with a time and a memory bound.

A reader or a native library (ASE, spglib, a neighbour list) that crashes, hangs or
allocates without end then costs one message, not the process that asked: the dashboard
server keeps serving every other session. ``load_isolated`` is the call;
``python -m mlepi_core.isolated_load`` is the child it runs.
"""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from ase import Atoms

from .limits import LIMITS, InputLimits, check_structure_file
from .structures import StructureError

_ROOT = Path(__file__).resolve().parents[1]  # holds the mlepi_core package
CHILD = ("-m", "mlepi_core.isolated_load")  # the child's interpreter arguments, before request and reply


def load_isolated(path: str | Path, *, elements: set[str] | None = None, timeout_s: float = 60.0,
                  memory_bytes: int = 4 * 2**30, limits: InputLimits = LIMITS) -> Atoms:
    """``structures.load`` (parse, check the atom count, validate, assign layers) in a child
    process limited to ``timeout_s`` seconds and ``memory_bytes`` of address space.

    Returns the Atoms with their "layer" array. Every failure is a StructureError with a
    one-line message: an unusable file, too many atoms, a reader that crashed (the signal
    named), ran out of time or ran out of memory. The file size is checked here, before
    the child starts.
    """
    path = check_structure_file(path, limits)
    with tempfile.TemporaryDirectory(prefix="mlepi-load-") as tmp:
        request, reply = Path(tmp) / "request.pkl", Path(tmp) / "reply.pkl"
        request.write_bytes(pickle.dumps({"path": str(path.resolve()), "elements": elements, "limits": limits,
                                          "memory_bytes": int(memory_bytes)}))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")])),
               "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        try:
            child = subprocess.run([sys.executable, *CHILD, str(request), str(reply)],
                                   env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, timeout=timeout_s, cwd=tmp)
        except subprocess.TimeoutExpired:  # run() has killed the child
            raise StructureError(f"reading {path.name} took longer than {timeout_s:g} s and was stopped "
                                 f"(is the file a structure?)") from None
        if reply.is_file():
            answer = pickle.loads(reply.read_bytes())
            if "atoms" in answer:
                return answer["atoms"]
            raise StructureError(answer["error"])
        if child.returncode < 0:
            name = signal.Signals(-child.returncode).name
            raise StructureError(f"the structure reader crashed (signal {name}) on {path.name}; the file cannot "
                                 f"be used (a bug in a native library: nothing else was affected)")
        detail = (child.stderr or b"").decode(errors="replace").strip().splitlines()
        if child.returncode == _EXIT_NO_MEMORY or any("MemoryError" in line for line in detail[-3:]):
            raise StructureError(f"reading {path.name} needed more than {memory_bytes / 2**30:.1f} GiB of memory "
                                 f"and was stopped")
        raise StructureError(f"the structure reader failed on {path.name} (exit {child.returncode}"
                             + (f": {detail[-1][:200]}" if detail else "") + ")")


_EXIT_NO_MEMORY = 3


def _child(request: Path, reply: Path) -> int:
    """Load the requested file under the memory bound; the answer is pickled to ``reply``."""
    import resource

    job = pickle.loads(request.read_bytes())
    resource.setrlimit(resource.RLIMIT_AS, (job["memory_bytes"], job["memory_bytes"]))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind
    try:
        from .structures import load

        answer = {"atoms": load(job["path"], elements=job["elements"], limits=job["limits"])}
    except StructureError as err:
        answer = {"error": str(err)}
    except MemoryError:
        return _EXIT_NO_MEMORY
    data = pickle.dumps(answer)
    tmp = reply.with_suffix(".part")
    tmp.write_bytes(data)
    os.replace(tmp, reply)  # the parent sees a whole answer or none
    return 0


if __name__ == "__main__":
    sys.exit(_child(Path(sys.argv[1]), Path(sys.argv[2])))
