"""Staff appeals against malicious low scores.

A staff member contests a low score about themselves; reviewers from another unit
decide, with written reasons, whether it should stop counting. An upheld appeal voids
the rating through a ledger status event citing the appeal; a rejected one leaves it
counting; while an appeal is pending the rating keeps its status. Every action is a
ledger event about ``appeal:<id>``, sealed into the Merkle log.

A session, as the people involved type it::

    integrity staff add A1 --role admin --unit HQ            # the first admin (bootstrap)
    integrity staff import staff.csv --as A1                  # person_id,unit,roles,windows
    integrity appeal file 4 --ground abusive_or_unrelated \\
        --reason "..." --evidence screenshot.png --as S1
    integrity appeal assign 1 --reviewer R1 --as A1           # or: --as R2 (self)
    integrity appeal show 1 --as R1                           # automated evidence, bombing cluster
    integrity appeal decide 1 --uphold --reason "..." --no-automated-evidence --as R1
    integrity appeal decide 1 --uphold --reason "..." --used-automated-evidence --as R2
    integrity appeal list --overdue --as A1
    integrity appeal escalate-overdue --as A1                 # daily; never decides
    integrity appeal stats --period 2026-10 --as AU
    integrity appeal verify --as AU                           # replay the ledger

The staff registry the roles come from is the core's (:mod:`integrity.people`,
``integrity staff ...``).

Modules: :mod:`appeals.model` (states, actions, the transition table),
:mod:`appeals.policy` (the ``[appeals]`` rule-set knobs and pure rules),
:mod:`appeals.service` (one method per action), :mod:`appeals.repository` and
:mod:`appeals.tables` (the appeals' own tables), :mod:`appeals.evidence` (files by
SHA-256), :mod:`appeals.context` (what a reviewer sees beside an appeal),
:mod:`appeals.stats`, :mod:`appeals.views` (rows and output) and
:mod:`appeals.commands` (the CLI). Test worlds live in ``tests/appeals_factories.py``.
"""
