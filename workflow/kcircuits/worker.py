"""A persistent worker for local runs: one Python process that has already imported torch,
transformers, pandas, pyarrow and matplotlib forks each `python -m kcircuits` job of a Snakemake run.

Why: a stage's own work on the default world is often a few seconds, and a fresh interpreter spends
3-5 s importing its libraries before it starts (torch ~1.4 s; transformers' model classes ~3 s more).
Snakemake starts one process per job and has no persistent workers of its own, so the Snakefile starts
this server when a run begins (onstart) and stops it when the run ends; every job still runs its own
`python -m kcircuits ...` command, with its own log, exit code and outputs, and a job can still be run
by hand or on a cluster node without it. The idea is Bazel's persistent workers (or a Gradle daemon);
written by hand because Python's own fork server (multiprocessing.forkserver) runs only functions of
the program that started it, not commands.

How a job runs under it:
  * the client (`python -m kcircuits ...`, kcircuits.__main__) finds the server's socket in
    KCIRCUITS_WORKER, sends its argv, environment, working folder and umask, and passes its standard
    input, output and error (the job's log) as file descriptors (SCM_RIGHTS);
  * the server forks; the child takes those descriptors as 0/1/2, the job's folder, environment and
    umask, the thread count Snakemake gave the job (OMP_NUM_THREADS -> torch.set_num_threads, what a
    fresh interpreter reads from it) and its glibc malloc settings (MALLOC_*_ -> mallopt), and runs
    kcircuits.cli.main(argv); it reports its pid and then its exit status, which the client exits
    with. The client forwards SIGINT/SIGTERM/SIGHUP to the child's process group; a child whose client
    is gone (killed) terminates itself.
  * the server serves only its own user (SO_PEERCRED) and clients of the same Python environment,
    kcircuits checkout and SLURM allocation, if any; a client it refuses, cannot be reached by (not
    ready yet, a cluster node) or that finds no KCIRCUITS_WORKER runs the job itself. The server exits
    when the Snakemake run that started it ends.

Caveats: a job's process is a child of the server, not of the job's shell, so Snakemake's `benchmark:`
files measure its wall time (column s) but not its CPU time or memory; for those, or to run every job in
a fresh interpreter, set KCIRCUITS_WORKER=off before `snakemake`. Modules imported at the server's
start are those of that moment: edit kcircuits while a run is going and later jobs may run a mix.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import tempfile

ENV = "KCIRCUITS_WORKER"  # the server's socket path; "off" = no worker
OFF = "off"
PRELOAD = (  # what the stages import, heaviest first; a module missing here is skipped
    "torch",
    "transformers",
    "transformers.trainer",
    "transformers.models.auto.modeling_auto",
    "transformers.models.gpt2.modeling_gpt2",
    "transformers.models.gpt_neox.modeling_gpt_neox",
    "transformers.models.llama.modeling_llama",
    "safetensors.torch",
    "tokenizers",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "scipy.sparse",
    "matplotlib.pyplot",
    "seaborn",
    "jsonschema",
    "yaml",
    "kcircuits.cli",
)
MALLOPT = {"MALLOC_MMAP_THRESHOLD_": -3, "MALLOC_TRIM_THRESHOLD_": -1, "MALLOC_TOP_PAD_": -2,
           "MALLOC_MMAP_MAX_": -4, "MALLOC_ARENA_MAX": -8}  # environment -> mallopt parameter (malloc.h)
HEADER = 8  # bytes: the request's length, sent with the descriptors
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def identity() -> dict:
    """What must be equal for the server to run a client's job: the Python environment, the checkout and
    the SLURM allocation (a cluster job on the submitting host must not leave its allocation)."""
    return {"prefix": sys.prefix, "kcircuits": os.path.dirname(os.path.abspath(__file__)),
            "slurm_job": os.environ.get("SLURM_JOB_ID")}


def _send(conn: socket.socket, message: dict) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


# --- The client -----------------------------------------------------------------------------------------


def run_job(argv: list[str]) -> int | None:
    """Run `kcircuits argv` in the worker and return its exit status; None when there is no worker to
    run it (no KCIRCUITS_WORKER, not reachable, not ready, or another environment): run it here."""
    path = os.environ.get(ENV, OFF)
    if path == OFF or not argv:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(path)
        umask = os.umask(0)
        os.umask(umask)
        body = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "umask": umask,
                           "identity": identity()}).encode()
        socket.send_fds(conn, [len(body).to_bytes(HEADER, "big")], _standard_streams())
        conn.sendall(body)
        replies = conn.makefile("r", encoding="utf-8")
        first = json.loads(replies.readline() or "{}")
    except (OSError, ValueError):
        conn.close()
        return None
    if "pid" not in first:  # refused: another environment or checkout
        conn.close()
        return None
    return _wait(replies, first["pid"])


def _standard_streams() -> list[int]:
    """Descriptors 0, 1 and 2, with /dev/null for one that is closed (as a fresh interpreter has)."""
    out = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
            out.append(fd)
        except OSError:
            out.append(os.open(os.devnull, os.O_RDWR))
    return out


def _wait(replies, pid: int) -> int:
    """The job's exit status, forwarding this process's termination signals to the job meanwhile."""
    def forward(signum, _frame):
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED:
        signal.signal(signum, forward)
    line = replies.readline()
    if not line:
        print(f"kcircuits: the job (pid {pid} of the worker) ended without an exit status (killed?)",
              file=sys.stderr)
        return 1
    return int(json.loads(line)["code"])


# --- The server -----------------------------------------------------------------------------------------


def preload(modules=PRELOAD) -> None:
    import importlib

    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def serve(path: str, parent: int, modules=PRELOAD) -> None:
    """Import `modules`, then fork one child per connection on `path` until process `parent` is gone."""
    os.environ.pop(ENV, None)
    preload(modules)
    sys.stdout.flush()
    sys.stderr.flush()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    listener.settimeout(2.0)
    while _alive(parent):
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            continue
        if _peer_uid(conn) != os.getuid():
            conn.close()
            continue
        if os.fork() == 0:
            listener.close()
            conn.settimeout(None)
            os._exit(_child(conn))
        conn.close()
    listener.close()
    os.unlink(path)
    with contextlib.suppress(OSError):  # start's folder, left by a run that could not stop us
        os.rmdir(os.path.dirname(path))


def _alive(parent: int) -> bool:
    """Whether the process that started the server still runs (once it is gone, another one adopts us)."""
    return os.getppid() == parent


def _peer_uid(conn: socket.socket) -> int:
    import struct

    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return struct.unpack("3i", creds)[1]


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    header, fds, _, _ = socket.recv_fds(conn, HEADER, 3)
    size, body = int.from_bytes(header, "big"), b""
    while len(body) < size:
        chunk = conn.recv(size - len(body))
        if not chunk:
            raise ConnectionError("client closed before its request was complete")
        body += chunk
    return json.loads(body), fds


def _child(conn: socket.socket) -> int:
    """In the forked child: become the client's job, run it, report its exit status."""
    for signum in (signal.SIGCHLD, *FORWARDED):
        signal.signal(signum, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        request, fds = _receive(conn)
    except (OSError, ValueError):
        return 1
    if request.get("identity") != identity():
        _send(conn, {"refused": "another Python environment or kcircuits checkout"})
        return 0
    os.setpgid(0, 0)  # the client signals the job's whole process group
    print(f"job {os.getpid()}: kcircuits {' '.join(request['argv'][:2])}", file=sys.stderr, flush=True)
    _send(conn, {"pid": os.getpid()})
    _become(request, fds)
    _watch(conn)
    code = _main(request["argv"])
    _send(conn, {"code": code})
    return code


def _become(request: dict, fds: list[int]) -> None:
    """Take the client's standard streams, folder, environment, umask, argv and thread count."""
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    os.umask(request["umask"])
    tempfile.tempdir = None  # gettempdir() reads the job's TMPDIR, not a value the server cached
    sys.argv = [os.path.join(os.path.dirname(__file__), "__main__.py"), *request["argv"]]
    threads = os.environ.get("OMP_NUM_THREADS", "")
    if threads.isdigit() and int(threads) > 0 and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))
    _malloc_settings()


