"""ewms_tms — the Task Management Service: one per HTCondor access point (cluster location).

Three loops over the WMS's TMS routes — `starter` (claim, submit pilots, confirm), `watcher`
(job states -> compound statuses and top errors, completion), `stopper` (remove the pilots of
stopped taskforces) — and scheduler backends behind one small interface in `schedulers/`
(`htcondor`, `local`). `python -m ewms_tms` runs it; docs/tms.md is the operator's guide.
"""
