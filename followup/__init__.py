"""The follow-up loop: what happens after a rating is judged (rate -> verify -> rectify ->
feed back -> review -> supervise), and telling people when something needs them.

``followup.alerts``: every counted low score raises an alert to its window's head, who
answers within 24 hours, verifies, rectifies and replies to the rater within working
days; alerts are a projection of the ledger's status events, so exactly one exists for
every counted low score whatever path the rating takes (``integrity alerts ...``).

``followup.cases``: the month's close (``integrity period close YYYY-MM``) freezes the
month's figures in its ledger event and opens a rectification case for every window and
staff member above the rule set's low-score mark (and a supervisory talk for windows in
the bottom ranks two closes running); the next close checks each case; later changes to
the month are listed as amendments (``integrity period ...``, ``integrity cases ...``).

``followup.webhooks`` is the outbound side: operators register HTTP endpoints for event
kinds of the catalogue (``integrity webhooks add URL --event KIND``); an outbox derived
from the ledger sends each new event of those kinds to each endpoint, signed, retried
with backoff, with a delivery log and dead letters a person can replay. Other parts of
the loop (low-score alerts, rectification cases) only add their event kinds to
:mod:`integrity.catalogue` and write them to the ledger: the outbox picks them up.

A package on the core's ports like the others: it imports the core only, keeps its own
tables (``followup/migrations``, branch ``followup``) and is wired in ``bootstrap.py``.
"""
