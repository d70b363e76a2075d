"""The resident side: the widget's Socket.IO namespace "/" (docs/protocol.md).

``protocol`` (what a payload may be, the error event's texts), ``channel`` (the thin ``on_*``
handlers), ``service`` (the ``do_*`` rules: sessions, the bot turn, queue admission),
``sockets`` (which conversation each socket is in) and ``sessions`` (session ids).
"""
