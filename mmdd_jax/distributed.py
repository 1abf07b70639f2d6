"""Multi-process runs on ``jax.distributed``: one global mesh, one writer.

A run on several processes (several machines, or several processes on one machine) is
the *same program* on every process (SPMD, multi-controller JAX): every process reads
the same store, draws the same keys and runs the same jitted steps over **one global
mesh** of every process's devices (:mod:`mmdd_jax.sharding`); a leading batch axis
(experts, classes, trajectory segments) is split across it. What differs per process:

* **host data** enters through :func:`put` (``jax.make_array_from_process_local_data``:
  each process hands over only the rows its own devices hold), and sharded results come
  back to the host through :func:`to_host` (``process_allgather``);
* **files**: only process 0, the *writer* (:func:`is_writer`), takes the workdir lock and
  writes ``config.json``, ``metrics.jsonl``, ``results.*``, distilled stores and tables;
  the others write nothing and wait at a :func:`barrier` where the writer's files must
  exist. Orbax checkpoints are the exception: every process takes part in a save or
  restore (Orbax's multi-process protocol), and the primary process commits it.
* **errors** a writer-only step raises (a locked workdir, a full disk) reach every
  process (:func:`on_writer`), so no process waits forever for a writer that gave up.

A single process (the default, and whenever no topology is given) is unchanged: every
helper here is then the plain single-process operation.

Topology (:func:`initialize`), first match wins: the explicit arguments (the binaries'
``--coordinator_address``, ``--num_processes``, ``--process_id`` flags,
:mod:`mmdd_jax.cli`), the environment (``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``), then JAX's own cluster detection
(``jax.distributed.initialize()`` with no arguments) when a SLURM job step or an Open
MPI launch with more than one task is detected. The topology is never part of a config,
so a workdir's fingerprint does not depend on how many processes made it.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

import numpy as np

T = TypeVar("T")

ENV_ADDRESS = "JAX_COORDINATOR_ADDRESS"
ENV_NUM = "JAX_NUM_PROCESSES"
ENV_ID = "JAX_PROCESS_ID"
_MSG_BYTES = 1024   # an error line broadcast from the writer (truncated)

_STATE = {"initialized": False, "barriers": 0}


def cluster_tasks() -> int:
  """The task count of a detected SLURM job step or Open MPI launch (1: none)."""
  for var in ("SLURM_STEP_NUM_TASKS", "OMPI_COMM_WORLD_SIZE"):
    v = os.environ.get(var)
    if v and v.isdigit():
      return int(v)
  if os.environ.get("SLURM_JOB_ID") and os.environ.get("SLURM_NTASKS", "").isdigit() \
      and os.environ.get("SLURM_PROCID") is not None:
    return int(os.environ["SLURM_NTASKS"])
  return 1


def _int(name: str, value: Any) -> int | None:
  if value is None or value == "":
    return None
  try:
    return int(value)
  except (TypeError, ValueError):
    raise ValueError(f"{name}: expected an integer, found {value!r}") from None


def resolve(coordinator_address: str | None = None, num_processes: int | None = None,
            process_id: int | None = None, env: dict | None = None) -> dict | None:
  """The topology to start, ``{"coordinator_address", "num_processes", "process_id"}``
  (``{}``: let JAX detect the cluster), or None for a single process. A partial
  explicit topology stops with one line naming what is missing."""
  env = os.environ if env is None else env
  addr = coordinator_address or env.get(ENV_ADDRESS) or None
  num = _int("--num_processes", num_processes)
  if num is None:
    num = _int(ENV_NUM, env.get(ENV_NUM))
  pid = _int("--process_id", process_id)
  if pid is None:
    pid = _int(ENV_ID, env.get(ENV_ID))
  if num is not None and num < 1:
    raise ValueError(f"--num_processes: expected ≥ 1, found {num}")
  if num == 1:
    return None
  given = {"--coordinator_address": addr, "--num_processes": num, "--process_id": pid}
  if any(v is not None for v in given.values()):
    missing = [k for k, v in given.items() if v is None]
    if missing:
      raise ValueError(f"{', '.join(missing)}: expected the whole multi-process topology "
                       f"(address, count and id, or none of them), found only "
                       f"{', '.join(k for k in given if k not in missing)}")
    if not 0 <= pid < num:
      raise ValueError(f"--process_id: expected 0 ≤ id < {num} (--num_processes), found {pid}")
    return {"coordinator_address": addr, "num_processes": num, "process_id": pid}
  if cluster_tasks() > 1:
    return {}
  return None


def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, *, timeout_s: int = 300) -> int:
  """Starts ``jax.distributed`` for the resolved topology (:func:`resolve`; no-op for
  one process); must run before any JAX computation. On CPU, cross-process collectives
  use gloo. Returns the number of processes."""
  topo = resolve(coordinator_address, num_processes, process_id)
  if topo is None or _STATE["initialized"]:
    import jax
    return jax.process_count() if _STATE["initialized"] else 1
  import jax
  # CPU collectives across processes (harmless for GPU/TPU backends).
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**topo, initialization_timeout=timeout_s)
  _STATE["initialized"] = True
  return jax.process_count()


def process_count() -> int:
  import jax
  return jax.process_count()


def process_index() -> int:
  import jax
  return jax.process_index()


def is_writer() -> bool:
  """Whether this process writes the run's files (process 0; always true alone)."""
  return process_index() == 0


