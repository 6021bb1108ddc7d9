"""The web dashboard, served by the control plane itself on its API port.

``auth`` signs a browser in (one-time codes from ``meshpilot dashboard``, a session
cookie, CSRF checks); ``gate`` puts that in front of the API; ``views`` turns the store,
the runtime and the telemetry into what the page draws; ``events`` streams it as
server-sent events; ``routes`` serves the page and its assets.
"""
