"""Issue 17: faults end in one line. OS errors (a workdir that is a file or under one,
disk full, read-only file system, permission denied) and a corrupt config.json name the
path and exit 2; Ctrl-C exits 130 with one line, and rerunning resumes.

How each fault is produced (tests run as root, so chmod cannot make a directory
read-only):
* **genuinely**, in a subprocess with a private mount namespace (``unshare --mount``)
  holding a small ``tmpfs`` (disk full) or a ``ro`` one (read-only): skipped where
  mounting is not allowed;
* **in-process**, by monkeypatching the OS call to raise the errno (permission denied
  always; disk full and read-only too, so that CI without mounts still covers them).
"""

import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from embed import store as S
from mmdd_jax import cli, faults, keys, loop, workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = {"progress": False, "distill.iterations": 2, "eval.runs": 1, "experts.lr": 0.1,
        "eval.lrs": (0.1,), "eval.max_epochs": 2, "experts.num_experts": 1, "experts.epochs": 2,
        "distill.max_start_epoch": 1}   # with the switches local=1, n=8


def _fast(store, **flat):
  from experiments.configs import hopa as hopa_config
  return keys.override(hopa_config.get_config(f"dataset={store},local=1,n=8"), {**FAST, **flat})


def _hopa_cmd(wd, store):
  return [sys.executable, "-m", "experiments.hopa", f"--workdir={wd}",
          f"--config=experiments/configs/hopa.py:dataset={store},local=1,n=8",
          *(f"--config.{k}={v}" for k, v in FAST.items())]


def _one_line(r, code=2, prefix="error:"):
  lines = r.stderr.strip().splitlines()
  assert r.returncode == code and len(lines) == 1 and lines[0].startswith(prefix), \
      (r.returncode, r.stderr[-3000:])
  return lines[0]


# --- genuine faults: a private mount namespace with a tmpfs -----------------------------

def _can_mount(tmp_path) -> bool:
  if not shutil.which("unshare"):
    return False
  d = tmp_path / "probe"
  d.mkdir()
  r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                      f"mount -t tmpfs -o size=64k tmpfs {d}"], capture_output=True)
  return r.returncode == 0


def _in_tmpfs(tmp_path, options, cmd, **kw):
  """Runs ``cmd`` (argv) in a private mount namespace where ``tmp_path/mnt`` is a tmpfs
  mounted with ``options`` (gone with the namespace)."""
  if not _can_mount(tmp_path):
    pytest.skip("cannot mount a tmpfs in a private mount namespace here")
  mnt = tmp_path / "mnt"
  mnt.mkdir()
  script = f"mount -t tmpfs -o {options} tmpfs {mnt} && exec \"$@\""
  return subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script,
                         "sh", *cmd], capture_output=True, text=True, cwd=ROOT, **kw), mnt


def test_disk_full_during_a_checkpoint_is_one_line(tiny_store, tmp_path):
  """A 1 MiB file system: Orbax's first expert checkpoint fails in its worker threads
  (it used to end in ~120 lines: their logged tracebacks, "Event loop is closed")."""
  r, mnt = _in_tmpfs(tmp_path, "size=1m", _hopa_cmd(tmp_path / "mnt" / "w", tiny_store.root))
  line = _one_line(r)
  assert f"{mnt}/w/experts: no space left on the device (ENOSPC)" in line, line
  assert "rerun the same command to resume" in line


def test_read_only_file_system_is_one_line(tiny_store, tmp_path):
  r, mnt = _in_tmpfs(tmp_path, "ro,size=64k", _hopa_cmd(tmp_path / "mnt" / "w", tiny_store.root))
  line = _one_line(r)
  assert f"{mnt}/w: read-only file system (EROFS)" in line, line


HEADS_SCRIPT = textwrap.dedent("""
  import sys
  import numpy as np
  from embed import store as S
  from mmdd_jax import cli

  def main(argv):
    n, d, e = 4, 64, 1024          # 256 KiB of kernel: beyond a 128 KiB tmpfs
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, e)); x /= np.linalg.norm(x, axis=1, keepdims=True)
    heads = {"text/ln_scale": np.ones(d, np.float32), "text/ln_bias": np.zeros(d, np.float32),
             "text/kernel": rng.normal(size=(d, e)).astype(np.float32)}
    S.write_store(sys.argv[1], {"text": S.ModalitySpec(d, e)},
                  {"train": dict(ids=list("abcd"), features={"text": rng.normal(size=(n, d))},
                                 embeddings={"text": x})}, heads=heads, encoder="t")

  cli.run(main, argv=["write_store"])
""")


