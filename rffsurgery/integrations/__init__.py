"""Optional integrations with training frameworks.

Each lives in its own module and imports its framework only when that module is
imported (``import rffsurgery`` never imports them):

* :mod:`rffsurgery.integrations.lightning` — a Lightning callback applying a freeze
  plan's schedule (``pip install 'rffsurgery[lightning]'``).
"""
