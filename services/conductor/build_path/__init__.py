"""The conductor's build path, in the order a cast goes through it:

- ``intake``: casts queue whole and are taken in batches (a multi-create is placed together);
- ``placement``: one pass drafts on a read snapshot, then claims and records in one write
  transaction (the database's part of the path);
- ``dispatch``: each host gets its builds in one call; what cannot be sent is rescheduled.

``types`` holds what they pass to each other, ``factory`` the one place a BuildSpec is made,
``ports`` the database as the path needs it; ``services.conductor.build_task`` wires the
three together.
"""
