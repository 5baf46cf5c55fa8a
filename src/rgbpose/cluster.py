"""SLURM runs that cannot hang: check the job-status query before submitting, watch it after.

Snakemake's SLURM executor learns that a job ended only from its status query (``sacct``, or
``squeue`` where the cluster has no job accounting).  When that query fails, the executor keeps
the jobs "active" and polls forever, silently, even after they finished.  Two guards, used by
``workflow/rules/cluster.smk`` in the main Snakemake process:

* ``preflight``: before any job is submitted, run the query the executor will use once (with a
  timeout) and stop with an error that names the failing command and what to set instead.  The
  executor silently swaps ``squeue`` for ``sacct`` when ``MinJobAge`` is below 3 x
  ``slurm-init-seconds-before-status-checks``; that case is checked too.
* ``StatusWatchdog``: while the run goes on, query every ``interval`` seconds; when the query has
  failed for ``timeout`` seconds in a row, print why and end the Snakemake process (exit 1) so a
  broken controller or accounting daemon never leaves a run waiting forever.  Jobs already
  submitted keep running; the message lists how to cancel them.
* ``patch_slurm_executor``: sacct reports a job cancelled by a user as ``CANCELLED by <uid>``;
  the executor (2.6.1) compares states exactly and would wait for that job forever, so its
  status query is wrapped to return the bare state.
* ``check_accounts``: a ``slurm_account`` that is not the user's makes the executor hang
  silently; it is checked before any submission too.
"""

from __future__ import annotations

import getpass
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

QUERY_TIMEOUT_S = 30
#: The executor's first status query comes this many seconds after a submission (its default).
DEFAULT_INIT_SECONDS = 40


class SlurmSetupError(RuntimeError):
    """The cluster cannot run this workflow as configured; the message says what to change."""


def status_query(command: str) -> list[str]:
    """The argv of a cheap query that fails exactly when the executor's status query would."""
    user = getpass.getuser()
    if command == "sacct":
        return ["sacct", "-X", "--noheader", "--format=JobID", "--user", user,
                "--starttime", "now"]  # fmt: skip
    if command == "squeue":
        return ["squeue", "--noheader", "--format=%i", "--user", user]
    raise ValueError(f"unknown SLURM status command {command!r} (expected sacct or squeue)")


def run_query(argv: Sequence[str], timeout: float = QUERY_TIMEOUT_S) -> tuple[str | None, str]:
    """Run ``argv`` once: ``(None, stdout)`` when it succeeds, else ``(problem, "")`` with one
    line saying how it failed (not found, no answer within ``timeout``, an exit code)."""
    try:
        proc = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )
    except FileNotFoundError:
        return f"{argv[0]} not found on PATH", ""
    except subprocess.TimeoutExpired:
        return f"`{' '.join(argv)}` did not answer within {timeout:g} s", ""
    if proc.returncode != 0:
        err = " ".join((proc.stderr or proc.stdout).split()) or "no message"
        return f"`{' '.join(argv)}` failed (exit {proc.returncode}): {err}", ""
    return None, proc.stdout


def query_problem(argv: Sequence[str], timeout: float = QUERY_TIMEOUT_S) -> str | None:
    """Run ``argv``; None when it succeeds, else one line saying how it failed."""
    return run_query(argv, timeout)[0]


def min_job_age_s(timeout: float = QUERY_TIMEOUT_S) -> int | None:
    """``MinJobAge`` of the cluster in seconds (``scontrol show config``), None if unknown."""
    try:
        out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True,
                             timeout=timeout, check=True).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r"^MinJobAge\s*=\s*(\d+)\s*(sec|s|min|h)?", out, re.M)
    if m is None:
        return None
    return int(m.group(1)) * {"min": 60, "h": 3600}.get(m.group(2) or "", 1)


def effective_status_command(command: str, init_seconds: int, min_job_age: int | None) -> str:
    """The query the executor really uses: it replaces ``squeue`` by ``sacct`` when finished
    jobs may vanish from ``squeue`` before its first poll (MinJobAge < 3 x init_seconds)."""
    if command == "squeue" and (min_job_age is None or min_job_age < 3 * init_seconds):
        return "sacct"
    return command


def preflight(
    command: str, init_seconds: int = DEFAULT_INIT_SECONDS, *, timeout: float = QUERY_TIMEOUT_S
) -> str:
    """Check that the executor's status query works here; return the command it will use.

    Raises ``SlurmSetupError`` naming the failing command and the profile keys to change.
    """
    age = min_job_age_s(timeout) if command == "squeue" else None
    used = effective_status_command(command, init_seconds, age)
    problem = query_problem(status_query(used), timeout)
    if problem is None:
        return used
    if used != command:
        raise SlurmSetupError(
            f"SLURM status queries would fail: the profile asks for squeue, but MinJobAge "
            f"({age} s) is below 3 x slurm-init-seconds-before-status-checks ({init_seconds} s), "
            f"so the executor falls back to sacct, and {problem}. Set "
            f"slurm-init-seconds-before-status-checks to at most {max(1, (age or 0) // 3)} in "
            "the profile, or ask the administrators for MinJobAge >= "
            f"{3 * init_seconds} s."
        )
    advice = (
        "This cluster has no job accounting (slurmdbd): set `slurm-status-command: squeue` "
        "in the profile (finished jobs must stay in squeue for MinJobAge >= 3 x "
        "slurm-init-seconds-before-status-checks)."
        if used == "sacct"
        else "Check that the SLURM client tools reach the controller (SLURM_CONF, munge)."
    )
    raise SlurmSetupError(f"SLURM status command {used!r} does not work here: {problem}. {advice}")