def barrier(name: str) -> None:
  """Every process waits here until all arrive (no-op alone). ``name`` labels the
  barrier (a numbered suffix keeps successive barriers of one name distinct)."""
  if process_count() == 1:
    return
  from jax.experimental import multihost_utils
  _STATE["barriers"] += 1
  multihost_utils.sync_global_devices(f"mmdd:{name}:{_STATE['barriers']}")


def broadcast(value):
  """The writer's ``value`` (a NumPy-compatible array or scalar) on every process."""
  if process_count() == 1:
    return value
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(value)))


class WriterError(RuntimeError):
  """A writer-only step failed on process 0 (raised on the other processes; one line)."""


def on_writer(fn: Callable[[], T], what: str = "writer") -> T | None:
  """Runs ``fn`` on the writer only and waits for it on every process; an exception
  there is re-raised on the writer and raised on the others with its one-line message,
  as the same type when it is a project error or an OS fault (``RunError``, ``OSError``,
  ``FloatingPointError``, ``ValueError``; anything else as :class:`WriterError`), so no
  process hangs at a later collective. Returns ``fn()`` on the writer, None elsewhere."""
  if process_count() == 1:
    return fn()
  out, err = None, None
  if is_writer():
    try:
      out = fn()
    except BaseException as e:  # noqa: BLE001 — re-raised below, after the others know
      err = e
  msg = np.zeros(_MSG_BYTES + 1, np.uint8)
  if err is not None:
    text = (" ".join(str(err).split()) or type(err).__name__).encode()[:_MSG_BYTES]
    kinds = _kinds()
    msg[0] = 1 + kinds.index(next((k for k in kinds if isinstance(err, k)), WriterError))
    msg[1:1 + len(text)] = np.frombuffer(text, np.uint8)
  msg = broadcast(msg)
  if err is not None:
    raise err
  if int(msg[0]):
    text = bytes(msg[1:]).rstrip(b"\0").decode(errors="replace")
    raise _kinds()[int(msg[0]) - 1](f"{text} (process 0, {what})")
  return out


def _kinds() -> list[type]:
  """The error types :func:`on_writer` carries across (others arrive as WriterError)."""
  from mmdd_jax import workdir  # (imported here: workdir imports this module)
  return [workdir.RunError, OSError, FloatingPointError, ValueError, WriterError]


def put(x, sharding):
  """A host array (the same on every process) as a global ``jax.Array`` with
  ``sharding``: ``device_put`` alone; with several processes each one hands over
  only the block of rows its own devices hold
  (``jax.make_array_from_process_local_data``)."""
  import jax
  if process_count() == 1 or sharding.is_fully_addressable:
    return jax.device_put(x, sharding)
  x = np.asarray(x)
  if x.ndim == 0:
    return jax.make_array_from_process_local_data(sharding, x, x.shape)
  idx = sharding.addressable_devices_indices_map(x.shape)
  # The process's rows: the union of its devices' index blocks (contiguous along the
  # sharded axis for the 1-D meshes of mmdd_jax.sharding).
  starts, stops = [], []
  for sl in idx.values():
    s = sl[0] if sl else slice(None)
    starts.append(s.start or 0)
    stops.append(x.shape[0] if s.stop is None else s.stop)
  local = x[min(starts):max(stops)]
  return jax.make_array_from_process_local_data(sharding, local, x.shape)


def to_host(tree):
  """NumPy copies of a pytree of arrays; an array sharded over several processes is
  gathered (``process_allgather``; every process must call this together)."""
  import jax

  def get(a):
    if isinstance(a, jax.Array) and not a.is_fully_addressable and not a.is_fully_replicated:
      from jax.experimental import multihost_utils
      return np.asarray(multihost_utils.process_allgather(a, tiled=True))
    return np.asarray(a)
  return jax.tree_util.tree_map(get, tree)
