"""rgbpose.cluster without a cluster: the status guards against fake sacct/squeue/scontrol."""

import os
from pathlib import Path

import pytest

from rgbpose.cluster import (
    SlurmSetupError,
    StatusWatchdog,
    effective_status_command,
    min_job_age_s,
    preflight,
    query_problem,
)


def fake_tool(folder: Path, name: str, script: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text("#!/bin/sh\n" + script + "\n")
    (folder / name).chmod(0o755)


@pytest.fixture
def tools(tmp_path, monkeypatch):
    """A folder first on PATH for fake SLURM commands."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    return folder


def test_effective_status_command_follows_the_executor_rule():
    # the executor swaps squeue for sacct when MinJobAge < 3 x the first poll delay
    assert effective_status_command("squeue", 40, 300) == "squeue"
    assert effective_status_command("squeue", 40, 119) == "sacct"
    assert effective_status_command("squeue", 40, 120) == "squeue"
    assert effective_status_command("squeue", 40, None) == "sacct"
    assert effective_status_command("sacct", 40, 10) == "sacct"


def test_min_job_age_parses_scontrol(tools):
    fake_tool(tools, "scontrol", 'echo "MaxJobCount             = 10000"; '
              'echo "MinJobAge               = 300 sec"')  # fmt: skip
    assert min_job_age_s() == 300
    fake_tool(tools, "scontrol", 'echo "MinJobAge = 2 min"')
    assert min_job_age_s() == 120
    fake_tool(tools, "scontrol", "exit 1")
    assert min_job_age_s() is None


def test_preflight_names_the_failing_command_and_the_fix(tools):
    fake_tool(tools, "sacct", 'echo "Slurm accounting storage is disabled" >&2; exit 1')
    fake_tool(tools, "squeue", "exit 0")
    fake_tool(tools, "scontrol", 'echo "MinJobAge = 300 sec"')
    with pytest.raises(SlurmSetupError) as err:
        preflight("sacct")
    msg = str(err.value)
    assert msg.startswith("SLURM status command 'sacct' does not work here: `sacct -X")
    assert "failed (exit 1): Slurm accounting storage is disabled" in msg
    assert "set `slurm-status-command: squeue` in the profile" in msg
    assert preflight("squeue", init_seconds=40) == "squeue"  # 300 >= 120
    with pytest.raises(SlurmSetupError, match=r"MinJobAge \(300 s\) is below 3 x .* \(200 s\)"):
        preflight("squeue", init_seconds=200)  # would fall back to the failing sacct


def test_query_problem_times_out_instead_of_hanging(tools):
    fake_tool(tools, "squeue", "sleep 30")
    problem = query_problem(["squeue", "-h"], timeout=0.5)
    assert problem == "`squeue -h` did not answer within 0.5 s"
    assert query_problem(["no-such-slurm-tool"]) == "no-such-slurm-tool not found on PATH"


def test_watchdog_counts_consecutive_failures(tools, tmp_path):
    """Fails on calls 1-2, succeeds on 3 (the clock restarts), then fails for good: on_fail
    fires once, after >= timeout of uninterrupted failures."""
    calls = tmp_path / "calls"
    fake_tool(tools, "squeue", f'echo x >> "{calls}"; n=$(wc -l < "{calls}"); '
              '[ "$n" -eq 3 ] && exit 0; echo "controller down" >&2; exit 1')  # fmt: skip
    messages: list[str] = []
    dog = StatusWatchdog("squeue", timeout=0.25, interval=0.05, on_fail=messages.append)
    dog.start()
    dog.join(timeout=10)
    assert not dog.is_alive()
    assert len(messages) == 1
    assert messages[0].startswith("SLURM status queries have failed for")
    assert "controller down" in messages[0] and "scancel --me" in messages[0]
    # 2 failures, 1 success, then at least 6 failures 0.05 s apart to span 0.25 s
    assert len(calls.read_text().splitlines()) >= 9


def test_watchdog_stays_quiet_while_queries_work(tools):
    fake_tool(tools, "squeue", "exit 0")
    messages: list[str] = []
    dog = StatusWatchdog("squeue", timeout=0.1, interval=0.02, on_fail=messages.append)
    dog.start()
    dog.join(timeout=0.5)
    assert dog.is_alive() and messages == []
    dog.stop()
    dog.join(timeout=5)
    assert not dog.is_alive()


def test_cancelled_by_user_state_reaches_the_executor_as_cancelled(monkeypatch):
    """sacct says 'CANCELLED by 0'; the executor compares 'CANCELLED' and would wait forever."""
    import asyncio

    import snakemake_executor_plugin_slurm as plugin

    from rgbpose.cluster import normalise_states, patch_slurm_executor

    assert normalise_states({"12": "CANCELLED by 0", "13": "COMPLETED", "14": "RUNNING"}) == {
        "12": "CANCELLED", "13": "COMPLETED", "14": "RUNNING"}  # fmt: skip

    async def fake(command, logger):
        return ({"12": "CANCELLED by 1000"} if command == "ok" else None), 0.5

    monkeypatch.setattr(plugin, "query_job_status", fake)
    assert patch_slurm_executor() and patch_slurm_executor()  # idempotent
    assert asyncio.run(plugin.query_job_status("ok", None)) == ({"12": "CANCELLED"}, 0.5)
    assert asyncio.run(plugin.query_job_status("fails", None)) == (None, 0.5)
    # the executor still calls it by this module-level name
    assert "await query_job_status(" in open(plugin.__file__).read()


def test_check_accounts_queries_sacctmgr_once_per_check(tools, tmp_path):
    from rgbpose.cluster import check_accounts

    calls = tmp_path / "calls"
    fake_tool(tools, "sacctmgr", f'echo "$@" >> "{calls}"; printf "rgbpose\\nroot\\n"')
    check_accounts(set())  # nothing configured: no query at all
    assert not calls.exists()
    check_accounts({"rgbpose"})
    with pytest.raises(SlurmSetupError) as err:
        check_accounts({"rgbpose", "nosuch"})
    assert "SLURM account 'nosuch' is not an account of user" in str(err.value)
    assert "(sacctmgr lists: rgbpose, root)" in str(err.value)
    assert len(calls.read_text().splitlines()) == 2
    fake_tool(tools, "sacctmgr", 'echo "accounting storage is disabled" >&2; exit 1')
    with pytest.raises(SlurmSetupError, match=r"cannot check SLURM account 'my_account': .*"
                       r"accounting storage is disabled.*slurm-no-account: true"):  # fmt: skip
        check_accounts({"my_account"})