class StatusWatchdog(threading.Thread):
    """Ends the process when the status query has failed for ``timeout`` seconds in a row."""

    def __init__(
        self,
        command: str,
        timeout: float,
        interval: float = 60.0,
        *,
        on_fail: Callable[[str], None] | None = None,
        before_exit: Callable[[], None] | None = None,
    ) -> None:
        super().__init__(name="rgbpose-slurm-status-watchdog", daemon=True)
        self.argv = status_query(command)
        self.timeout, self.interval = float(timeout), float(interval)
        self.on_fail = on_fail or self._exit
        self.before_exit = before_exit
        self._halt = threading.Event()

    def _exit(self, message: str) -> None:
        print(f"rgbpose: error: {message}", file=sys.stderr, flush=True)
        if self.before_exit is not None:
            try:
                self.before_exit()  # e.g. release Snakemake's lock so a plain rerun works
            except Exception as exc:  # noqa: BLE001 - exiting anyway; say what was left
                print(f"rgbpose: could not clean up before exiting: {exc}", file=sys.stderr)
        os._exit(1)  # the executor's polling loop cannot be interrupted any other way

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        failing_since: float | None = None
        while not self._halt.wait(self.interval):
            problem = query_problem(self.argv, min(QUERY_TIMEOUT_S, self.interval))
            now = time.monotonic()
            if problem is None:
                failing_since = None
                continue
            failing_since = now if failing_since is None else failing_since
            if now - failing_since >= self.timeout:
                self.on_fail(
                    f"SLURM status queries have failed for {now - failing_since:.0f} s "
                    f"(limit {self.timeout:g} s; RGBPOSE_SLURM_STATUS_TIMEOUT): {problem}. "
                    "Snakemake cannot learn when jobs end, so this run stops instead of waiting "
                    "forever. Jobs already submitted keep running: list them with "
                    "`squeue --me` and cancel with `scancel --me` if needed; rerun the same "
                    "command once the cluster answers (jobs that finished are not redone)."
                )
                return


def resource_text(resource: object) -> str | None:
    """The value a profile gave a string resource (``slurm_account: "x"`` -> ``x``)."""
    raw = getattr(resource, "raw", resource)
    if raw is None:
        return None
    return str(raw).strip().strip("'\"") or None


def check_accounts(accounts: set[str], *, timeout: float = QUERY_TIMEOUT_S) -> None:
    """Each of ``accounts`` must be one of the user's SLURM associations.

    The executor hangs without a word when an account is wrong (its check fails inside a
    submission thread), so this runs first and raises ``SlurmSetupError`` naming the fix.
    """
    if not accounts:
        return
    user = getpass.getuser()
    argv = ["sacctmgr", "--noheader", "--parsable2", "list", "association", f"user={user}",
            "format=account"]  # fmt: skip
    problem, out = run_query(argv, timeout)
    names = ", ".join(repr(a) for a in sorted(accounts))
    if problem is not None:
        raise SlurmSetupError(
            f"cannot check SLURM account {names}: {problem}. On a cluster without job "
            "accounting there are no accounts: set `slurm-no-account: true` in the profile and "
            "remove slurm_account."
        )
    known = {line.strip() for line in out.splitlines() if line.strip()}
    unknown = sorted(accounts - known)
    if unknown:
        raise SlurmSetupError(
            f"SLURM account {', '.join(repr(a) for a in unknown)} is not an account of user "
            f"{user} (sacctmgr lists: {', '.join(sorted(known)) or 'none'}). Set "
            "default-resources: slurm_account in the profile to one of yours."
        )


def normalise_states(statuses: dict[str, str]) -> dict[str, str]:
    """Job states as the executor compares them: sacct reports a job cancelled by a user as
    ``CANCELLED by <uid>``, which the executor (2.6.1) does not recognise, so it would wait for
    that job forever; the first word is the state."""
    return {job: state.split(" ", 1)[0] for job, state in statuses.items()}


def patch_slurm_executor() -> bool:
    """Make the SLURM executor's status query return normalised states (see
    ``normalise_states``). Returns False when the executor is not installed or has changed."""
    try:
        import snakemake_executor_plugin_slurm as plugin  # noqa: PLC0415
    except ImportError:
        return False
    original = getattr(plugin, "query_job_status", None)
    if original is None:
        return False
    if getattr(original, "rgbpose_normalised", False):
        return True

    async def query_job_status(*args, **kwargs):
        statuses, duration = await original(*args, **kwargs)
        return (None if statuses is None else normalise_states(statuses)), duration

    query_job_status.rgbpose_normalised = True  # type: ignore[attr-defined]
    plugin.query_job_status = query_job_status
    return True