def test_disk_full_at_heads_npz_names_it(tmp_path):
  """np.savez's failed close raises ENOSPC naming no file; the writer names heads.npz."""
  script = tmp_path / "write_heads.py"
  script.write_text(HEADS_SCRIPT)
  r, mnt = _in_tmpfs(tmp_path, "size=128k", [sys.executable, str(script), str(tmp_path / "mnt" / "s")],
                     env={**os.environ, "PYTHONPATH": ROOT})
  line = _one_line(r)
  assert f"{mnt}/s/heads.npz: no space left on the device (ENOSPC)" in line, line
  assert ".tmp-" not in line


# --- the workdir in the way; a corrupt config.json ---------------------------------------

def test_workdir_that_is_a_file_or_under_one(tiny_store, tmp_path):
  f = tmp_path / "afile"
  f.write_text("x")
  for wd, via in ((f, ""), (f / "w", f" (on the way to {f / 'w'})")):
    r = subprocess.run(_hopa_cmd(wd, tiny_store.root), capture_output=True, text=True, cwd=ROOT)
    line = _one_line(r)
    assert line == f"error: {f}: expected a directory, found a regular file{via}; move it or " \
                   "use another workdir", line
  assert f.read_text() == "x"


def test_corrupt_config_json_names_the_file(tiny_store, tmp_path):
  wd = tmp_path / "w"
  wd.mkdir()
  (wd / "config.json").write_text('{"fingerprint": "ab", "config": {"seed": ')   # truncated
  r = subprocess.run(_hopa_cmd(wd, tiny_store.root), capture_output=True, text=True, cwd=ROOT)
  line = _one_line(r)
  assert f"{wd / 'config.json'}: expected a JSON config written by a run, found a parse error" \
      in line and "--fresh" in line, line
  (wd / "config.json").write_bytes(b"\xff\xfe\x00")   # not even UTF-8
  with pytest.raises(workdir_lib.RunError, match="config.json: expected a JSON config"):
    workdir_lib.read_config(str(wd))


# --- SIGINT -------------------------------------------------------------------------------

def _with_default_sigint(cmd):
  """``python -m module args…`` with Ctrl-C raising KeyboardInterrupt whatever the test
  process inherited: a job started in the background (``&``, ``nohup``), as CI may be,
  ignores SIGINT, its children inherit that, and Python then installs no handler."""
  assert cmd[1] == "-m"
  boot = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
          "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', "
          "alter_sys=True)")
  return [cmd[0], "-c", boot, *cmd[2:]]


def test_sigint_is_one_line_and_the_rerun_resumes(tiny_store, tmp_path):
  wd = tmp_path / "w"
  cmd = _hopa_cmd(wd, tiny_store.root)
  p = subprocess.Popen(_with_default_sigint(cmd), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, cwd=ROOT)
  first = wd / "experts" / "0"          # the first finished checkpoint (epoch 0)
  t0 = time.time()
  while not first.exists() and p.poll() is None and time.time() - t0 < 300:
    time.sleep(0.05)
  assert p.poll() is None, "the run ended before it could be interrupted"
  p.send_signal(signal.SIGINT)
  out, err = p.communicate(timeout=300)
  r = subprocess.CompletedProcess(cmd, p.returncode, out, err)
  line = _one_line(r, code=130, prefix="interrupted:")
  assert "rerun the same command to resume" in line and str(wd) in line, line
  assert not (wd / "results.json").exists()
  kept = os.stat(first)
  r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
  assert r.returncode == 0, r.stderr[-3000:]
  assert (wd / "results.json").exists() and (wd / "results.md").exists()
  assert not (wd / "eval_ckpt").exists()   # the evaluation's checkpoints, removed once scored
  again = os.stat(first)
  assert (again.st_ino, again.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)  # resumed, not redone


def test_a_ctrl_c_swallowed_by_a_finalizer_still_stops_the_run():
  """Ctrl-C that lands in a finalizer or gc callback (XLA's ``_xla_gc_callback``; seen
  in CI, where the run then finished with exit 0) is delivered again, not lost."""
  class Finalizer:
    def __del__(self):
      raise KeyboardInterrupt   # what the default SIGINT handler raises inside __del__

  before = signal.signal(signal.SIGINT, signal.default_int_handler)   # as in a terminal
  quiet = faults.QuietBackground().install()
  try:
    with pytest.raises(KeyboardInterrupt):
      Finalizer()                 # __del__ runs here; Python can only report the exception
      for _ in range(200):        # the re-delivered signal is raised at the next check
        time.sleep(0.01)
    assert quiet.held == []       # nothing printed about the swallowed one
  finally:
    quiet.release()
    signal.signal(signal.SIGINT, before)


