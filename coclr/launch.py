"""``python -m coclr.launch --gpus N -- <command> <args>``: how the rules start a job that may use GPUs.

1. Devices: with ``N`` > 0 the job takes ``N`` GPUs of its own (:mod:`coclr.devices`) and runs
   with ``CUDA_VISIBLE_DEVICES`` set to them, so concurrent jobs of one machine never share a
   card. Under SLURM the scheduler has already set ``CUDA_VISIBLE_DEVICES`` for the job, and it
   is kept.
2. Processes: ``N`` > 1 runs ``torchrun --standalone --nproc_per_node=N -m coclr <command>``,
   else ``python -m coclr <command>``.
3. No orphans: the launcher and its child die with the shell that started them
   (:func:`die_with_parent`); SIGTERM, SIGUSR1 and SIGINT are passed on to the child (a trainer
   saves its state and exits 143), and the launcher exits with the child's status.

Each start writes one line to the job's log: the time, the host, the SLURM job and restart
count where SLURM passes it on, and the devices. Snakemake empties a job's log when it runs the job
again (a retry, or a SLURM requeue, whose job step reruns the rule), so ``--history FILE``
also appends everything the job prints to FILE, outside Snakemake's outputs: the training
rules keep ``runs/<dataset>/<stage>/attempts.log``, where every attempt, its stop and its
resume stay on record.
"""

import argparse
import ctypes
import datetime
import os
import signal
import socket
import subprocess
import sys
import threading

from coclr import logs
from coclr.errors import CoclrError

PR_SET_PDEATHSIG = 1
FORWARDED = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


def die_with_parent(sig=signal.SIGKILL) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies (``prctl(PR_SET_PDEATHSIG)``).
    The setting survives ``exec``, so it also serves a child started with ``preexec_fn``. Off with
    ``COCLR_OUTLIVE_PARENT=1`` (a run started under ``nohup`` that must outlive its shell). Returns
    False where it is not available (not Linux)."""
    if os.environ.get("COCLR_OUTLIVE_PARENT") == "1" or not sys.platform.startswith("linux"):
        return False
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # the parent died before the request: nobody will send it
        os.kill(os.getpid(), sig)
    return True


def command_line(gpus: int, command: list) -> list:
    if gpus > 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={gpus}", "-m", "coclr", *command]
    return [sys.executable, "-m", "coclr", *command]


def attempt_line(devices) -> str:
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    where = f"on {socket.gethostname()}"
    job = os.environ.get("SLURM_JOB_ID")
    if job:  # a requeued job runs again under its id; SLURM_RESTART_COUNT does not reach every job step
        restarts = os.environ.get("SLURM_RESTART_COUNT")
        where += f", SLURM job {job}" + (f" (restart {restarts})" if restarts else "")
    return f"coclr.launch: start {now} {where}, CUDA_VISIBLE_DEVICES={devices if devices is not None else 'unset'}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m coclr.launch", description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=0, help="GPUs the job uses (torchrun when > 1)")
    parser.add_argument("--history", default=None,
                        help="also append the job's output to this file (kept across retries and requeues)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the coclr command and its arguments")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given (python -m coclr.launch --gpus 1 -- flow --frames ...)")
    logs.configure()
    die_with_parent(signal.SIGTERM)  # handled below: passed on to the child, which may save first
    env = dict(os.environ)
    held = None
    if args.gpus > 0 and not (os.environ.get("SLURM_JOB_ID") and "CUDA_VISIBLE_DEVICES" in os.environ):
        from coclr import devices

        held = devices.acquire(args.gpus)
        env["CUDA_VISIBLE_DEVICES"] = held.env_value
    history = None
    if args.history:
        os.makedirs(os.path.dirname(os.path.abspath(args.history)), exist_ok=True)
        history = open(args.history, "a", encoding="utf-8", errors="replace")
    line = attempt_line(env.get("CUDA_VISIBLE_DEVICES"))
    print(line, file=sys.stderr, flush=True)  # a record, also in --history: it carries its own time
    if history is not None:
        history.write(line + "\n")
        history.flush()
    child = None

    def forward(signum, frame):
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    try:
        output = {} if history is None else {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
        child = subprocess.Popen(command_line(args.gpus, command), env=env,
                                 preexec_fn=lambda: die_with_parent(signal.SIGTERM), **output)
        copier = None
        if history is not None:
            copier = threading.Thread(target=tee, args=(child.stdout, [sys.stderr, history]), daemon=True)
            copier.start()
        code = child.wait()
        if copier is not None:
            copier.join(timeout=30)
        return code
    finally:
        if held is not None:
            held.release()
        if history is not None:
            history.close()


def tee(stream, targets) -> None:
    """Copy the child's output, line by line as it comes, to every target."""
    for raw in iter(stream.readline, b""):
        text = raw.decode("utf-8", errors="replace")
        for target in targets:
            target.write(text)
            target.flush()


if __name__ == "__main__":  # the one place this executable ends on an error (coclr.errors)
    try:
        code = main()
    except CoclrError as error:  # too few GPUs, a bad COCLR_GPU_COUNT: the message says the fix
        sys.exit(str(error) or error.status)
    # A child killed by a signal: exit as the shell reports it (128 + signal).
    sys.exit(128 - code if code < 0 else code)
