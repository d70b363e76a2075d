"""The admin pages' repositories: ``changes`` (recorded content edits, kept
examples), ``models`` (bot models, activations, training runs), ``inbox``
(guesses and decisions on resident messages), ``statistics`` (counts and the
daily aggregates), ``retention`` (deleting old conversations, audit records)."""
