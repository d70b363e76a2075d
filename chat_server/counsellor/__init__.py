"""The counsellors' side: the console's Socket.IO namespace "/counsellor", its
HTTP pages, and what a counsellor does to a conversation.

- ``protocol.py``: what a console's request may carry (``check_*``).
- ``channel.py``: connections and the thin ``on_*`` handlers.
- ``service.py``: the rules (``do_*``): pick up, send, put back, close,
  notes, who may read what, transcripts, the queue as consoles see it.
- ``sweeps.py``: background jobs (heartbeat, grace period, abandoned and
  unattended queues, availability).
- ``callbacks.py``: call-back requests (a resident asks, a counsellor calls).
- ``content.py``: the console's snippets and tag labels.
- ``pages.py``: the console page, transcripts as JSON, the audit log (HTTP).

Their SQL is in ``store/casework.py`` and ``store/callbacks.py``.
"""