def test_a_swallowed_ctrl_c_stops_a_debug_run_too(monkeypatch):
  """Under ``MMDD_DEBUG=1`` (tracebacks, nothing held back) the same re-delivery holds:
  the Ctrl-C that a finalizer swallowed reaches ``main`` as a KeyboardInterrupt."""
  class Finalizer:
    def __del__(self):
      raise KeyboardInterrupt

  def main(_):
    Finalizer()
    for _ in range(200):
      time.sleep(0.01)

  monkeypatch.setenv("MMDD_DEBUG", "1")
  before, hook = signal.signal(signal.SIGINT, signal.default_int_handler), sys.unraisablehook
  try:
    with pytest.raises(KeyboardInterrupt):
      cli.run(main, argv=["prog"])
    assert sys.unraisablehook is hook     # the debug run puts the hook back
  finally:
    sys.unraisablehook = hook
    signal.signal(signal.SIGINT, before)


# --- in-process: cli.run's one line for each errno (no mounts needed) ---------------------

@pytest.fixture
def restore_hooks():
  """cli.run leaves its discarding hooks (and, after Ctrl-C, the default SIGINT action)
  installed after a fault, since the process exits; in-process tests put them back."""
  from absl import logging as absl_logging
  hook, logger = sys.unraisablehook, absl_logging.get_absl_logger()
  filters, sigint = list(logger.filters), signal.getsignal(signal.SIGINT)
  yield
  sys.unraisablehook = hook
  logger.filters[:] = filters
  signal.signal(signal.SIGINT, sigint)


def _run_cli(main, capsys):
  with pytest.raises(SystemExit) as e:
    cli.run(main, argv=["prog"])
  return e.value.code, capsys.readouterr().err


FAULTS = {
    errno.ENOSPC: "no space left on the device (ENOSPC); free some space, then rerun the same "
                  "command to resume (what was written is kept)",
    errno.EROFS: "read-only file system (EROFS); use a writable workdir",
    errno.EACCES: "permission denied (EACCES); use a workdir you can write",
    errno.EIO: "Input/output error (EIO)",
}


@pytest.mark.parametrize("code", sorted(FAULTS))
def test_os_error_without_a_file_name_is_one_line_naming_the_file(tmp_path, monkeypatch, capsys,
                                                                  restore_hooks, code):
  """The errno raised by the write itself, as a full disk's write() does: no file name."""
  def fail(*a, **k):
    raise OSError(code, os.strerror(code))

  monkeypatch.setattr(os, "replace", fail)
  path = str(tmp_path / "results.json")
  rc, err = _run_cli(lambda argv: S.atomic_write_json(path, {}), capsys)
  assert rc == 2 and err.strip().splitlines() == [f"error: {path}: {FAULTS[code]}"], err


TS_MESSAGE = ('RESOURCE_EXHAUSTED: Error writing "params.vision.LayerNorm_0.bias/0.0" in OCDBT '
              'database at local file "{d}/0.orbax-checkpoint-tmp/default.orbax-checkpoint-tmp/'
              'ocdbt.process_0/": Failed writing: "{d}/0.orbax-checkpoint-tmp/default.orbax-'
              'checkpoint-tmp/ocdbt.process_0/d/4510": Failed to write 14581760 bytes to file 21: '
              "No space left on device [os_error_code='28']")


class _Closed:
  def __del__(self):
    raise RuntimeError("Event loop is closed")


def _orbax_noise():
  """What Orbax's worker threads print when a write fails: a logged error, and the
  "unraisable" RuntimeError its closed event loop leaves behind."""
  from absl import logging as absl_logging
  rec = logging.LogRecord("absl", logging.ERROR, "/x/orbax/checkpoint/future.py", 387,
                          "_SignalingThread.run() raised an exception", None, None)
  absl_logging.get_absl_logger().handle(rec)
  c = _Closed()
  del c


