"""ewms_wms — the Workflow Management Service of EWMS (DESIGN §4.3, docs/wms.md).

Stores workflows, task directives and taskforces in MongoDB, puts each workflow's queues on
RabbitMQ (quorum queues + dead-letter policies, optionally a broker user per workflow), and
serves the REST routes users, SkyDriver and the TMSs call. Run it with `python -m ewms_wms`.
"""