def _malloc_settings() -> None:
    """glibc reads MALLOC_*_ from the environment when a process starts; a forked job sets the ones in
    its environment with mallopt instead (the training rules keep freed activation buffers: TRAIN_ENV)."""
    import ctypes
    import ctypes.util

    wanted = {name: int(os.environ[name]) for name in MALLOPT if os.environ.get(name, "").isdigit()}
    if wanted:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
        for name, value in wanted.items():
            mallopt(MALLOPT[name], value)


def _watch(conn: socket.socket) -> None:
    """A thread that terminates this job when its client is gone (the connection closes)."""
    import threading

    def watch():
        try:
            conn.recv(1)
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def _main(argv: list[str]) -> int:
    """kcircuits.cli.main as `python -m kcircuits` would run it: the exit status, tracebacks on stderr."""
    import atexit
    import traceback

    try:
        from .cli import main

        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 -- as the interpreter would: print it, exit 1
        traceback.print_exc()
        code = 1
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    return code or 0


# --- Starting and stopping it from a Snakemake run ------------------------------------------------------


def start(env: dict, log_path: str, modules: tuple = ()):
    """Start a server for this process's run (a Snakefile's onstart) and point its jobs at it through
    KCIRCUITS_WORKER; returns the server process, or None when KCIRCUITS_WORKER is "off" or this is not
    Linux (fork after importing torch, SO_PEERCRED). `modules`: what it imports (default PRELOAD)."""
    import shutil
    import subprocess

    if os.environ.get(ENV) == OFF or not sys.platform.startswith("linux"):
        return None
    python = shutil.which("python") or sys.executable  # the interpreter the jobs' `python` is
    try:
        folder = tempfile.mkdtemp(prefix="kcircuits-worker-")  # mode 0700: this user's only
        path = os.path.join(folder, "socket")
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        with open(log_path, "w", encoding="utf-8") as log:
            proc = subprocess.Popen([python, "-m", "kcircuits.worker", path, str(os.getpid()), *modules],
                                    env={**os.environ, **env}, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as err:  # no worker is no error: every job then starts its own interpreter
        print(f"kcircuits: no worker for this run ({err}); jobs start their own interpreters", file=sys.stderr)
        return None
    proc.folder = folder
    os.environ[ENV] = path
    return proc


def stop(proc) -> None:
    """Stop a server `start` returned (onsuccess / onerror); the jobs it forked have all ended."""
    import shutil

    if proc is None:
        return
    os.environ.pop(ENV, None)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except Exception:  # noqa: BLE001 -- a server that does not stop in 10 s is killed
        proc.kill()
    shutil.rmtree(proc.folder, ignore_errors=True)


if __name__ == "__main__":  # python -m kcircuits.worker SOCKET PARENT_PID [MODULE ...] (default: PRELOAD)
    serve(sys.argv[1], int(sys.argv[2]), tuple(sys.argv[3:]) or PRELOAD)