def test_orbax_fault_names_the_checkpoint_directory(tmp_path, monkeypatch, capfd, caplog,
                                                    restore_hooks):
  """Orbax reports a full disk as TensorStore's ValueError (after its threads have logged
  it and before asyncio's "Event loop is closed"): one line naming the directory."""
  import jax.numpy as jnp
  import orbax.checkpoint as ocp
  ckpt = tmp_path / "ckpt"

  noisy = [True]

  def save(self, *a, **k):
    if noisy[0]:
      _orbax_noise()
    raise ValueError(TS_MESSAGE.format(d=ckpt))

  monkeypatch.setattr(ocp.CheckpointManager, "save", save)

  def main(argv):
    loop.run_loop({"x": jnp.zeros(3)}, lambda s, t, n: (s, {"loss": jnp.float32(0)}), 2,
                  ckpt_dir=str(ckpt))

  rc, err = _run_cli(main, capfd)
  assert "_SignalingThread" not in caplog.text
  assert rc == 2 and err.strip().splitlines() == [
      f"error: {ckpt}: no space left on the device (ENOSPC); free some space, then rerun the "
      "same command to resume (what was written is kept)"], err
  noisy[0] = False
  with pytest.raises(OSError) as e:
    main([])
  assert e.value.errno == errno.ENOSPC and e.value.filename == os.path.abspath(ckpt)
  assert isinstance(e.value.__cause__, ValueError)


def test_background_noise_is_replayed_when_the_run_does_not_fault(capsys, caplog, restore_hooks):
  rc, err = _run_cli(lambda argv: _orbax_noise(), capsys)
  assert rc is None and "RuntimeError: Event loop is closed" in err
  assert "_SignalingThread.run() raised an exception" in caplog.text


def test_error_chain_and_fallbacks():
  """An OSError without a file name behind another error: the chain names the file,
  else the caller's directory (the workdir)."""
  try:
    try:
      raise OSError(errno.ENOSPC, "No space left on device", "/w/x.npy")
    except OSError as inner:
      raise RuntimeError("Event loop is closed") from inner
  except RuntimeError as e:
    err = faults.os_error(e)
  assert (err.errno, err.filename) == (errno.ENOSPC, "/w/x.npy")
  bare = RuntimeError("wrapped")
  bare.__context__ = OSError(errno.ENOSPC, "No space left on device")
  assert faults.describe(faults.os_error(bare), "/w").startswith("/w (a write under it): no space")
  assert faults.os_error(RuntimeError("a bug")) is None
  assert faults.os_error(FileNotFoundError("Checkpoint at 2 not found")) is None   # no errno


def test_keyboard_interrupt_bugs_and_debug(capsys, monkeypatch, restore_hooks):
  def interrupted(argv):
    raise KeyboardInterrupt

  rc, err = _run_cli(interrupted, capsys)
  assert rc == 130 and len(err.strip().splitlines()) == 1 and "rerun the same command" in err

  def bug(argv):
    raise TypeError("a bug keeps its traceback")

  with pytest.raises(TypeError):
    cli.run(bug, argv=["prog"])
  monkeypatch.setenv("MMDD_DEBUG", "1")

  def full(argv):
    raise OSError(errno.ENOSPC, "No space left on device", "/w")

  with pytest.raises(OSError):
    cli.run(full, argv=["prog"])


def test_validation_split_below_the_minimum_stops_before_the_workdir(tiny_store, tmp_path):
  from experiments.configs import hopa as hopa_config
  from hopa_jax import run as hopa_run
  c = _fast(tiny_store.root, val_fraction=0.001)
  with pytest.raises(ValueError, match=r"config key 'val_fraction': expected a validation split "
                     r"of ≥ 10 rows .*found 1 \(val_fraction=0.001 of 180 train rows\)"):
    hopa_run.train_and_evaluate(c, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()


def test_bad_heads_stop_before_the_workdir(tiny_store, tmp_path):
  """A heads.npz kernel of the wrong shape used to fail in dot_general after the
  workdir existed."""
  from experiments.configs import hopa as hopa_config
  from hopa_jax import run as hopa_run
  d = tmp_path / "store"
  shutil.copytree(tiny_store.root, d)
  with np.load(d / "heads.npz") as z:
    arrays = {k: z[k] for k in z.files}
  arrays["vision/kernel"] = arrays["vision/kernel"][:, :512]
  np.savez(d / "heads.npz", **arrays)
  m = json.loads((d / "manifest.json").read_text())
  m["files"] = {}
  (d / "manifest.json").write_text(json.dumps(m))
  c = _fast(d)
  with pytest.raises(ValueError, match=r"heads.npz: field 'vision/kernel': expected shape "
                     r"\(1280, 1024\) .*found \(1280, 512\)"):
    hopa_run.train_and_evaluate(c, str(tmp_path / "w"))
  assert not (tmp_path / "w").exists()
