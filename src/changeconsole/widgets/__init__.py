"""Widgets the console's screens share (Textual; no AWS, no services).

- ``console``: the app as widgets see it (``console_of``) and ``ThreadResults``, the one way thread
  workers hand results to the UI (``post_from_thread``).
- ``header``: the console's header line (``EnvHeader``).
- ``calllog``: the AWS call log (``AwsCallLog``) and its pane (``CallLogPane``, ctrl+l).
- ``livetable``: ``LiveTable`` and ``sync_rows``, tables refreshed in place.
- ``statebar``: ``StateBar`` and the counts line of delivery states.
- ``filterbar``: ``FilterBar``, the ``/`` filter over a table.
- ``inputs``: form inputs and suggesters.
"""
