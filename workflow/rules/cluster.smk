# Under the SLURM executor: check the job-status query before any submission and end the run
# if it keeps failing afterwards, instead of polling forever (rgbpose.cluster).

from snakemake.logging import logger


def guard_slurm_status():
    plugin = workflow.executor_plugin
    if plugin is None or plugin.name != "slurm" or not workflow.is_main_process:
        return
    from rgbpose.cluster import (
        DEFAULT_INIT_SECONDS,
        SlurmSetupError,
        StatusWatchdog,
        check_accounts,
        patch_slurm_executor,
        preflight,
        resource_text,
    )

    settings = workflow.executor_settings
    command = getattr(settings, "status_command", None) or "sacct"
    init = getattr(settings, "init_seconds_before_status_checks", None)
    accounts = set()
    if not getattr(settings, "no_account", False):
        rs = workflow.resource_settings
        mappings = [rs.default_resources or {}, *rs.overwrite_resources.values()]
        accounts = {resource_text(m.get("slurm_account")) for m in mappings} - {None}
    try:
        check_accounts(accounts)
        used = preflight(command, int(init or DEFAULT_INIT_SECONDS))
    except SlurmSetupError as exc:
        raise WorkflowError(str(exc)) from None
    timeout = float(os.environ.get("RGBPOSE_SLURM_STATUS_TIMEOUT", 900))
    interval = float(os.environ.get("RGBPOSE_SLURM_STATUS_INTERVAL", 60))
    if not patch_slurm_executor():
        logger.warning(
            "rgbpose: the SLURM executor changed; a job cancelled with scancel may not be "
            "noticed under slurm-status-command: sacct (use squeue, or upgrade rgbpose)"
        )
    unlock = workflow.persistence.unlock
    StatusWatchdog(used, timeout, interval, before_exit=unlock).start()


onstart:
    guard_slurm_status()
