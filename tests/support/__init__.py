"""Helpers shared by the test modules (no tests here); test modules import these, never each other.

- ``waiting``: the one sync (``wait_until``) and the one async (``wait_for``) wait, and ``stall``
  (simulated latency of a fake call); nothing else in the suite sleeps.
- ``aws``: queues, buckets and audit objects of a local stack, read as a test needs them.
- ``changes``: change documents and changes as the fan-out and the worker see them.
- ``cli``: the CLI run in this process (click's CliRunner) against a local stack.
- ``mail``: the recipient oracle (who should get what, from the local stack's contact profiles)
  and what moto's outbox holds.
- ``worker``: triggers, delivery records and a worker, in-process or as a subprocess.
- ``dlq``: messages as the worker leaves them on a DLQ.
- ``resend``: a delivery left ``partial`` by a recipient with an ``unknown`` outcome.
- ``console``: fake services and the real ``ChangeConsoleApp`` over them.
"""
